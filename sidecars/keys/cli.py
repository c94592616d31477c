"""`ccr keys create-kek|import-secret`: a data owner's KEK (or small secret), released only to the clean room
whose policy hash it names."""

from __future__ import annotations

import argparse

from ..cliargs import add_command, noun

_COMMANDS = "sidecars.keys.commands"


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "keys", "a data owner's keys in Key Vault / managed HSM",
         "Keys are what a data owner keeps in Key Vault or managed HSM: a key-encryption key (KEK) that "
         "wraps its data's keys, or a small secret, each released (secure key release) only to a clean "
         "room whose attested CCE policy hash is the one the key names.", verbs=_verbs)


def _verbs(sub: argparse._SubParsersAction) -> None:
    kek = add_command(
        sub, "create-kek", f"{_COMMANDS}:create_kek",
        "create an exportable KEK released only to one attested clean room",
        description="Create a key-encryption key that Key Vault releases (secure key release) only to a "
                    "confidential container group attested by MAA whose CCE policy hash (HOST_DATA) is the "
                    "one given, running a Microsoft-endorsed utility VM, not debuggable. Prints the policy "
                    "in plain words first. Locally, --endpoints FILE (from `ccr emulators start`) supplies the "
                    "vault, MAA, CA bundle and a dev credential; against Azure the credential is "
                    "azure-identity's DefaultAzureCredential.")
    kek.add_argument("--name", required=True, help="key name in the vault")
    kek.add_argument("--kty", default="RSA-HSM", choices=["RSA-HSM", "oct-HSM", "RSA", "oct"],
                     help="key type (default RSA-HSM; oct-HSM needs a managed HSM in Azure)")
    kek.add_argument("--size", type=int, help="bits (RSA: 2048/3072/4096, default 2048; oct: 256)")
    _add_release_options(kek)

    secret = add_command(
        sub, "import-secret", f"{_COMMANDS}:import_secret",
        "keep a small secret (a password) in the vault, released only to one attested room",
        description="Import a small secret, such as a database password, as an exportable oct-HSM key with the "
                    "same release policy as a KEK: only a clean room whose CCE policy hash is the one given gets "
                    "it, through its skr sidecar (POST /key/release answers a JWK whose `k` is the secret, "
                    "base64url). Vaults keep symmetric keys of 16, 24 or 32 bytes, so the secret must have "
                    "exactly that length (e.g. a 32-character password).")
    secret.add_argument("--name", required=True, help="key name in the vault")
    secret.add_argument("--value-file", required=True, metavar="FILE",
                        help="the secret's bytes (a trailing newline is dropped); keep the file private")
    _add_release_options(secret)


def _add_release_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vault-url", metavar="URL",
                        help="Key Vault or managed HSM URL (default: keyvault_url from --endpoints)")
    parser.add_argument("--maa-endpoint", metavar="URL",
                        help="attestation authority (default: maa_endpoint from --endpoints)")
    parser.add_argument("--host-data", metavar="HEX", help="the clean room's CCE policy hash (64 hex digits)")
    parser.add_argument("--cce-policy", metavar="FILE", help="compute the policy hash from the CCE policy file")
    parser.add_argument("--endpoints", metavar="FILE", help="endpoints.json written by `ccr emulators start`")
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for the vault's TLS (default from --endpoints)")
    parser.add_argument("--allow-mock-platform", action="store_true",
                        help="also release to a room on the local stand-ins' mock platform (ccr-mock-uvm); implied "
                             "by --endpoints of stand-ins with a mock platform. Never for real data")
