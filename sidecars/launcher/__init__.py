"""The launcher: checks the app against the container policy and runs it with podman, non-root."""
