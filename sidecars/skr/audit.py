"""Key releases on the contract's audit log in CGS, not only in Key Vault's own log (which the room's parties
may not be able to read).

Fail closed: a release is recorded before it is asked for and after it succeeded, through the governance
sidecar (which signs the write with the room's attested key); if either record is not acknowledged the key
is not handed out. The records name the key (vault, name, version), the room (its report's HOST_DATA and
MEASUREMENT, which CGS also checks against the contract's policy when it verifies the write), the attestation
service and the outcome — never key material.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ..attestation import SnpReport
from ..common.governance_client import AuditNotAcknowledged, GovernanceClient
from ..common.room import read_sidecar_token

log = logging.getLogger("ccr.skr")

SCOPE = "skr"
EVENT = "key_release"


def room_summary(report: bytes, platform: str) -> dict[str, Any]:
    """Who the key goes to, as the attestation report says, and the platform kind its evidence came from
    (a room on the mock or the simulator says so in every record)."""
    parsed = SnpReport.parse(report)
    return {"hostData": parsed.host_data.hex(), "measurement": parsed.measurement.hex(),
            "debuggable": parsed.is_debuggable, "platform": platform}


class ReleaseAudit:
    """Writes the release records; each call returns only once CGS acknowledged, else raises
    AuditNotAcknowledged (a 503 to skr's caller)."""

    def __init__(self, governance_url: str, token_file: Path | None = None):
        token = read_sidecar_token(token_file)
        # Containers of a group start in no order: governance may still be starting at the first release.
        self._client = GovernanceClient(governance_url, scope=SCOPE, token=token, start_wait_s=30.0)

    async def record(self, phase: str, **details: Any) -> None:
        # GovernanceClient is synchronous: keep skr's event loop serving other requests meanwhile.
        await asyncio.to_thread(self._client.audit, {"event": EVENT, "phase": phase, **details})

    async def record_failure(self, error: BaseException, **details: Any) -> None:
        """Best effort: the release already failed, and that failure is what the caller must hear about."""
        try:
            await self.record("failed", error=str(error)[:300], **details)
        except AuditNotAcknowledged as exc:
            log.warning("the failed release of %s was not recorded in CGS: %s", details.get("key"), exc)

    def close(self) -> None:
        self._client.close()
