"""`ccr keys create-kek`: a data owner's KEK, released only to the clean room whose policy hash it names."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    keys = subparsers.add_parser("keys", help="a data owner's keys in Key Vault / managed HSM",
                                 description="Manage the keys a data owner keeps in Key Vault or managed HSM.")
    sub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    kek = sub.add_parser(
        "create-kek", help="create an exportable KEK released only to one attested clean room",
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
    kek.set_defaults(func=_create_kek)

    secret = sub.add_parser(
        "import-secret", help="keep a small secret (a password) in the vault, released only to one attested room",
        description="Import a small secret, such as a database password, as an exportable oct-HSM key with the "
                    "same release policy as a KEK: only a clean room whose CCE policy hash is the one given gets "
                    "it, through its skr sidecar (POST /key/release answers a JWK whose `k` is the secret, "
                    "base64url). Vaults keep symmetric keys of 16, 24 or 32 bytes, so the secret must have "
                    "exactly that length (e.g. a 32-character password).")
    secret.add_argument("--name", required=True, help="key name in the vault")
    secret.add_argument("--value-file", required=True, metavar="FILE",
                        help="the secret's bytes (a trailing newline is dropped); keep the file private")
    _add_release_options(secret)
    secret.set_defaults(func=_import_secret)


def _add_release_options(parser) -> None:
    parser.add_argument("--vault-url", help="Key Vault or managed HSM URL (default: keyvault_url from --endpoints)")
    parser.add_argument("--maa-endpoint", help="attestation authority (default: maa_endpoint from --endpoints)")
    parser.add_argument("--host-data", metavar="HEX", help="the clean room's CCE policy hash (64 hex digits)")
    parser.add_argument("--cce-policy", metavar="FILE", help="compute the policy hash from the CCE policy file")
    parser.add_argument("--endpoints", metavar="FILE", help="endpoints.json written by `ccr emulators start`")
    parser.add_argument("--ca-bundle", metavar="FILE", help="CA bundle for the vault's TLS (default from --endpoints)")


def _release_target(args: argparse.Namespace, kty: str, size: int | None):
    """(request, credential, CA bundle) from the options both commands share."""
    import json
    from pathlib import Path

    from ..common.errors import ConfigError
    from .kek import KekRequest, describe, host_data_from

    endpoints: dict = {}
    if args.endpoints:
        try:
            endpoints = json.loads(Path(args.endpoints).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--endpoints {args.endpoints}: {exc}") from None
    vault_url = args.vault_url or endpoints.get("keyvault_url")
    maa = args.maa_endpoint or endpoints.get("maa_endpoint")
    if not vault_url:
        raise ConfigError("no vault: give --vault-url or --endpoints")
    if not maa:
        raise ConfigError("no attestation authority: give --maa-endpoint or --endpoints")
    request = KekRequest(vault_url.rstrip("/"), args.name, kty, size, maa.rstrip("/"),
                         host_data_from(args.host_data, args.cce_policy))
    for line in describe(request):
        print(line)
    if endpoints.get("dev_tokens_dir"):
        from ..common.devtokens import DevTokenCredential

        credential = DevTokenCredential.from_dir(endpoints["dev_tokens_dir"], subject="data-owner")
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return request, credential, args.ca_bundle or endpoints.get("ca_bundle")


def _create_kek(args: argparse.Namespace) -> int:
    from .kek import create_kek

    request, credential, ca_bundle = _release_target(args, args.kty, args.size)
    key = create_kek(request, credential, ca_bundle=ca_bundle)
    print(f"created {key.name} version {key.properties.version}")
    print(f"kid: {key.id}")
    return 0


def _import_secret(args: argparse.Namespace) -> int:
    from .kek import import_secret, secret_material

    material = secret_material(args.value_file)  # checked before anything is printed or sent
    request, credential, ca_bundle = _release_target(args, "oct-HSM", len(material) * 8)
    key = import_secret(request, material, credential, ca_bundle=ca_bundle)
    print(f"imported {key.name} version {key.properties.version}")
    print(f"kid: {key.id}")
    return 0
