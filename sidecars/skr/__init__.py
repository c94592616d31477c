"""The skr sidecar: attestation and secure key release for the room (Microsoft's SKR sidecar API on
127.0.0.1:8284). Start it with `ccr sidecar run skr --help`."""
