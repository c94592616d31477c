"""What a whole run (a demo) sent the CGS stand-in, from the stand-in's own record (`wirelog/sitecustomize.py`),
checked against the real wire: no legacy `CCR-Member` header, no legacy path, api-version on every `/gov`
request, COSE on every governance write, a request the reference sends (or one of the stand-in's public
non-governance paths) for every path, and no request refused for its credentials.

`recording_env(log)` is the environment a run needs for the stand-in it starts to keep the record.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.conformance import vectors
from tests.conformance.reference import GOV_API_VERSION

WIRELOG_DIR = Path(__file__).resolve().parent / "wirelog"
WIRE_LOG_ENV = "CCR_CONFORMANCE_WIRE_LOG"
# Served by the stand-in but no part of the governance API: the OIDC issuer's discovery document and keys
# (read by Entra's stand-in and by token verifiers) and CCF's readiness probe.
PUBLIC_PATHS = re.compile(r"^(/app)?/oidc/(\.well-known/openid-configuration|keys)$|^/node/ready/app$")
COSE_WRITES = {"gov.proposal.create", "gov.ballot.submit", "gov.proposal.withdraw", "gov.statedigest.update",
               "gov.statedigest.ack"}


def recording_env(log: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(WIRELOG_DIR), env.get("PYTHONPATH", "")) if p)
    env[WIRE_LOG_ENV] = str(log)
    return env


def read_wire_log(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def wire_log_problems(records: list[dict[str, Any]]) -> list[str]:
    problems = []
    legacy = [re.compile("^" + re.sub(r"\\\{[A-Za-z]+\\\}", "[^/]+", re.escape(p)) + "$") for _m, p in vectors.LEGACY]
    for record in records:
        line = f"{record['method']} {record['path']}" + (f"?{record['query']}" if record["query"] else "")
        if record["authorization_scheme"] == "CCR-Member":
            problems.append(f"{line}: legacy CCR-Member header")
        if any(p.match(record["path"]) for p in legacy):
            problems.append(f"{line}: legacy path")
        if record["status"] in (401, 403):
            problems.append(f"{line}: refused {record['status']}")
        if PUBLIC_PATHS.match(record["path"]):
            continue
        candidates = vectors.matches(record["method"], record["path"])
        if not candidates:
            problems.append(f"{line}: not a request the reference sends")
            continue
        wire = candidates[0]
        if wire.versioned and parse_qs(record["query"]).get("api-version") != [GOV_API_VERSION]:
            problems.append(f"{line}: /gov without api-version={GOV_API_VERSION}")
        if wire.id in COSE_WRITES and record["content_type"] != "application/cose":
            problems.append(f"{line}: governance write as {record['content_type']!r}, not application/cose")
        answered = record["status"] is not None and record["status"] < 400
        if all(w.auth == "member_cert" for w in candidates) and answered and not record["client_cert"]:
            problems.append(f"{line}: member request answered without a client certificate")
    return problems
