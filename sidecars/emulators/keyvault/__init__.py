"""Azure Key Vault / managed HSM stand-in: keys (create, import, get, versions, secure key release),
secrets (set, get, versions), bearer-token authentication with Key Vault's 401 challenge.

Run it with `python -m sidecars.emulators.keyvault --help`.
"""
