"""In the room: get a volume's DEK. Fetch the wrapped DEK (Key Vault secret), have skr release the KEK
(`POST /key/release`, which attests and presents the MAA token to Key Vault), unwrap.

skr is reached only over its HTTP API; its errors are `{"error": "..."}` and are passed on verbatim so
that a refused release says why (policy mismatch, vault unreachable, ...).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import SecretClient

from . import objectformat as fmt
from .azure_clients import default_credential, secret_client
from .deks import Kek, WrappedDek, unwrap_dek
from .errors import CcrError, ConfigError, RemoteServiceError


class KeyReleaseRefused(CcrError):
    """skr did not release the KEK (the vault's release policy, attestation, or skr itself refused)."""

    code = "KeyReleaseRefused"
    http_status = 403


def read_wrapped(secrets: SecretClient, name: str) -> WrappedDek | None:
    try:
        secret = secrets.get_secret(name)
    except ResourceNotFoundError:
        return None
    except HttpResponseError as exc:
        raise RemoteServiceError("Key Vault", f"reading secret {name}: {exc.message}", status=exc.status_code) from None
    except ServiceRequestError as exc:  # no answer at all (refused, reset, timed out), after the SDK's retries
        raise RemoteServiceError("Key Vault", f"{secrets.vault_url} unreachable reading secret {name}: "
                                 f"{exc.message}") from None
    return WrappedDek.from_json(secret.value or "", source=f"secret {name}")


def release_kek(skr_url: str, *, maa_endpoint: str, vault_url: str, kek_name: str,
                access_token: str | None = None, ca_bundle: str | None = None) -> Kek:
    body = {"maa_endpoint": urlsplit(maa_endpoint).netloc or maa_endpoint,
            "akv_endpoint": urlsplit(vault_url).netloc or vault_url, "kid": kek_name}
    if access_token:
        body["access_token"] = access_token
    try:
        resp = httpx.post(f"{skr_url.rstrip('/')}/key/release", json=body, timeout=60,
                          verify=ca_bundle or True)
    except httpx.HTTPError as exc:
        raise RemoteServiceError("skr", f"{skr_url} unreachable: {exc}") from None
    try:
        answer = resp.json()
    except ValueError:
        answer = {}
    if resp.status_code != 200 or "key" not in answer:
        reason = answer.get("error") if isinstance(answer, dict) else None
        raise KeyReleaseRefused(f"skr did not release KEK {kek_name} from {body['akv_endpoint']} "
                                f"(HTTP {resp.status_code}): {reason or resp.text[:300]}")
    return Kek.from_jwk(answer["key"], kid=kek_name)


def vault_scope(vault_url: str) -> str:
    """The token scope of a Key Vault or managed HSM."""
    host = urlsplit(vault_url).hostname or vault_url
    return "https://managedhsm.azure.net/.default" if "managedhsm" in host else "https://vault.azure.net/.default"


def _vault_token(credential, vault_url: str) -> str:
    try:
        return credential.get_token(vault_scope(vault_url)).token
    except (ClientAuthenticationError, CcrError) as exc:
        message = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
        raise KeyReleaseRefused(f"no access token for {vault_url} from {type(credential).__name__}: "
                                f"{message}") from None


def fetch_dek(*, skr_url: str, maa_endpoint: str, kek_vault_url: str, kek_name: str, secret_vault_url: str,
              secret_name: str, ca_bundle: str | None = None, credential=None,
              identity_endpoint: str | None = None, dev_tokens_dir: str | None = None,
              client_id: str | None = None) -> fmt.DataKey:
    """The DEK of a volume or sink. Key Vault is reached with `credential`, else one built from the
    identity sidecar's endpoint or the emulation's dev tokens (see clients.default_credential)."""
    credential = credential or default_credential(identity_endpoint, dev_tokens_dir, subject="volumes",
                                                  client_id=client_id)
    secrets = secret_client(secret_vault_url, ca_bundle=ca_bundle, credential=credential)
    wrapped = read_wrapped(secrets, secret_name)
    if wrapped is None:
        raise ConfigError(f"the wrapped DEK secret {secret_name} does not exist in {secret_vault_url} "
                          "(has the owner run `ccr data publish`?)")
    # The owner's identity (the one that read the wrapped DEK) asks for the KEK too: skr presents this token to
    # Key Vault (Microsoft's SKR API field access_token), so skr needs no identity of its own.
    access_token = _vault_token(credential, kek_vault_url)
    kek = release_kek(skr_url, maa_endpoint=maa_endpoint, vault_url=kek_vault_url, kek_name=kek_name,
                      access_token=access_token, ca_bundle=ca_bundle)
    return unwrap_dek(wrapped, kek)
