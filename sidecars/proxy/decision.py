"""What a policy's decision means, as OPA-Envoy defines it.

A decision is a boolean, or an object `{allowed, headers, body, http_status}`: `allowed` (required,
boolean); `headers` (name → string or list of strings) go to the upstream request when allowed and to
the client's response when denied; `body` and `http_status` (default 403) shape the denial. Anything
else — undefined, a non-boolean `allowed`, a status out of range, a field we cannot honour — is an
error, and an error is a denial (fail closed).

On an allowed request only headers named `x-*` can be added upstream: Envoy's HTTP ext_authz copies
the authorization response's headers that match a fixed pattern, and `x-` keeps the authorization
response's own framing headers (content-length, date) out of the app's request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Fields of OPA-Envoy's decision object that would change the request in ways the HTTP ext_authz
# protocol cannot carry: silently ignoring them would let through what the policy meant to strip.
_UNSUPPORTED = ("request_headers_to_remove", "query_parameters_to_set", "query_parameters_to_remove")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    http_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    reason: str = ""
    # Response decisions only: an allowed response whose body the policy rewrote (redaction).
    replace_body: str | None = None

    @classmethod
    def deny(cls, reason: str, status: int = 403) -> Decision:
        return cls(False, status, {"content-type": "text/plain"}, f"{reason}\n", reason)


def _header_values(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object of header names to values")
    out: dict[str, str] = {}
    for name, val in value.items():
        if isinstance(val, list) and all(isinstance(v, str) for v in val):
            out[name.lower()] = ", ".join(val)
        elif isinstance(val, str):
            out[name.lower()] = val
        else:
            raise ValueError(f"{where}.{name} must be a string or a list of strings")
    return out


def interpret(result: Any, *, document: str, response: bool = False) -> Decision:
    """Turn a policy result into a Decision; every malformed or undefined result is a denial.

    For a response decision (`response=True`), an allowed object's `body` replaces the response body."""
    if result is None:
        return Decision.deny(f"denied: the policy decision {document} is undefined")
    if isinstance(result, bool):
        return Decision(True) if result else Decision.deny(f"denied by the policy ({document})")
    if not isinstance(result, dict):
        return Decision.deny(f"denied: the policy decision {document} is neither a boolean nor an object")
    try:
        allowed = result.get("allowed")
        if not isinstance(allowed, bool):
            raise ValueError("'allowed' must be a boolean")
        for name in _UNSUPPORTED:
            if result.get(name):
                raise ValueError(f"'{name}' is not supported by this proxy")
        headers = _header_values(result.get("headers", {}), "headers")
        body = result.get("body")
        if body is not None and not isinstance(body, str):
            raise ValueError("'body' must be a string")
        status = result.get("http_status", 200 if allowed else 403)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise ValueError("'http_status' must be an HTTP status code")
    except ValueError as exc:
        return Decision.deny(f"denied: malformed policy decision {document}: {exc}")
    if allowed:
        bad = [name for name in headers if not name.startswith("x-")]
        if bad:
            return Decision.deny(f"denied: decision headers {bad} cannot be added upstream (only x-*)")
        return Decision(True, 200, headers, "", replace_body=body if response else None)
    if status == 200:
        status = 403
    return Decision(False, status, headers, body or "", f"denied by the policy ({document})")
