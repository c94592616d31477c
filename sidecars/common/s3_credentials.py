"""The room's credentials for a spec's S3 store, without boto3 (the runtime image of a Blob-only room needs
none of it; `sidecars.common.s3_clients` turns these into signed clients).

Credentials never come from the spec, the environment of the app or a file the operator controls. In a room
they are one of:
- an access key pair its owner stored as a CGS secret (`credentials.secret`; JSON {"access_key_id",
  "secret_access_key"}), which governance releases only to the attested room with consent;
- the room's federated token (the contract's OIDC issuer, audience sts.amazonaws.com, the sidecars' subject
  `CONTRACT/ccr-sidecars`, which governance mints only for the sidecars), exchanged for temporary
  credentials with AssumeRoleWithWebIdentity (`credentials.role_arn`): no long-lived key at all.
The owner's own commands (`ccr data publish|download`) use boto3's usual chain (AWS_* variables, profiles).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..spec import S3Store
from .errors import ConfigError, RemoteServiceError
from .roomsubjects import sidecars_subject

#: The audience of the room's federated token for AWS STS (what an IAM OIDC provider's client id list names).
STS_AUDIENCE = "sts.amazonaws.com"


@dataclass(frozen=True)
class S3KeyPair:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never the secret, whatever prints this
        return f"S3KeyPair(access_key_id={self.access_key_id!r}, secret_access_key=***)"


@dataclass(frozen=True)
class WebIdentity:
    """A token to exchange for the store's role (AssumeRoleWithWebIdentity)."""

    token: str

    def __repr__(self) -> str:
        return "WebIdentity(token=***)"


def key_pair_from_secret(value: str, where: str) -> S3KeyPair:
    """The key pair a CGS secret holds; `where` names the secret in the one-line error (never its value)."""
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data.get(k)
                                             for k in ("access_key_id", "secret_access_key")):
        raise ConfigError(f"{where}: not JSON {{\"access_key_id\", \"secret_access_key\"}} (an S3 access key pair)")
    token = data.get("session_token")
    return S3KeyPair(data["access_key_id"], data["secret_access_key"], token if isinstance(token, str) else None)


def room_credentials(store: S3Store, governance: Any, *, tenant_id: str = "common") -> S3KeyPair | WebIdentity:
    """The room's credentials for `store` through its governance sidecar (a `GovernanceClient`), which answers
    only an attested room whose contract has consent."""
    if store.credentials.secret is not None:
        secret = store.credentials.secret
        try:
            value = governance.secret(secret)
        except RemoteServiceError as exc:
            raise RemoteServiceError("governance", f"S3 credentials for bucket {store.bucket}: CGS secret {secret} "
                                                   f"not released ({_detail(exc)})", status=exc.status) from None
        return key_pair_from_secret(value, f"S3 credentials for bucket {store.bucket}: CGS secret {secret}")
    try:
        # The sidecars' subject, never the app's: the role's trust names it (docs/storage.md).
        subject = sidecars_subject(governance.contract_id())
        return WebIdentity(governance.client_assertion(tenant_id, sub=subject, aud=STS_AUDIENCE))
    except RemoteServiceError as exc:
        raise RemoteServiceError("governance", f"S3 credentials for bucket {store.bucket}: no federated token for "
                                               f"role {store.credentials.role_arn} ({_detail(exc)})",
                                 status=exc.status) from None


def _detail(exc: RemoteServiceError) -> str:
    return exc.message.removeprefix(f"{exc.service}: ")
