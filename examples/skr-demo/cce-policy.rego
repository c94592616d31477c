package policy

# The demo room's confidential container policy. Its SHA-256 is the HOST_DATA the room's attestation
# report carries, and the hash the data owner binds the key to.
api_version := "0.10.0"
framework_version := "0.2.3"

mount_device := {"allowed": true}
unmount_device := {"allowed": true}
mount_overlay := {"allowed": true}
unmount_overlay := {"allowed": true}
create_container := {"allowed": true, "env_list": null, "allow_stdio_access": false}
exec_in_container := {"allowed": false}
exec_external := {"allowed": false}
shutdown_container := {"allowed": true}
signal_container_process := {"allowed": true}
plan9_mount := {"allowed": false}
plan9_unmount := {"allowed": false}
get_properties := {"allowed": true}
dump_stacks := {"allowed": false}
runtime_logging := {"allowed": false}
load_fragment := {"allowed": false}
scratch_mount := {"allowed": true}
scratch_unmount := {"allowed": true}
