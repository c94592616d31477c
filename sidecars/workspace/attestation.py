"""The room's attestation, verified by the workspace itself: fresh evidence fetched from the room (the public
evidence path its ingress serves beside the app's API, or an skr sidecar's nonce route, asked with a nonce of
the workspace's so an old report cannot be replayed),
checked against AMD's roots (the library Azure Attestation's checks are modelled on, `sidecars.attestation`),
then against the collaboration's accepted clean-room policy (HOST_DATA, not debuggable) — in plain words."""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..attestation import AttestationError, Evidence, Trust, verify_evidence
from ..attestation.maa_client import report_data_for
from ..attestation.verify import COMPLIANT_UVM, MOCK_UVM
from ..common.errors import CcrError
from ..common.roomevidence import NONCE_EVIDENCE_PATH, PUBLIC_EVIDENCE_PATH, runtime_data_for_nonce
from ..common.transports import http_transport
from ..governance.member_client import CgsMemberClient

MAX_EVIDENCE_BYTES = 256 * 1024


@dataclass(frozen=True)
class RoomEvidence:
    """Where the room's evidence comes from, and which platforms the party trusts (a mock platform only when
    the party says so: `--trust-mock-platform`, local rooms)."""

    url: str
    ca_bundle: str | None = None
    mock_platform_dir: Path | None = None
    #: skr's own route (`--room-evidence`, inside the room), or the room's public one (`--room`)
    path: str = NONCE_EVIDENCE_PATH

    @classmethod
    def of_room(cls, room_url: str, contract_ca: str, mock_platform_dir: Path | None) -> RoomEvidence:
        """The evidence the room's ingress serves beside its API, over TLS the contract CA endorsed."""
        return cls(room_url, contract_ca, mock_platform_dir, PUBLIC_EVIDENCE_PATH)

    def trust(self) -> tuple[Trust, set[str]]:
        if self.mock_platform_dir is None:
            return Trust.default(), {COMPLIANT_UVM}
        return Trust.default().trusting_mock_platform(self.mock_platform_dir), {COMPLIANT_UVM, MOCK_UVM}


def _fetch(source: RoomEvidence, nonce: str) -> dict[str, Any]:
    with httpx.Client(transport=http_transport(source.ca_bundle), timeout=15.0) as http, \
            http.stream("POST", source.url.rstrip("/") + source.path, json={"nonce": nonce}) as response:
        if response.status_code != 200:
            raise AttestationError(f"the room answered HTTP {response.status_code} for its evidence")
        body = b""
        for chunk in response.iter_bytes():  # read no more than the largest evidence, whatever the room sends
            body += chunk
            if len(body) > MAX_EVIDENCE_BYTES:
                raise AttestationError(f"the room's evidence is larger than {MAX_EVIDENCE_BYTES // 1024} KiB")
    try:
        value = json.loads(body)
    except ValueError:
        raise AttestationError("the room's evidence is not JSON (cut short or not evidence at all)") from None
    if not isinstance(value, dict):
        raise AttestationError("the room's evidence is not a JSON object")
    return value


def verify_room(source: RoomEvidence | None, client: CgsMemberClient, contract_id: str) -> dict[str, Any]:
    """`{verified, lines, claims, problem}`: lines say in plain words what was checked."""
    if source is None:
        return {"verified": False, "lines": ["This workspace was started without --room or --room-evidence: "
                                             "the room's attestation was not checked."], "claims": None,
                "problem": "no room evidence source"}
    lines: list[str] = []
    nonce = secrets.token_hex(32)
    runtime_data = runtime_data_for_nonce(nonce)
    try:
        trust, endorsed = source.trust()
        claims = verify_evidence(Evidence.from_combined(_fetch(source, nonce)), trust=trust)
        lines.append("The room's hardware report is signed by an AMD SEV-SNP chip whose certificate chains to "
                     + ("AMD's root" if source.mock_platform_dir is None else "AMD's root or the trusted mock "
                        "platform's root (a local room)") + ".")
        if not hmac.compare_digest(bytes.fromhex(claims["x-ms-sevsnpvm-reportdata"]), report_data_for(runtime_data)):
            raise AttestationError("the report does not carry this workspace's nonce: it is not fresh")
        lines.append("The report answers this workspace's own fresh nonce: it was made now, for this check.")
        if claims.get("x-ms-compliance-status") not in endorsed:
            raise AttestationError("the room's UVM is not endorsed: its MEASUREMENT is unproven")
        lines.append("Its utility VM (MEASUREMENT) is endorsed"
                     + (" by Microsoft." if claims["x-ms-compliance-status"] == COMPLIANT_UVM else
                        " by the mock platform's signer (a local room, not Azure hardware)."))
        policy = client.policy(contract_id)
        accepted = [str(h).lower() for h in policy.get("x-ms-sevsnpvm-hostdata") or []]
        host_data = str(claims.get("x-ms-sevsnpvm-hostdata", "")).lower()
        if host_data not in accepted:
            raise AttestationError(f"the room's HOST_DATA {host_data[:16]}… is not one the collaboration accepted "
                                   "(its CCE policy is not the agreed one)")
        lines.append(f"Its HOST_DATA {host_data[:16]}… is the hash of the CCE policy the collaboration accepted: "
                     "it runs exactly the agreed containers and commands.")
        if claims.get("x-ms-sevsnpvm-is-debuggable"):
            raise AttestationError("the room is debuggable: its memory can be read by the host")
        lines.append("It is not debuggable: the host cannot read its memory.")
    except (AttestationError, CcrError, httpx.HTTPError, ValueError, KeyError) as exc:
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        lines.append(f"NOT VERIFIED: {reason}")
        return {"verified": False, "lines": lines, "claims": None, "problem": reason}
    return {"verified": True, "lines": lines, "claims": claims, "problem": None}
