"""The identity sidecar: an IMDS-compatible managed identity endpoint backed by workload identity
federation (CGS-issued client assertions exchanged at Entra), so azure-identity works unchanged in the room."""
