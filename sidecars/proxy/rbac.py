"""Compile simple request policies into Envoy's native RBAC filter, so they cost no Python at all.

Only a small, exactly-understood subset of Rego is compiled; anything else returns None and the policy
runs in OPA through ext_authz. The subset (package `envoy.authz`):

    default allow := false                       (optional)
    allow := true                                (allow everything)
    allow if { COND; COND ... }                  (repeatable: the rules are OR-ed)

where COND is one of (`http` standing for `input.attributes.request.http`, or its import alias):
    http.method == "GET"        http.method in {"GET", "HEAD"}
    http.path == "/x?y"         startswith(http.path, "/api/")
    input.parsed_path == ["a", "b"]     (segments of unreserved characters only)
    http.host == "api.example.com"

Other headers stay in OPA: a repeated header reaches OPA joined (`k1,k2`) while RBAC matches each value,
as the equivalence suite showed.

Why the semantics are identical: both enforcement points see the request after Envoy's own
normalisation (`normalize_path`, `merge_slashes`, encoded slashes rejected), which decodes every
percent-escaped unreserved character. OPA-Envoy's `parsed_path` decodes every escape; a segment made of
unreserved characters can therefore only come from the same normalised path that RBAC's `url_path`
compares (query and fragment excluded in both). `http.path` is the `:path` header in both. The
integration suite runs each compiled policy both ways over the same tricky requests and compares.
"""

from __future__ import annotations

import json
import re
from typing import Any

_STRING = r'"(?:[^"\\]|\\.)*"'
_UNRESERVED_SEGMENT = re.compile(r"[A-Za-z0-9._~-]*")
_HTTP_REF = "input.attributes.request.http"


def _strip_comments(source: str) -> list[str] | None:
    lines = []
    for line in source.splitlines():
        if "#" in line:
            before = line.split("#", 1)[0]
            if before.count('"') % 2:  # a '#' inside a string: not our subset
                return None
            line = before
        if line.strip():
            lines.append(line.strip())
    return lines


def _string(text: str) -> str | None:
    if re.fullmatch(_STRING, text):
        return json.loads(text)
    return None


def _string_set(text: str) -> list[str] | None:
    match = re.fullmatch(r"\{(.*)\}", text)
    if not match:
        return None
    items = [item.strip() for item in match.group(1).split(",") if item.strip()]
    values = [_string(item) for item in items]
    return None if not values or any(v is None for v in values) else values  # type: ignore[return-value]


def _header(name: str, **string_match: str) -> dict[str, Any]:
    return {"header": {"name": name, "string_match": string_match}}


def _condition(cond: str, http_refs: set[str]) -> dict[str, Any] | None:
    refs = "|".join(re.escape(r) for r in sorted(http_refs))
    if m := re.fullmatch(rf"(?:{refs})\.method\s*==\s*({_STRING})", cond):
        return _header(":method", exact=json.loads(m.group(1)))
    if m := re.fullmatch(rf"({_STRING})\s*==\s*(?:{refs})\.method", cond):
        return _header(":method", exact=json.loads(m.group(1)))
    if m := re.fullmatch(rf"(?:{refs})\.method\s+in\s+(\{{.*\}})", cond):
        methods = _string_set(m.group(1))
        if methods is None:
            return None
        return {"or_rules": {"rules": [_header(":method", exact=v) for v in methods]}}
    if m := re.fullmatch(rf"(?:{refs})\.path\s*==\s*({_STRING})", cond):
        return _header(":path", exact=json.loads(m.group(1)))
    if m := re.fullmatch(rf"startswith\(\s*(?:{refs})\.path\s*,\s*({_STRING})\s*\)", cond):
        return _header(":path", prefix=json.loads(m.group(1)))
    if m := re.fullmatch(rf"(?:{refs})\.host\s*==\s*({_STRING})", cond):
        return _header(":authority", exact=json.loads(m.group(1)))
    if m := re.fullmatch(r"input\.parsed_path\s*==\s*\[(.*)\]", cond):
        items = [item.strip() for item in m.group(1).split(",")] if m.group(1).strip() else []
        segments = [_string(item) for item in items]
        if not segments or any(s is None or not _UNRESERVED_SEGMENT.fullmatch(s) or s in (".", "..")
                               for s in segments):
            return None
        return {"url_path": {"path": {"exact": "/" + "/".join(segments)}}}  # type: ignore[arg-type]
    return None


def _rule_bodies(lines: list[str]) -> tuple[list[list[str]], bool] | None:
    """Split the statements after the package line into allow-rule bodies; (bodies, allow_all)."""
    text = "\n".join(lines)
    bodies: list[list[str]] = []
    allow_all = False
    pos = 0
    statement = re.compile(
        r"\s*(?:"
        r"(?P<default>default\s+allow\s*:?=\s*(?P<default_value>true|false))"
        r"|(?P<const>allow\s*:?=\s*true)"
        r"|allow\s+if\s*\{(?P<block>[^{}]*(?:\{[^{}]*\}[^{}]*)*)\}"
        r"|allow\s+if\s+(?P<single>[^\n]+)"
        r")\s*(?:\n|$)")
    while pos < len(text):
        m = statement.match(text, pos)
        if not m:
            return None
        pos = m.end()
        if m.group("default"):
            allow_all = allow_all or m.group("default_value") == "true"
        elif m.group("const"):
            allow_all = True
        else:
            raw = m.group("block") if m.group("block") is not None else m.group("single")
            conds = [c.strip() for part in raw.split("\n") for c in part.split(";") if c.strip()]
            if not conds:
                return None
            bodies.append(conds)
    return bodies, allow_all


def compile_rbac(source: str) -> dict[str, Any] | None:
    """The RBAC filter config equivalent to `source`'s `data.envoy.authz.allow`, or None."""
    lines = _strip_comments(source)
    if not lines or not re.fullmatch(r"package\s+envoy\.authz", lines[0]):
        return None
    http_refs = {_HTTP_REF}
    rest = []
    for line in lines[1:]:
        if line == "import rego.v1":
            continue
        if m := re.fullmatch(rf"import\s+{re.escape(_HTTP_REF)}\s+as\s+([A-Za-z_][A-Za-z0-9_]*)", line):
            http_refs.add(m.group(1))
            continue
        if line.startswith("import "):
            return None
        rest.append(line)
    parsed = _rule_bodies(rest)
    if parsed is None:
        return None
    bodies, allow_all = parsed
    if allow_all:
        policies = {"allow-all": {"permissions": [{"any": True}], "principals": [{"any": True}]}}
    else:
        policies = {}
        for i, conds in enumerate(bodies):
            rules = [_condition(c, http_refs) for c in conds]
            if any(r is None for r in rules):
                return None
            permission = rules[0] if len(rules) == 1 else {"and_rules": {"rules": rules}}
            policies[f"allow-{i}"] = {"permissions": [permission], "principals": [{"any": True}]}
    return {"rules": {"action": "ALLOW", "policies": policies}}


_INPUT_REF = re.compile(r"\binput\b((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_BODY_REFS = (".parsed_body", ".truncated_body", ".attributes.request.http.body", ".attributes.request.http.raw_body")
_BODY_PARENTS = ("", ".attributes", ".attributes.request", ".attributes.request.http")


def _code_only(source: str) -> str:
    """`source` without comments (a `#` outside a string starts one)."""
    out = []
    for line in source.splitlines():
        quote = ""  # the delimiter of the string we are in: '"' or '`' (raw, no escapes)
        escaped = False
        for i, char in enumerate(line):
            if quote:
                if escaped:
                    escaped = False
                elif char == "\\" and quote == '"':
                    escaped = True
                elif char == quote:
                    quote = ""
            elif char in "\"`":
                quote = char
            elif char == "#":
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def needs_request_body(source: str) -> bool:
    """Whether Envoy must send the request body with the authorization request. Conservative: a
    reference to the body, or to any document that contains it (`input`, `input.attributes`, …, an
    import of part of `input`), counts; `input.response` (the response rule's input) does not."""
    source = _code_only(source)
    for match in _INPUT_REF.finditer(source):
        path = match.group(1)
        if source[match.start() - 7:match.start()].strip() == "import":
            return True
        if path.startswith(_BODY_REFS) or path in _BODY_PARENTS:
            return True
    return False


def defines_response_rule(source: str) -> bool:
    return re.search(r"^\s*(default\s+)?response\b", source, re.MULTILINE) is not None
