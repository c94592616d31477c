"""What a member accepts when it accepts a deployment: the ARM template, named by one hash.

CGS's `set_deployment_spec` proposal carries the template itself (`args.spec.data`, as azure-cleanroom's
`az cleanroom governance deployment template propose` sends it); what the members compare is
sha256 of its canonical JSON: `json.dumps(template, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)` encoded as UTF-8. Canonical, so the indentation or key order a file happens to have
does not change what was accepted, and any change to a value (an image, a command, an environment
variable, the ccePolicy) does. The CGS stand-in (audit records) and the members' client
(`sidecars.governance.deployment`) both use this one function.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: An ARM template of a clean room is tens of kilobytes (its ccePolicy is most of it); CGS takes proposals
#: up to 1 MiB. Files larger than this are refused before they are parsed.
MAX_TEMPLATE_BYTES = 1 << 20


def canonical_template_json(template: dict[str, Any]) -> bytes:
    return json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def template_sha256(template: dict[str, Any]) -> str:
    """Hex sha256 of the template's canonical JSON (see the module's docstring)."""
    return hashlib.sha256(canonical_template_json(template)).hexdigest()
