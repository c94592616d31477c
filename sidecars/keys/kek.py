"""Create a KEK that Key Vault releases only to one attested clean room, and say in words to whom."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyReleasePolicy

from ..common.errors import BadRequest, CcrError, ConfigError, Forbidden, NotFound, RemoteServiceError, Unauthorized
from ..common.release_policy import MOCK_UVM, ReleasePolicy, sevsnp_policy

KEY_TYPES = {"RSA-HSM": "RSA", "oct-HSM": "oct", "RSA": "RSA", "oct": "oct"}
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

CLAIM_WORDS = {
    "x-ms-attestation-type": "runs on AMD SEV-SNP confidential hardware",
    "x-ms-sevsnpvm-hostdata": "was started with exactly the CCE policy whose SHA-256 is {value}",
    "x-ms-compliance-status": "runs a utility VM endorsed by Microsoft",
    "x-ms-sevsnpvm-is-debuggable": "cannot be debugged (its memory cannot be read by the host)",
}


@dataclass(frozen=True)
class KekRequest:
    vault_url: str
    name: str
    kty: str
    size: int | None
    maa_endpoint: str
    host_data: str
    #: the local stand-ins (an endpoints file with a mock platform, or --allow-mock-platform): accept a UVM
    #: the mock platform endorsed too (x-ms-compliance-status ccr-mock-uvm, which a real MAA never issues)
    accept_mock_uvm: bool = False

    def policy(self) -> dict[str, Any]:
        return sevsnp_policy(self.maa_endpoint, self.host_data, accept_mock_uvm=self.accept_mock_uvm)


def host_data_from(host_data: str | None, cce_policy: str | None) -> str:
    if bool(host_data) == bool(cce_policy):
        raise ConfigError("give exactly one of --host-data HEX or --cce-policy FILE")
    if cce_policy:
        try:
            return hashlib.sha256(Path(cce_policy).read_bytes()).hexdigest()
        except OSError as exc:
            raise ConfigError(f"--cce-policy {cce_policy}: {exc.strerror}") from None
    assert host_data is not None
    if not HEX64.match(host_data):
        raise ConfigError(f"--host-data {host_data!r}: expected the 64 hex digits of a SHA-256 (the CCE policy hash)")
    return host_data.lower()


def describe(request: KekRequest) -> list[str]:
    """The release policy in plain words, one line per requirement (from the policy itself)."""
    kind = f"{request.kty}" + (f" {request.size}-bit" if request.size else "")
    lines = [f"Key {request.name!r} ({kind}, exportable) in {request.vault_url} will be released only to a "
             "confidential container group that:"]
    rule = ReleasePolicy.parse(request.policy()).rules[0]
    lines.append(f"  - is attested by {rule.authority}")
    for condition in rule.condition.conditions:
        words = CLAIM_WORDS.get(condition.claim, f"has {condition.claim} {condition.operator} {{value}}")
        lines.append(f"  - {words.format(value=condition.value)}  [{condition.claim} {condition.operator} "
                     f"{json.dumps(condition.value)}]")
    if request.accept_mock_uvm:
        lines.append(f"  - OR, the same with {MOCK_UVM} instead of a Microsoft-endorsed UVM: a room on the local "
                     "stand-ins' MOCK platform (no hardware protects it; no real Azure Attestation issues this claim)")
    lines.append("Anyone else asking Key Vault to release it, you included, is refused.")
    return lines


def _translate(exc: Exception, request: KekRequest) -> CcrError:
    if isinstance(exc, ServiceRequestError):
        return RemoteServiceError("Key Vault", f"cannot reach {request.vault_url}: {exc.message}")
    if isinstance(exc, ClientAuthenticationError):
        return Unauthorized(f"Key Vault {request.vault_url} did not accept our credential: {exc.message}")
    if isinstance(exc, HttpResponseError):
        message = (exc.message or "").splitlines()[0]
        kind = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound}.get(exc.status_code or 0)
        if kind is not None:
            return kind(f"Key Vault refused to store {request.name}: {message}")
        return RemoteServiceError("Key Vault", message, status=exc.status_code)
    raise exc


#: Key Vault / managed HSM take symmetric (oct-HSM) keys of these sizes only.
SECRET_SIZES = (16, 24, 32)


def secret_material(path: str) -> bytes:
    """A small secret to keep as an oct-HSM key: the file's bytes (one trailing newline dropped)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--value-file {path}: {exc.strerror}") from None
    data = data.removesuffix(b"\n")
    if len(data) not in SECRET_SIZES:
        raise ConfigError(f"--value-file {path}: {len(data)} bytes; a vault keeps a secret as an oct-HSM key of "
                          f"exactly {', '.join(map(str, SECRET_SIZES))} bytes (e.g. a 32-character password)")
    return data


def _key_client(request: KekRequest, credential, ca_bundle: str | None):
    kwargs: dict[str, Any] = {"verify_challenge_resource": False} if ca_bundle else {}
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
    return KeyClient(request.vault_url, credential, **kwargs)


def import_secret(request: KekRequest, material: bytes, credential, *, ca_bundle: str | None = None):
    """Import `material` as an exportable oct-HSM key under the release policy; returns the KeyVaultKey.
    The room gets it back through skr (`POST /key/release` → JWK whose `k` is base64url(material))."""

    client = _key_client(request, credential, ca_bundle)
    policy = KeyReleasePolicy(json.dumps(request.policy()).encode(), immutable=False)
    try:
        return client.import_key(request.name, JsonWebKey(kty="oct-HSM", k=material), hardware_protected=True,
                                 exportable=True, release_policy=policy)
    except AzureError as exc:
        raise _translate(exc, request) from None
    finally:
        client.close()


def create_kek(request: KekRequest, credential, *, ca_bundle: str | None = None):
    """Create the KEK with the official SDK; returns the KeyVaultKey."""

    client = _key_client(request, credential, ca_bundle)
    policy = KeyReleasePolicy(json.dumps(request.policy()).encode(), immutable=False)
    hsm = request.kty.endswith("-HSM")
    try:
        if KEY_TYPES[request.kty] == "RSA":
            return client.create_rsa_key(request.name, size=request.size or 2048, hardware_protected=hsm,
                                         exportable=True, release_policy=policy)
        return client.create_oct_key(request.name, size=request.size or 256, hardware_protected=hsm,
                                     exportable=True, release_policy=policy)
    except AzureError as exc:
        raise _translate(exc, request) from None
    finally:
        client.close()
