"""The skr sidecar: attestation and secure key release for the room (Microsoft's SKR sidecar API, on the
loopback port its registry entry names: `ccr sidecar list`). Start it with `ccr sidecar run skr --help`."""
