"""Microsoft Azure Attestation stand-in: `POST /attest/SevSnpVm` verifies SEV-SNP evidence exactly as
`sidecars.attestation` does (pinned AMD roots; a mock platform only with `--trust-mock-platform`) and
answers with an RS256 token carrying MAA's claims; `/certs` and `/.well-known/openid-configuration`
publish its signing key as MAA does. Run with `python -m sidecars.emulators.maa --help`."""
