"""`ccr room up`: the docker-free emulation of a container group on one Linux box."""
