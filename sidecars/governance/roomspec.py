"""What the governance and identity sidecars take from the room's spec when run in the container group:
`CCR_SPEC` holds the resolved spec as JSON (see `sidecars.renderings.containers`), `CCR_PORT` the port and
`CCR_SKR_URL` / `CCR_GOVERNANCE_URL` the neighbours. Command-line options override each."""

from __future__ import annotations

import json
import os

from ..spec import CleanRoomSpec, parse_spec


def spec_from_env() -> CleanRoomSpec | None:
    text = os.environ.get("CCR_SPEC")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        from ..common.errors import SpecError

        raise SpecError([f"not JSON: {exc}"], "CCR_SPEC") from None
    return parse_spec(data, source="CCR_SPEC")


def port_from_env(default: int) -> int:
    return int(os.environ.get("CCR_PORT") or default)


def identity_tenants(spec: CleanRoomSpec | None) -> dict[str, str]:
    """client id → tenant id of every federated identity the spec names (volumes and sinks)."""
    if spec is None:
        return {}
    stores = [target.store for target in spec.blob_targets()]
    return {s.identity.client_id: s.identity.tenant_id for s in stores if s.identity is not None}
