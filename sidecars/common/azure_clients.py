"""Azure SDK clients for volumes: blob containers, Key Vault secrets and keys, and their credentials.

Credentials, in order: an explicit access token (`CCR_ACCESS_TOKEN`, for scripts), an IMDS-shaped
token endpoint (the room's identity sidecar, `GET /metadata/identity/oauth2/token`), the local
emulation's dev token issuer (`dev_tokens_dir` of endpoints.json), else `DefaultAzureCredential`.
Blob storage also takes a shared account key; Azurite's well-known development
account needs no configuration.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, TokenCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import ContainerClient, ExponentialRetry

from ..spec import storage_account
from .devtokens import DevTokenCredential
from .errors import ConfigError
from .imds import ImdsCredential

#: Azurite's well-known development account and key (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class StaticTokenCredential(TokenCredential):
    """A bearer token obtained elsewhere (e.g. `az account get-access-token`)."""

    def __init__(self, token: str, expires_on: int | None = None):
        self._token = AccessToken(token, expires_on or int(time.time()) + 3600)

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        return self._token


def default_credential(identity_endpoint: str | None = None, dev_tokens_dir: str | None = None,
                       subject: str = "ccr-volumes", client_id: str | None = None) -> TokenCredential:
    if os.environ.get("CCR_ACCESS_TOKEN"):
        return StaticTokenCredential(os.environ["CCR_ACCESS_TOKEN"])
    if identity_endpoint:
        return ImdsCredential(identity_endpoint, client_id)
    if dev_tokens_dir:
        return DevTokenCredential.from_dir(dev_tokens_dir, subject=subject)
    from azure.identity import DefaultAzureCredential  # lazy: 245 ms, needed only outside a room

    return DefaultAzureCredential()


def account_name_of(account_url: str) -> str:
    """The storage account name (`sidecars.spec.storage_account`; a spec's stores always name one)."""
    account = storage_account(account_url)
    if account is None:
        raise ConfigError(f"cannot tell the storage account from {account_url!r}")
    return account


#: retries of one storage request that got no answer or a transient error: 3, after about 1, 3 and 5 s. The
#: SDK's default waits 15, 18 and 24 s (about a minute), longer than a room waits for its mounts, so a storage
#: account that is down surfaced as "volumes not ready" instead of naming the storage.
STORAGE_RETRIES = 3


def storage_retry(retries: int = STORAGE_RETRIES) -> ExponentialRetry:
    return ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries, random_jitter_range=1)


def container_client(account_url: str, container: str, *, ca_bundle: str | None = None,
                     account_key: str | None = None, credential: TokenCredential | None = None,
                     identity_endpoint: str | None = None, retry_total: int | None = None) -> ContainerClient:
    """A container client: a shared key when there is one, else `credential`, else default_credential
    (with `identity_endpoint` when given). `retry_total`: retries per request (default STORAGE_RETRIES)."""
    account = account_name_of(account_url)
    key = account_key or os.environ.get("AZURE_STORAGE_KEY") or (AZURITE_KEY if account == AZURITE_ACCOUNT else None)
    cred = {"account_name": account, "account_key": key} if key else (
        credential or default_credential(identity_endpoint))
    client = ContainerClient(account_url.rstrip("/"), container, credential=cred,
                             connection_verify=ca_bundle or True, max_single_get_size=4 * 1024 * 1024,
                             max_chunk_get_size=4 * 1024 * 1024,
                             # azure-core reads responses 4 KiB at a time by default; segment-sized reads
                             # cut the client's CPU per MB by a third (measured on Azurite).
                             connection_data_block_size=64 * 1024,
                             retry_policy=storage_retry(STORAGE_RETRIES if retry_total is None else retry_total))
    # Path-style URLs (Azurite) leave the SDK's account_name unset on some versions: set what we parsed.
    client.account_name = account
    return client


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def secret_client(vault_url: str, *, ca_bundle: str | None = None,
                  credential: TokenCredential | None = None) -> SecretClient:
    # A local stand-in's host is not a subdomain of the challenge's resource (vault.azure.net).
    return SecretClient(vault_url, credential or default_credential(),
                        connection_verify=ca_bundle or True, verify_challenge_resource=not _is_local(vault_url))


def key_client(vault_url: str, *, ca_bundle: str | None = None,
               credential: TokenCredential | None = None) -> KeyClient:
    return KeyClient(vault_url, credential or default_credential(), connection_verify=ca_bundle or True,
                     verify_challenge_resource=not _is_local(vault_url))
