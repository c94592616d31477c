"""Where skr may go: the attestation services and vaults the room's contract names.

skr runs exempt from the firewall, and with `skr` in `application.sidecar_apis` the app can ask it to
attest and to release keys. An endpoint chosen by the app would be a way out of the room: the host name
and path alone can carry data, and the room's MAA token goes with the request. So in a room (skr started
with `--spec`) skr contacts only the origins the spec names: its `maa_endpoint`, every key's
`maa_endpoint`, `vault_url` and `secret_vault_url`, and `application.key_vaults`. Standalone (no spec)
it goes wherever it is asked, like Microsoft's SKR sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..common.errors import BadRequest, Forbidden
from ..spec import CleanRoomSpec


def https_origin(endpoint: str, field_name: str) -> str:
    """`myvault.vault.azure.net`, `https://Host:443/path` -> `https://host` (`https://host:port` otherwise)."""
    text = str(endpoint).strip().rstrip("/")
    if not text:
        raise BadRequest(f"{field_name}: empty")
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise BadRequest(f"{field_name}: {endpoint!r} is not an https endpoint") from None
    if parts.scheme != "https" or not parts.hostname:
        raise BadRequest(f"{field_name}: {endpoint!r} is not an https endpoint")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"https://{host}" if port in (None, 443) else f"https://{host}:{port}"


@dataclass(frozen=True)
class Destinations:
    """The origins skr may contact; `None` means any (standalone use)."""

    attestation: frozenset[str] | None = None
    vaults: frozenset[str] | None = None

    @classmethod
    def from_spec(cls, spec: CleanRoomSpec) -> Destinations:
        keys = [t.encryption.key for t in spec.blob_targets() if t.encryption.key is not None]
        attestation = {spec.maa_endpoint, *(k.maa_endpoint for k in keys)}
        vaults = {*(k.vault_url for k in keys), *(k.secret_vault_url for k in keys if k.secret_vault_url),
                  *spec.application.key_vaults}
        return cls(frozenset(https_origin(str(u), "maa_endpoint") for u in attestation),
                   frozenset(https_origin(str(u), "vault_url") for u in vaults))

    def attestation_origin(self, endpoint: str) -> str:
        origin = https_origin(endpoint, "maa_endpoint")
        if self.attestation is not None and origin not in self.attestation:
            raise Forbidden(f"maa_endpoint: {origin} is not an attestation service of this room's contract")
        return origin

    def vault_origin(self, endpoint: str) -> str:
        origin = https_origin(endpoint, "akv_endpoint")
        if self.vaults is not None and origin not in self.vaults:
            raise Forbidden(f"akv_endpoint: {origin} is not a vault of this room's contract")
        return origin
