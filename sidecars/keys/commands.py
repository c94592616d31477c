"""The handlers of `ccr keys ...` (registered in cli.py)."""

from __future__ import annotations

import argparse

from azure.identity import DefaultAzureCredential

from ..cliargs import read_endpoints
from ..common.devtokens import DevTokenCredential
from ..common.errors import ConfigError
from . import kek as vault
from .kek import KekRequest, describe, host_data_from, secret_material


def _release_target(args: argparse.Namespace, kty: str, size: int | None):
    """(request, credential, CA bundle) from the options both commands share."""
    endpoints = read_endpoints(args)
    vault_url = args.vault_url or endpoints.get("keyvault_url")
    maa = args.maa_endpoint or endpoints.get("maa_endpoint")
    if not vault_url:
        raise ConfigError("no vault: give --vault-url or --endpoints")
    if not maa:
        raise ConfigError("no attestation authority: give --maa-endpoint or --endpoints")
    request = KekRequest(vault_url.rstrip("/"), args.name, kty, size, maa.rstrip("/"),
                         host_data_from(args.host_data, args.cce_policy),
                         accept_mock_uvm=bool(endpoints.get("mock_platform_dir") or args.allow_mock_platform))
    for line in describe(request):
        print(line)
    if endpoints.get("dev_tokens_dir"):
        credential = DevTokenCredential.from_dir(endpoints["dev_tokens_dir"], subject="data-owner")
    else:
        credential = DefaultAzureCredential()
    return request, credential, args.ca_bundle or endpoints.get("ca_bundle")


def create_kek(args: argparse.Namespace) -> int:
    request, credential, ca_bundle = _release_target(args, args.kty, args.size)
    key = vault.create_kek(request, credential, ca_bundle=ca_bundle)
    print(f"created {key.name} version {key.properties.version}")
    print(f"kid: {key.id}")
    return 0


def import_secret(args: argparse.Namespace) -> int:
    material = secret_material(args.value_file)  # checked before anything is printed or sent
    request, credential, ca_bundle = _release_target(args, "oct-HSM", len(material) * 8)
    key = vault.import_secret(request, material, credential, ca_bundle=ca_bundle)
    print(f"imported {key.name} version {key.properties.version}")
    print(f"kid: {key.id}")
    return 0
