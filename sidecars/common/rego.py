"""The project's Rego engine: the real OPA (v1 syntax), embedded through `opa-golib-python-bindings`.

One engine per set of policies; evaluation of a fixed query is ~0.05 ms once prepared (OPA caches the
prepared query per query string, so keep queries a fixed, code-controlled set). Policies that do not
compile fail at load with OPA's message; an undefined result is `None`, which callers must treat as a
denial (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from .errors import ConfigError


class RegoPolicyError(ConfigError):
    """A policy module does not parse or compile."""

    code = "InvalidPolicy"


def _one_line(message: str) -> str:
    """OPA's message without the source excerpt and caret it indents under each error: errors are one line."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip() and not line.startswith("\t"))


class RegoEngine:
    def __init__(self) -> None:
        self._engine = OpaEngine()

    def add_policy(self, name: str, source: str) -> RegoEngine:
        try:
            self._engine.add_policy(name, source)
        except OpaError as exc:
            raise RegoPolicyError(f"policy {name} does not compile: {_one_line(exc.message)}") from None
        return self

    def add_policy_file(self, path: str | Path) -> RegoEngine:
        path = Path(path)
        try:
            source = path.read_text()
        except OSError as exc:
            raise RegoPolicyError(f"cannot read policy {path}: {exc.strerror}") from None
        return self.add_policy(path.name, source)

    def add_data(self, data: Mapping[str, Any], path: str = "") -> RegoEngine:
        self._engine.add_data(dict(data), path)
        return self

    def evaluate(self, document: str, input: Any = None) -> Any:
        """Evaluate `data.<document>` (e.g. `envoy.authz.allow`); None when the document is undefined."""
        try:
            return self._engine.eval_document(document, input)
        except OpaUndefinedError:
            return None
        except OpaError as exc:
            raise RegoPolicyError(f"evaluating {document} failed: {exc.message.strip()}") from None

    def close(self) -> None:
        self._engine.close()


def check_policy(name: str, source: str) -> None:
    """Raise RegoPolicyError unless OPA accepts `source` as a module (each policy in an engine of its own:
    the proxy's policies all live in `package envoy.authz`)."""
    engine = RegoEngine()
    try:
        engine.add_policy(name, source)
    finally:
        engine.close()
