"""Rego engines behind one small interface, so the same policies and the same conformance suite run on
each: the real OPA embedded (the default), regopy (Microsoft's rego-cpp, the fallback) and an external
OPA server over its REST Data API (`opa-python-client`).

`evaluate(document, input)` returns the value of `data.<document>`, or None when it is undefined;
callers treat None as a denial. Policies are Rego v1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..common.errors import ConfigError, RemoteServiceError
from ..common.rego import RegoEngine, RegoPolicyError


class PolicyEngine(Protocol):
    name: str
    # True when evaluate() waits on the network: the authz server then runs it off the event loop.
    blocking: bool

    def evaluate(self, document: str, input: Any) -> Any: ...


class OpaEmbeddedEngine:
    """The real OPA (v1.20, Go), embedded. OPA caches the prepared query per document."""

    name = "opa"
    blocking = False

    def __init__(self, policies: Mapping[str, str]):
        self._engine = RegoEngine()
        for name, source in policies.items():
            self._engine.add_policy(name, source)

    def evaluate(self, document: str, input: Any) -> Any:
        return self._engine.evaluate(document, input)


class RegopyEngine:
    """rego-cpp through regopy. A plain query of a false rule is undefined in regopy, so the query binds
    the document to a variable and reads the binding."""

    name = "regopy"
    blocking = False

    def __init__(self, policies: Mapping[str, str]):
        import regopy  # lazy: only the chosen engine's library loads (52 ms)

        self._interpreter = regopy.Interpreter()
        for name, source in policies.items():
            try:
                self._interpreter.add_module(name, source)
            except regopy.RegoError as exc:
                raise RegoPolicyError(f"policy {name} does not compile (regopy): {exc}") from None
        self._error = regopy.RegoError

    def evaluate(self, document: str, input: Any) -> Any:
        try:
            self._interpreter.set_input_term(json.dumps(input))
            output = self._interpreter.query(f"x := data.{document}")
        except self._error as exc:
            raise RegoPolicyError(f"evaluating {document} failed (regopy): {exc}") from None
        # Reading a binding of an undefined result aborts the process inside rego-cpp: check first.
        if not output.ok() or str(output) == "undefined":
            return None
        return json.loads(output.binding("x").json())


class OpaServerEngine:
    """An external OPA server, through its REST Data API (`POST /v1/data/<path>` with `{"input"}`;
    `{"result"}` absent when undefined). Policies are uploaded with `PUT /v1/policies/<id>`."""

    name = "opa-server"
    blocking = True

    def __init__(self, url: str, policies: Mapping[str, str], *, timeout: float = 2.0):
        from opa_client import OpaClient  # lazy: only the chosen engine's library loads (370 ms)

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"OPA server URL must be http(s)://HOST:PORT, got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._client = OpaClient(host=parts.hostname, port=port, ssl=parts.scheme == "https",
                                 timeout=timeout, retries=0)
        self.url = url
        for name, source in policies.items():
            try:
                self._client.update_policy_from_string(source, name.removesuffix(".rego"), rego_compat=False)
            except Exception as exc:
                raise RegoPolicyError(f"OPA server at {url} refused policy {name}: {exc}") from None

    def evaluate(self, document: str, input: Any) -> Any:
        package, _, rule = document.rpartition(".")
        try:
            answer = self._client.query_rule(input, package, rule)
        except Exception as exc:
            raise RemoteServiceError(f"OPA server at {self.url}", str(exc)) from None
        return answer.get("result")


ENGINES = ("opa", "regopy", "opa-server")


def create_engine(kind: str, policies: Mapping[str, str], *, opa_url: str | None = None) -> PolicyEngine:
    if kind == "opa":
        return OpaEmbeddedEngine(policies)
    if kind == "regopy":
        return RegopyEngine(policies)
    if kind == "opa-server":
        if not opa_url:
            raise ConfigError("the opa-server engine needs --opa-url http://HOST:PORT")
        return OpaServerEngine(opa_url, policies)
    raise ConfigError(f"unknown policy engine {kind!r}; choose one of {', '.join(ENGINES)}")
