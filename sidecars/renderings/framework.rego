# The enforcement framework a CCE policy delegates to (`mount_device := data.framework.mount_device`, ...).
#
# On Confidential ACI the guest's GCS ships its own framework (hcsshim pkg/securitypolicy/framework.rego)
# and evaluates the policy with it. This is ours, written from that framework's published semantics for
# the Linux enforcement points at framework_version 0.2.3, so that tests and `ccr room up` evaluate a
# generated policy the way the platform does: a layer is mountable only if some container lists its
# dm-verity hash; an overlay only if its layers are exactly some container's layers; a container starts
# only if command, env, working dir, mounts, user, privileges, capabilities and no_new_privileges match
# one of the candidates its overlay narrowed down to.
#
# One plumbing difference: the GCS keeps enforcement state in `data.metadata`; the embedded OPA can only
# deep-merge data, so the caller (sidecars.renderings.enforcer) passes the state as `input.metadata` and
# applies the returned `metadata` updates, exactly as the GCS does.
package framework

version := "0.2.3"

metadata := object.get(input, "metadata", {})

# Named paths only: reading data.policy as a whole would make every rule depend on itself.
default policy_containers := []

policy_containers := data.policy.containers

default policy_fragments := []

policy_fragments := data.policy.fragments

default policy_external_processes := []

policy_external_processes := data.policy.external_processes

default_unprivileged_capabilities := [
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYS_CHROOT",
]

sandbox_prefix := "sandbox://"

anchor_pattern(p) := p if {
	startswith(p, "^")
	endswith(p, "$")
} else := concat("", ["^", p]) if {
	endswith(p, "$")
} else := concat("", [p, "$"]) if {
	startswith(p, "^")
} else := concat("", ["^", p, "$"])

# --- layers ------------------------------------------------------------------------------------------

device_hash_ok if {
	some container in policy_containers
	some layer in container.layers
	input.deviceHash == layer
}

device_mounted(target) if metadata.devices[target]

mount_target_ok if regex.match(anchor_pattern(input.mountPathRegex), input.target)

default mount_device := {"allowed": false}

mount_device := {"metadata": [{"name": "devices", "action": "add", "key": input.target, "value": input.deviceHash}], "allowed": true} if {
	not device_mounted(input.target)
	device_hash_ok
	mount_target_ok
}

default unmount_device := {"allowed": false}

unmount_device := {"metadata": [{"name": "devices", "action": "remove", "key": input.unmountTarget}], "allowed": true} if {
	metadata.devices[input.unmountTarget]
}

default rw_mount_device := {"allowed": false}

rw_mount_device := {"metadata": [{"name": "rw_devices", "action": "add", "key": input.target, "value": true}], "allowed": true} if {
	not device_mounted(input.target)
	scratch_encryption_ok
	input.ensureFilesystem
	input.filesystem in {"ext4", "xfs"}
	mount_target_ok
}

scratch_encryption_ok if input.encrypted

scratch_encryption_ok if data.policy.allow_unencrypted_scratch

layer_paths_ok(layers) if {
	count(input.layerPaths) == count(layers)
	every i, path in input.layerPaths {
		layers[(count(layers) - i) - 1] == metadata.devices[path]
	}
}

overlay_exists if metadata.matches[input.containerID]

default mount_overlay := {"allowed": false}

mount_overlay := {"metadata": [add_matches, add_target], "allowed": true} if {
	not overlay_exists
	not metadata.overlayTargets[input.target]
	containers := [c | some c in policy_containers; layer_paths_ok(c.layers)]
	count(containers) > 0
	add_matches := {"name": "matches", "action": "add", "key": input.containerID, "value": containers}
	add_target := {"name": "overlayTargets", "action": "add", "key": input.target, "value": true}
}

default unmount_overlay := {"allowed": false}

unmount_overlay := {"metadata": [{"name": "overlayTargets", "action": "remove", "key": input.unmountTarget}], "allowed": true} if {
	metadata.overlayTargets[input.unmountTarget]
}

# --- containers --------------------------------------------------------------------------------------

command_ok(command) if {
	count(input.argList) == count(command)
	every i, arg in input.argList {
		command[i] == arg
	}
}

env_rule_ok(rule, env) if {
	rule.strategy == "string"
	rule.pattern == env
}

env_rule_ok(rule, env) if {
	rule.strategy == "re2"
	regex.match(anchor_pattern(rule.pattern), env)
}

env_required_ok(rule, env_list) if {
	rule.required
	some env in env_list
	env_rule_ok(rule, env)
}

env_required_ok(rule, _) if not rule.required

env_list_ok(rules, env_list) if {
	every rule in rules {
		env_required_ok(rule, env_list)
	}
	every env in env_list {
		some rule in rules
		env_rule_ok(rule, env)
	}
}

# With dropping allowed, variables no rule matches are removed instead of refusing the container.
env_list_for(containers) := input.envList if not data.policy.allow_environment_variable_dropping

env_list_for(containers) := [env |
	some env in input.envList
	some c in containers
	some rule in c.env_rules
	env_rule_ok(rule, env)
] if data.policy.allow_environment_variable_dropping

working_dir_ok(dir) if input.workingDir == dir

privileged_ok(allowed) if not input.privileged

privileged_ok(allowed) if {
	input.privileged
	allowed
}

no_new_privileges_ok(required) if {
	required
	input.noNewPrivileges
}

no_new_privileges_ok(required) if not required

id_name_ok(_, "any", _)

id_name_ok(pattern, "id", value) if pattern == value.id

id_name_ok(pattern, "name", value) if pattern == value.name

id_name_ok(pattern, "re2", value) if regex.match(anchor_pattern(pattern), value.name)

user_ok(user) if {
	user.umask == input.umask
	id_name_ok(user.user_idname.pattern, user.user_idname.strategy, input.user)
	every group in input.groups {
		some g in user.group_idnames
		id_name_ok(g.pattern, g.strategy, group)
	}
}

seccomp_ok(profile) if input.seccompProfileSHA256 == profile

mount_source_ok(constraint, source) if {
	startswith(constraint, sandbox_prefix)
	regex.match(anchor_pattern(replace(constraint, sandbox_prefix, input.sandboxDir)), source)
}

mount_source_ok(constraint, source) if constraint == source

mount_constraint_ok(constraint, mount) if {
	mount.type == constraint.type
	mount_source_ok(constraint.source, mount.source)
	mount.destination != ""
	mount.destination == constraint.destination
	count(mount.options) == count(constraint.options)
	every option in mount.options {
		option in constraint.options
	}
	every option in constraint.options {
		option in mount.options
	}
}

mount_list_ok(mounts) if {
	every mount in input.mounts {
		some constraint in mounts
		mount_constraint_ok(constraint, mount)
	}
}

caps_list_ok(allowed, requested) if {
	count(allowed) == count(requested)
	every cap in requested {
		cap in allowed
	}
}

# With capability dropping allowed, capabilities outside the container's sets are dropped; the
# container is refused only when a set it must have is missing from the request.
caps_for(container) := container.capabilities if container.capabilities != null

caps_for(container) := {"bounding": d, "effective": d, "inheritable": [], "permitted": d, "ambient": []} if {
	container.capabilities == null
	d := default_unprivileged_capabilities
}

effective_caps(allowed) := {kind: kept |
	some kind in ["bounding", "effective", "inheritable", "permitted", "ambient"]
	kept := [cap | some cap in input.capabilities[kind]; cap in allowed[kind]]
} if data.policy.allow_capability_dropping

effective_caps(_) := input.capabilities if not data.policy.allow_capability_dropping

caps_ok(container) if {
	allowed := caps_for(container)
	requested := effective_caps(allowed)
	every kind in ["bounding", "effective", "inheritable", "permitted", "ambient"] {
		caps_list_ok(allowed[kind], requested[kind])
	}
}

container_started if metadata.started[input.containerID]

candidates := object.get(object.get(metadata, "matches", {}), input.containerID, [])

matching_containers := [c |
	some c in candidates
	no_new_privileges_ok(c.no_new_privileges)
	user_ok(c.user)
	privileged_ok(c.allow_elevated)
	working_dir_ok(c.working_dir)
	command_ok(c.command)
	mount_list_ok(c.mounts)
	seccomp_ok(c.seccomp_profile_sha256)
	count(object.get(input, "devices", [])) == 0
	env_list_ok(c.env_rules, env_list_for(candidates))
	caps_ok(c)
]

default create_container := {"allowed": false}

create_container := {
	"metadata": [
		{"name": "matches", "action": "update", "key": input.containerID, "value": matching_containers},
		{"name": "started", "action": "add", "key": input.containerID, "value": {"privileged": input.privileged}},
	],
	"env_list": env_list_for(candidates),
	"caps_list": effective_caps(caps_for(matching_containers[0])),
	"allow_stdio_access": matching_containers[0].allow_stdio_access,
	"allowed": true,
} if {
	not container_started
	count(matching_containers) > 0
	every c in matching_containers {
		c.allow_stdio_access == matching_containers[0].allow_stdio_access
	}
}

default exec_in_container := {"allowed": false}

exec_in_container := {"allowed": true, "env_list": input.envList} if {
	container_started
	some c in candidates
	working_dir_ok(c.working_dir)
	some process in c.exec_processes
	command_ok(process.command)
	env_list_ok(c.env_rules, input.envList)
}

default exec_external := {"allowed": false}

exec_external := {"allowed": true, "env_list": input.envList, "allow_stdio_access": process.allow_stdio_access} if {
	some process in policy_external_processes
	working_dir_ok(process.working_dir)
	command_ok(process.command)
	env_list_ok(process.env_rules, input.envList)
}

default shutdown_container := {"allowed": false}

shutdown_container := {"metadata": [{"name": "matches", "action": "remove", "key": input.containerID}], "allowed": true} if {
	container_started
}

default signal_container_process := {"allowed": false}

signal_container_process := {"allowed": true} if {
	container_started
	input.isInitProcess
	some c in candidates
	input.signal in c.signals
}

signal_container_process := {"allowed": true} if {
	container_started
	not input.isInitProcess
	some c in candidates
	some process in c.exec_processes
	command_ok(process.command)
	input.signal in process.signals
}

default plan9_mount := {"allowed": false}

default plan9_unmount := {"allowed": false}

default get_properties := {"allowed": false}

get_properties := {"allowed": true} if data.policy.allow_properties_access

default dump_stacks := {"allowed": false}

dump_stacks := {"allowed": true} if data.policy.allow_dump_stacks

default runtime_logging := {"allowed": false}

runtime_logging := {"allowed": true} if data.policy.allow_runtime_logging

# Fragments are checked for issuer and feed (the signature and SVN checks need the signed fragment).
default load_fragment := {"allowed": false}

load_fragment := {"allowed": true} if {
	some fragment in policy_fragments
	input.issuer == fragment.issuer
	input.feed == fragment.feed
}

default scratch_mount := {"allowed": false}

scratch_mount := {"metadata": [{"name": "scratch_mounts", "action": "add", "key": input.target, "value": {"encrypted": input.encrypted}}], "allowed": true} if {
	not metadata.scratch_mounts[input.target]
	scratch_encryption_ok
}

default scratch_unmount := {"allowed": false}

scratch_unmount := {"metadata": [{"name": "scratch_mounts", "action": "remove", "key": input.unmountTarget}], "allowed": true} if {
	metadata.scratch_mounts[input.unmountTarget]
}

# --- why a request was refused -----------------------------------------------------------------------

errors contains "deviceHash not found" if {
	input.rule == "mount_device"
	not device_hash_ok
}

errors contains "mountpoint invalid" if {
	input.rule in {"mount_device", "rw_mount_device"}
	not mount_target_ok
}

errors contains "no matching containers for overlay" if {
	input.rule == "mount_overlay"
	not overlay_exists
	count([c | some c in policy_containers; layer_paths_ok(c.layers)]) == 0
}

errors contains "container already started" if {
	input.rule == "create_container"
	container_started
}

errors contains "invalid command" if {
	input.rule == "create_container"
	count([c | some c in candidates; command_ok(c.command)]) == 0
}

errors contains "invalid env list" if {
	input.rule == "create_container"
	count([c | some c in candidates; env_list_ok(c.env_rules, env_list_for(candidates))]) == 0
}

errors contains "invalid mount list" if {
	input.rule == "create_container"
	count([c | some c in candidates; mount_list_ok(c.mounts)]) == 0
}

errors contains "invalid working directory" if {
	input.rule == "create_container"
	count([c | some c in candidates; working_dir_ok(c.working_dir)]) == 0
}

errors contains "invalid user" if {
	input.rule == "create_container"
	count([c | some c in candidates; user_ok(c.user)]) == 0
}

errors contains "privileged escalation not allowed" if {
	input.rule == "create_container"
	count([c | some c in candidates; privileged_ok(c.allow_elevated)]) == 0
}

errors contains "invalid noNewPrivileges" if {
	input.rule == "create_container"
	count([c | some c in candidates; no_new_privileges_ok(c.no_new_privileges)]) == 0
}

errors contains "capabilities don't match" if {
	input.rule == "create_container"
	count([c | some c in candidates; caps_ok(c)]) == 0
}
