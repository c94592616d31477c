"""The party a workspace acts for: its identity, how it reaches CGS and its room, and what it learned at
sign-in. One workspace, one party; nothing here is ever shared with another party's workspace."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..common.errors import ConfigError
from ..common.memberauth import MemberIdentity
from ..governance.member_client import CgsMemberClient
from .attestation import RoomEvidence
from .jobs import Jobs
from .pending import PendingSignIns

Mode = Literal["certificate", "entra"]
#: where an Entra-mode workspace keeps the identity CGS bound to its key (written at sign-in and acceptance)
BOUND_IDENTITY = "identity.json"


@dataclass(frozen=True)
class RoomEndpoint:
    """The room's run API (behind its proxy) and the contract CA its TLS certificate must chain to."""

    url: str
    contract_ca: Path


@dataclass(frozen=True)
class EntraSettings:
    """The OIDC authority the party signs in with (`https://HOST/TENANT`) and the workspace's client id."""

    authority: str
    client_id: str

    @property
    def issuer(self) -> str:
        return self.authority.rstrip("/") + "/v2.0"


class Party:
    def __init__(self, *, cgs_url: str, ca_bundle: str | None, identity_dir: Path, mode: Mode,
                 entra: EntraSettings | None = None, room: RoomEndpoint | None = None, spec: Path | None = None,
                 var: list[str] | None = None, endpoints: str | None = None,
                 room_evidence: RoomEvidence | None = None, kek: str | None = None):
        if mode == "entra" and entra is None:
            raise ConfigError("--entra needs the authority (https://HOST/TENANT) and --client-id")
        self.cgs_url, self.ca_bundle, self.mode, self.entra = cgs_url.rstrip("/"), ca_bundle, mode, entra
        self.room, self.spec, self.var, self.endpoints = room, spec, list(var or []), endpoints
        self.identity_dir, self.room_evidence, self.jobs = identity_dir, room_evidence, Jobs()
        self.signins = PendingSignIns()
        #: the KEK publishing wraps new DEKs with (a JWK/PEM file or Key Vault key URL; None: the spec's)
        self.kek = kek
        if mode == "entra" and not (identity_dir / "member.key").exists():
            # The key CGS will bind to the party's identity; its certificate's name is a placeholder, the
            # member's name is the one its invitation gives.
            MemberIdentity.create(identity_dir, "workspace")
        self.identity = MemberIdentity.load(identity_dir)
        #: the workspace's own URL, known once it listens (the sign-in's redirect URI)
        self.base_url = ""
        self._client: CgsMemberClient | None = None
        self._lock = threading.Lock()

    # -- CGS
    def client(self) -> CgsMemberClient:
        with self._lock:
            if self._client is None:
                self._client = CgsMemberClient(self.cgs_url, self.identity, ca_bundle=self.ca_bundle)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def member_name(self, members: list[dict[str, Any]] | None = None) -> str | None:
        """The party's member name in CGS (`memberData.identifier`), None while it is no member."""
        for member in members if members is not None else self.client().members():
            if member.get("memberId") == self.identity.member_id:
                return (member.get("memberData") or {}).get("identifier") or None
        return None

    # -- the identity bound at sign-in (Entra mode)
    def bound_identity(self) -> dict[str, Any] | None:
        path = self.identity_dir / BOUND_IDENTITY
        if self.mode != "entra" or not path.exists():
            return None
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def save_bound_identity(self, identity: dict[str, Any]) -> None:
        path = self.identity_dir / BOUND_IDENTITY
        path.write_text(json.dumps(identity))
        path.chmod(0o600)

    def forget_bound_identity(self) -> None:
        (self.identity_dir / BOUND_IDENTITY).unlink(missing_ok=True)
