"""Secure key release policies: the grammar Azure Key Vault and managed HSM enforce, and its evaluation.

    policy    = {"version": "1.0.0", "anyOf": [authority, ...]}
    authority = {"authority": URL, "allOf" | "anyOf": [condition, ...]}
    condition = {"claim": NAME, OP: VALUE} | {"allOf" | "anyOf": [condition, ...]}
    OP        = equals | notEquals | less | lessOrEquals | greater | greaterOrEquals | exists

Member names are matched case-insensitively (the published EBNF spells them `anyof:`, the examples
`anyOf`). A claim name with dots (`x-ms-isolation-tee.x-ms-compliance-status`) walks nested objects when
the token has no flat claim of that exact name. Values are compared as strings (JSON spelling: `true`,
`false`, `3`), except that the ordering operators compare numerically when both sides are numbers.
An authority matches a token's issuer after normalising scheme, host case, default port and trailing
slash, so `https://x.attest.azure.net/` and `x.attest.azure.net` name the same authority.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import BadRequest, PolicyDenied

SUPPORTED_VERSIONS = ("1.0.0",)
OPERATORS = ("equals", "notEquals", "less", "lessOrEquals", "greater", "greaterOrEquals", "exists")
_OPERATOR_BY_LOWER = {op.lower(): op for op in OPERATORS}
_MISSING = object()


def normalize_authority(url: str) -> str:
    text = url.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port in (None, {"https": 443, "http": 80}.get(scheme)) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def claim_text(value: Any) -> str:
    """A claim value as the string the policy compares (JSON spelling for non-strings)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def lookup_claim(claims: dict[str, Any], name: str) -> Any:
    if name in claims:
        return claims[name]
    node: Any = claims
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class ClaimCondition:
    claim: str
    operator: str
    value: Any

    def check(self, claims: dict[str, Any]) -> str | None:
        """None when satisfied, else why not (naming the claim)."""
        actual = lookup_claim(claims, self.claim)
        if self.operator == "exists":
            want = claim_text(self.value).lower() == "true"
            if (actual is not _MISSING) == want:
                return None
            return f"claim {self.claim} must {'exist' if want else 'be absent'}"
        if actual is _MISSING:
            return f"claim {self.claim} is missing (policy: {self.operator} {claim_text(self.value)!r})"
        got, want_text = claim_text(actual), claim_text(self.value)
        if self.operator == "equals":
            ok = got == want_text
        elif self.operator == "notEquals":
            ok = got != want_text
        else:
            a, b = _number(got), _number(want_text)
            left, right = (a, b) if a is not None and b is not None else (got, want_text)
            ok = {"less": left < right, "lessOrEquals": left <= right,
                  "greater": left > right, "greaterOrEquals": left >= right}[self.operator]
        if ok:
            return None
        return f"claim {self.claim} is {got!r}; the policy requires {self.operator} {want_text!r}"


@dataclass(frozen=True)
class Combination:
    mode: str  # "allOf" | "anyOf"
    conditions: tuple[ClaimCondition | Combination, ...]

    def check(self, claims: dict[str, Any]) -> str | None:
        failures = []
        for condition in self.conditions:
            reason = condition.check(claims)
            if self.mode == "allOf" and reason is not None:
                return reason
            if self.mode == "anyOf":
                if reason is None:
                    return None
                failures.append(reason)
        if self.mode == "allOf":
            return None
        return "none of anyOf holds: " + "; ".join(failures)


@dataclass(frozen=True)
class AuthorityRule:
    authority: str
    condition: Combination

    def matches(self, issuer: str) -> bool:
        return normalize_authority(self.authority) == normalize_authority(issuer)


@dataclass(frozen=True)
class ReleasePolicy:
    version: str
    rules: tuple[AuthorityRule, ...]

    @property
    def authorities(self) -> list[str]:
        return [rule.authority for rule in self.rules]

    def rules_for(self, issuer: str) -> list[AuthorityRule]:
        return [rule for rule in self.rules if rule.matches(issuer)]

    def evaluate(self, issuer: str, claims: dict[str, Any]) -> None:
        """Raise PolicyDenied naming the failing claim unless some rule for `issuer` holds."""
        rules = self.rules_for(issuer)
        if not rules:
            raise PolicyDenied(f"token issuer {issuer} is not an authority of the key's release policy "
                               f"(authorities: {', '.join(self.authorities)})")
        reasons = []
        for rule in rules:
            reason = rule.condition.check(claims)
            if reason is None:
                return
            reasons.append(reason)
        raise PolicyDenied("release policy not satisfied: " + "; ".join(reasons))

    @classmethod
    def parse(cls, document: Any, where: str = "release_policy") -> ReleasePolicy:
        if isinstance(document, bytes | str):
            try:
                document = json.loads(document)
            except (ValueError, UnicodeDecodeError):
                raise BadRequest(f"{where}: not JSON") from None
        doc = _lower_keys(document, where)
        version = doc.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise BadRequest(f"{where}.version: {version!r} is not supported; use {SUPPORTED_VERSIONS[0]!r}")
        entries = doc.get("anyof")
        if not isinstance(entries, list) or not entries:
            raise BadRequest(f"{where}.anyOf: expected a non-empty list of authorities")
        rules = []
        for i, entry in enumerate(entries):
            path = f"{where}.anyOf[{i}]"
            entry_doc = _lower_keys(entry, path)
            authority = entry_doc.get("authority")
            if not isinstance(authority, str) or not authority.strip():
                raise BadRequest(f"{path}.authority: expected the attestation service URL")
            unknown = set(entry_doc) - {"authority", "allof", "anyof"}
            if unknown:
                raise BadRequest(f"{path}: unknown member(s) {', '.join(sorted(unknown))}")
            rules.append(AuthorityRule(authority, _combination(entry_doc, path)))
        return cls(version, tuple(rules))


def _lower_keys(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: expected an object")
    return {str(k).lower(): v for k, v in value.items()}


def _combination(doc: dict[str, Any], path: str) -> Combination:
    modes = [m for m in ("allof", "anyof") if m in doc]
    if len(modes) != 1:
        raise BadRequest(f"{path}: expected exactly one of allOf or anyOf")
    mode = "allOf" if modes[0] == "allof" else "anyOf"
    items = doc[modes[0]]
    if not isinstance(items, list) or not items:
        raise BadRequest(f"{path}.{mode}: expected a non-empty list of conditions")
    return Combination(mode, tuple(_condition(item, f"{path}.{mode}[{i}]") for i, item in enumerate(items)))


def _condition(item: Any, path: str) -> ClaimCondition | Combination:
    doc = _lower_keys(item, path)
    if "claim" not in doc:
        return _combination(doc, path)
    claim = doc.pop("claim")
    if not isinstance(claim, str) or not claim:
        raise BadRequest(f"{path}.claim: expected a claim name")
    if len(doc) != 1:
        raise BadRequest(f"{path}: expected exactly one operator ({', '.join(OPERATORS)})")
    (op_lower, value), = doc.items()
    operator = _OPERATOR_BY_LOWER.get(op_lower)
    if operator is None:
        raise BadRequest(f"{path}: unknown operator {op_lower!r}; use one of {', '.join(OPERATORS)}")
    if not isinstance(value, str | int | float | bool) or value is None:
        raise BadRequest(f"{path}.{operator}: expected a string, number or boolean")
    return ClaimCondition(claim, operator, value)


#: what Azure Attestation says of a UVM Microsoft endorsed; and what the MAA stand-in says of one a local mock
#: platform endorsed (a real MAA never says it)
COMPLIANT_UVM = "azure-compliant-uvm"
MOCK_UVM = "ccr-mock-uvm"


def sevsnp_policy(authority: str, host_data: str, *, allow_debug: bool = False,
                  require_compliant_uvm: bool = True, accept_mock_uvm: bool = False) -> dict[str, Any]:
    """The policy a data owner attaches to a KEK for a confidential container group: released only to
    a room whose CCE policy hash (HOST_DATA) is `host_data`, attested by `authority`. `accept_mock_uvm`:
    for the local stand-ins only, a second rule accepts a UVM their mock platform endorsed."""
    statuses = [COMPLIANT_UVM, *([MOCK_UVM] if accept_mock_uvm else [])] if require_compliant_uvm else [None]
    rules = []
    for status in statuses:
        conditions: list[dict[str, Any]] = [
            {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"},
            {"claim": "x-ms-sevsnpvm-hostdata", "equals": host_data.lower()},
        ]
        if status is not None:
            conditions.append({"claim": "x-ms-compliance-status", "equals": status})
        if not allow_debug:
            conditions.append({"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"})
        rules.append({"authority": authority, "allOf": conditions})
    return {"version": "1.0.0", "anyOf": rules}
