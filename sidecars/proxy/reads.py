"""Which parts of the OPA-Envoy input a policy can observe, found by reading its source.

Two costs of the ext_authz path come from parts of the input a policy never looks at (measured under
wrk, see docs/proxy.md): embedded OPA converts the whole input document (~1 KiB: every header, the
body twice) on each evaluation, and two requests that differ only in an unread part (`x-request-id`,
`user-agent`) are evaluated twice. Knowing the read set, the authorization server hands OPA only those
parts (`prune`) and caches decisions keyed on exactly them.

Soundness is the point, so the analysis is conservative: every token `input` (and every use of an
`import input...` alias) is a read of the reference written after it — `.name` and `["string"]` steps
only; a step it cannot follow (`[x]`, `[0]`, a space) ends the path there, and the whole subtree below
is read. A bare `input`, `with input`, an import it does not understand or a template string make the
policy read everything (`None`: nothing is pruned, nothing cached). A policy cannot reach the input any
other way: Rego has no reflection and `data` never contains it.

A decision is only cacheable if the policy is a function of its input: one that calls a builtin whose
answer depends on the clock, randomness or the network (`NONDETERMINISTIC`) is evaluated every time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Builtins (prefixes of their dotted names) whose result is not a function of their arguments.
NONDETERMINISTIC = ("time.", "rand.", "uuid.", "http.send", "net.lookup_ip_addr", "opa.runtime",
                    "io.jwt.decode_verify", "io.jwt.encode_sign", "crypto.x509.parse_and_verify",
                    "providers.")

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9][0-9.eE+-]*)
  | (?P<punct>.)
""", re.VERBOSE | re.DOTALL)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    adjacent: bool  # no space or comment between this token and the one before


class _Unbounded(Exception):
    """The policy may read all of its input."""


def _tokens(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    adjacent = False
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "punct"
        if kind in ("space", "comment"):
            adjacent = False
            continue
        if kind == "punct" and match.group() == "$":
            raise _Unbounded  # a template string: references inside a string literal
        tokens.append(_Token(kind, match.group(), adjacent))
        adjacent = True
    return tokens


def _ref_path(tokens: list[_Token], start: int) -> tuple[tuple[str, ...], int]:
    """The `.name` / `["string"]` steps after tokens[start - 1]; (steps, index after them)."""
    steps: list[str] = []
    i = start
    while i < len(tokens) and tokens[i].adjacent:
        token = tokens[i]
        if token.text == "." and i + 1 < len(tokens) and tokens[i + 1].kind == "ident" and tokens[i + 1].adjacent:
            steps.append(tokens[i + 1].text)
            i += 2
        elif (token.text == "[" and i + 2 < len(tokens) and tokens[i + 1].kind == "string"
              and tokens[i + 2].text == "]"):
            try:
                steps.append(json.loads(tokens[i + 1].text))
            except ValueError:
                break  # an escape we do not read like Rego: the path ends here (reads more, never less)
            i += 3
        else:
            break
    return tuple(steps), i


def _imports(tokens: list[_Token]) -> tuple[dict[str, tuple[str, ...]], set[int]]:
    """`import input.a.b` (alias `b`) and `import input.a.b as x` (alias `x`): (alias → path, the indices
    of the tokens that declare them)."""
    aliases: dict[str, tuple[str, ...]] = {}
    declarations: set[int] = set()
    for i, token in enumerate(tokens):
        if token.text != "import" or i + 1 >= len(tokens) or tokens[i + 1].text != "input":
            continue
        path, after = _ref_path(tokens, i + 2)
        if after + 1 < len(tokens) and tokens[after].text == "as" and tokens[after + 1].kind == "ident":
            alias = tokens[after + 1].text
            declarations.add(after + 1)
        elif path and tokens[after - 1].kind == "ident":  # written `.name`; `["a"]` is not an alias we trust
            alias = path[-1]
        else:
            raise _Unbounded
        if not path:
            raise _Unbounded  # `import input as x`: x is all of it
        aliases[alias] = path
    return aliases, declarations


def input_reads(source: str) -> frozenset[tuple[str, ...]] | None:
    """The input paths `source` can observe (each with everything below it), or None for all of it."""
    try:
        tokens = _tokens(source)
        aliases, declarations = _imports(tokens)
        reads: set[tuple[str, ...]] = set()
        for i, token in enumerate(tokens):
            if token.kind != "ident" or (i > 0 and tokens[i - 1].text == "." and token.adjacent) or i in declarations:
                continue  # `x.input` is a field of x, not the input document; `as x` names an alias
            if token.text == "input":
                root: tuple[str, ...] = ()
            elif token.text in aliases:
                root = aliases[token.text]
            else:
                continue
            if i > 0 and tokens[i - 1].text == "with":
                raise _Unbounded  # the policy replaces (part of) its input for a sub-evaluation
            if i > 0 and tokens[i - 1].text == "import":
                continue  # the import itself; its uses are counted
            steps, _after = _ref_path(tokens, i + 1)
            path = root + steps
            if not path:
                raise _Unbounded
            reads.add(path)
    except _Unbounded:
        return None
    return frozenset(reads)


def is_deterministic(source: str) -> bool:
    """False when the policy calls a builtin whose answer is not a function of the input."""
    try:
        tokens = _tokens(source)
    except _Unbounded:
        return False
    names: list[str] = []
    current = ""
    for token in tokens:
        if token.kind == "ident" and current.endswith(".") and token.adjacent:
            current += token.text
        elif token.text == "." and token.adjacent and current and not current.endswith("."):
            current += "."
        else:
            if current:
                names.append(current)
            current = token.text if token.kind == "ident" else ""
    names.append(current)
    return not any(name.startswith(NONDETERMINISTIC) for name in names)


_WHOLE = object()


def _trie(paths: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths, key=len):
        node = root
        for step in path[:-1]:
            child = node.setdefault(step, {})
            if child is _WHOLE:
                break
            node = child
        else:
            node[path[-1]] = _WHOLE
    return root


class InputPruner:
    """Copies of an input document holding only what a policy reads (and the objects on the way)."""

    def __init__(self, reads: frozenset[tuple[str, ...]]):
        self.reads = reads
        self._trie = _trie(reads)

    def prune(self, document: dict[str, Any]) -> dict[str, Any]:
        return _pruned(document, self._trie)


def _pruned(value: Any, trie: dict[str, Any]) -> Any:
    if not isinstance(value, dict):
        return value  # a step into a non-object is undefined either way; keep the value as it is
    out = {}
    for key, below in trie.items():
        if key in value:
            out[key] = value[key] if below is _WHOLE else _pruned(value[key], below)
    return out


_HTTP = ("attributes", "request", "http")
# Input paths whose value is fixed by build_input, or absent from a request decision's input.
_CONSTANT = {(*_HTTP, "scheme"), (*_HTTP, "protocol"), ("version",), ("response",),
             ("attributes", "context_extensions")}
# Input paths that are functions of the request line (method, path) and the body (+ content-type).
_REQUEST_LINE = {(*_HTTP, "method"), (*_HTTP, "path"), ("parsed_path",), ("parsed_query",)}
_BODY = {(*_HTTP, "body"), (*_HTTP, "raw_body"), (*_HTTP, "size"), ("parsed_body",), ("truncated_body",)}
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")


def request_key_headers(reads: frozenset[tuple[str, ...]] | None) -> tuple[str, ...] | None:
    """The request headers that, with the method, the path and the body, determine every input part
    the policy reads — so a key of those determines the decision — or None when no such list is known
    (the policy reads the header map itself, or a part this function does not know how it is built).

    `http.id` is x-request-id, `http.host` the `:authority`; `content-type` is always in: the body is
    parsed by it. A read header whose name no request can carry (upper case, not a token) is always
    undefined and needs no place in the key."""
    if reads is None:
        return None
    names = {"content-type"}
    for path in reads:
        if path[:len(_HTTP) + 1] == (*_HTTP, "headers") and len(path) > len(_HTTP) + 1:
            name = path[len(_HTTP) + 1]
            if name == "cookie":
                return None  # repeated cookies may reach the server joined with "; ", Lua sees them with ","
            if _HEADER_NAME.fullmatch(name):
                names.add(name)
        elif path == (*_HTTP, "id"):
            names.add("x-request-id")
        elif path == (*_HTTP, "host"):
            names.add(":authority")
        elif not any(path[:len(known)] == known for known in _CONSTANT | _REQUEST_LINE | _BODY):
            return None
    return tuple(sorted(names))
