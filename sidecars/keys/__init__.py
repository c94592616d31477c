"""Party-side key management: a data owner's key-encryption keys (KEKs) in Key Vault / managed HSM,
bound by a secure key release policy to one clean room (`ccr keys --help`)."""
