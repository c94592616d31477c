"""Local stand-ins for the Azure services a clean room depends on (MAA, Key Vault / managed HSM, the
governance service CGS, the Entra token endpoint) and the Azurite harness. They are product code: each
speaks the real service's protocol, so that swapping one for Azure is configuration, not code."""
