"""Governed deployment: `ccr aci run` deploys only the template the contract's members accepted in CGS.

The check is CGS's own (`sidecars.governance.deployment.verify_deployment`: sha256 of the template's
canonical JSON against the accepted deployment spec). The contract and the CGS to ask are the operator's
explicit choice (`--contract`, `--cgs-endpoint` or the endpoints file), never read from the template:
a template naming its own governance would vouch for itself.
"""

from __future__ import annotations

UNGOVERNED_WARNING = ("WARNING: --unsafe-ungoverned: this template is deployed WITHOUT checking that the "
                      "contract's members accepted it in CGS; nothing it attests to was agreed by anyone")
