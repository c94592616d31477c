# The launcher's container policy: may this app container start?
#
# input: the app exactly as the launcher is about to run it (the AppLaunch that becomes podman's
#        arguments) plus `local_digest`, the digest of the local image the reference resolves to.
# data.declared: the app as the spec declares it (sidecars/renderings/containers.py, the same model the CCE
#        policy measures) and `volumes`: the room's datasources (ro) and datasinks (rw) by name.
#
# `deny` is a set of messages, each starting with the rule's name; the app starts only if it is empty.
package ccr.container

pinned_digest(image) := digest if {
	parts := split(image, "@")
	count(parts) == 2
	regex.match(`^sha256:[0-9a-f]{64}$`, parts[1])
	digest := parts[1]
}

deny contains msg if {
	not pinned_digest(input.image)
	msg := sprintf("image_pinned: %s is not pinned by digest (use REPO@sha256:DIGEST)", [input.image])
}

deny contains msg if {
	digest := pinned_digest(input.image)
	input.local_digest != digest
	msg := sprintf("image_digest: the local image is %s, the spec pins %s", [input.local_digest, digest])
}

deny contains msg if {
	input.image != data.declared.app.image
	msg := sprintf("image_declared: %s is not the declared image %s", [input.image, data.declared.app.image])
}

deny contains msg if {
	input.uid == 0
	msg := "non_root_user: the app must not run as uid 0"
}

deny contains msg if {
	input.gid == 0
	msg := "non_root_group: the app must not run with gid 0"
}

deny contains msg if {
	input.privileged
	msg := "not_privileged: the app must not run privileged"
}

deny contains msg if {
	some cap in input.capabilities
	msg := sprintf("no_added_capabilities: the app may not add %s", [cap])
}

deny contains msg if {
	not input.read_only_rootfs
	msg := "read_only_rootfs: the app's root filesystem must be read-only"
}

deny contains msg if {
	not input.no_new_privileges
	msg := "no_new_privileges: the app must run with no-new-privileges"
}

deny contains msg if {
	some mount in input.mounts
	not data.declared.volumes[mount.volume]
	msg := sprintf("declared_mounts: %s (from %s) is not a datasource or datasink of the spec", [mount.target, mount.volume])
}

deny contains msg if {
	some mount in input.mounts
	mode := data.declared.volumes[mount.volume].mode
	mount.mode != mode
	msg := sprintf("mount_modes: %s must be mounted %s, not %s", [mount.volume, mode, mount.mode])
}

deny contains msg if {
	some mount in input.mounts
	declared := data.declared.volumes[mount.volume]
	mount.target != declared.target
	msg := sprintf("mount_targets: %s must be mounted at %s, not %s", [mount.volume, declared.target, mount.target])
}

deny contains msg if {
	input.env != data.declared.app.env
	msg := "env_declared: the environment differs from the declared one"
}

deny contains msg if {
	input.command != data.declared.app.command
	msg := "command_declared: the command differs from the declared one"
}

deny contains msg if {
	not input.cpus > 0
	msg := "resource_limits: a cpu limit must be set"
}

deny contains msg if {
	not input.memory_gb > 0
	msg := "resource_limits: a memory limit must be set"
}
