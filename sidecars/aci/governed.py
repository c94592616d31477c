"""Governed deployment: `ccr aci run` deploys only the template the contract's members accepted in CGS.

The check is CGS's own (`sidecars.governance.deployment.verify_deployment`: sha256 of the template's
canonical JSON against the accepted deployment spec). The contract and the CGS to ask are the operator's
explicit choice (`--contract`, `--cgs-endpoint` or the endpoints file), never read from the template:
a template naming its own governance would vouch for itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..governance.deployment import verify_deployment

UNGOVERNED_WARNING = ("WARNING: --unsafe-ungoverned: this template is deployed WITHOUT checking that the "
                      "contract's members accepted it in CGS; nothing it attests to was agreed by anyone")


@dataclass(frozen=True)
class Governance:
    cgs_url: str
    contract_id: str
    ca_bundle: str | None = None


def verify(governance: Governance, template: dict[str, Any]) -> str:
    """The accepted hash when `template` is what the members accepted; raises a one-line CcrError otherwise."""
    accepted = verify_deployment(governance.cgs_url, governance.contract_id, template,
                                 ca_bundle=governance.ca_bundle)
    return accepted.sha256
