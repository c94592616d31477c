"""The policy side shared by the authorization and response-inspection servers: which engine holds which
endpoint's policy, how a request or a response is judged. Denials always; errors are denials too.

With an embedded engine a request is judged on only the input parts its policy reads (`reads.py`):
OPA gets that pruned document, and the decision is cached keyed on exactly it, so a repeated request
(same method, path, read headers and body; any `x-request-id`) costs no evaluation.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..common.errors import CcrError, ConfigError, RemoteServiceError
from .decision import Decision, interpret
from .engines import PolicyEngine, create_engine
from .model import REQUEST_DECISION, RESPONSE_DECISION
from .opa_input import InputError, build_input
from .reads import InputPruner, input_reads, is_deterministic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicyConfig:
    """What the servers load: endpoint name → policy file, and the engine to evaluate them with."""

    policies: dict[str, str] = field(default_factory=dict)
    engine: str = "opa"
    opa_url: str | None = None
    # Reuse decisions of requests that agree on every part the policy reads (off: evaluate each request).
    cache: bool = True

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> PolicyConfig:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read the policy configuration {path}: {exc}") from None


# Bounds per endpoint and worker: entries, and the size of one key (the pruned input as JSON); a
# larger request is evaluated every time. At most ~4 MiB of keys, whatever clients send.
DECISION_CACHE_ENTRIES = 1024
DECISION_CACHE_KEY_BYTES = 4096


class DecisionCache:
    """Decisions keyed on the pruned input, oldest dropped first once full."""

    def __init__(self, entries: int = DECISION_CACHE_ENTRIES, key_bytes: int = DECISION_CACHE_KEY_BYTES):
        self.entries = entries
        self.key_bytes = key_bytes
        self._decisions: dict[str, Decision] = {}
        self.hits = 0
        self.misses = 0

    def key(self, pruned: dict[str, Any]) -> str | None:
        key = json.dumps(pruned, sort_keys=True, separators=(",", ":"))
        return key if len(key) <= self.key_bytes else None

    def get(self, key: str) -> Decision | None:
        decision = self._decisions.get(key)
        if decision is None:
            self.misses += 1
        else:
            self.hits += 1
        return decision

    def put(self, key: str, decision: Decision) -> None:
        if len(self._decisions) >= self.entries:
            del self._decisions[next(iter(self._decisions))]
        self._decisions[key] = decision


@dataclass
class _Endpoint:
    engine: PolicyEngine
    # Present when the input can be pruned to the policy's reads; the cache when its decisions can be reused.
    pruner: InputPruner | None
    cache: DecisionCache | None


class PolicySet:
    """One engine per endpoint: OPA-Envoy policies all live in `package envoy.authz`."""

    def __init__(self, config: PolicyConfig):
        if config.engine == "opa-server" and len(config.policies) > 1:
            # One OPA server has one `envoy.authz` package: the endpoints' policies would merge.
            raise ConfigError("an external OPA server can hold the policy of one endpoint only; "
                              f"{len(config.policies)} endpoints have policies (use the embedded engine)")
        self.engines: dict[str, PolicyEngine] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        for endpoint, policy_file in config.policies.items():
            path = Path(policy_file)
            try:
                source = path.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read the policy of endpoint {endpoint}: {path}: {exc.strerror}") from None
            engine = create_engine(config.engine, {path.name: source}, opa_url=config.opa_url)
            self.engines[endpoint] = engine
            # An external OPA server may hold other modules and data that change under us: full input, no cache.
            reads = None if engine.blocking else input_reads(source)
            pruner = InputPruner(reads) if reads is not None else None
            cache = DecisionCache() if pruner is not None and config.cache and is_deterministic(source) else None
            self._endpoints[endpoint] = _Endpoint(engine, pruner, cache)
        self.blocking = any(engine.blocking for engine in self.engines.values())

    def cache_of(self, endpoint: str) -> DecisionCache | None:
        found = self._endpoints.get(endpoint)
        return found.cache if found is not None else None

    def _evaluate(self, endpoint: str, document: str, input: dict[str, Any], *, response: bool = False) -> Decision:
        return self._answer(endpoint, document, input, response=response)[0]

    def _answer(self, endpoint: str, document: str, input: dict[str, Any], *,
                response: bool = False) -> tuple[Decision, bool]:
        """(decision, whether the policy itself answered): an engine failure is a denial not to be reused."""
        engine = self.engines.get(endpoint)
        if engine is None:
            return Decision.deny(f"denied: no policy for endpoint {endpoint!r}"), False
        try:
            result = engine.evaluate(document, input)
        except RemoteServiceError as exc:
            log.error("policy engine unavailable: %s", exc.message)
            return Decision.deny("denied: the policy engine is unavailable", 503), False
        except CcrError as exc:
            log.error("policy evaluation failed: %s", exc.message)
            return Decision.deny("denied: the policy could not be evaluated"), False
        return interpret(result, document=document, response=response), True

    def check_request(self, endpoint: str, *, method: str, path: str, headers: dict[str, str],
                      body: bytes) -> Decision:
        try:
            input = build_input(method=method, path=path, headers=headers, body=body)
        except InputError as exc:
            # OPA-Envoy fails the check, and Envoy answers a failed check with 403.
            return Decision.deny(f"denied: {exc.message}")
        found = self._endpoints.get(endpoint)
        if found is None or found.pruner is None:
            return self._evaluate(endpoint, REQUEST_DECISION, input)
        pruned = found.pruner.prune(input)
        cache = found.cache
        key = cache.key(pruned) if cache is not None else None
        if cache is None or key is None:
            return self._evaluate(endpoint, REQUEST_DECISION, pruned)
        cached = cache.get(key)
        if cached is not None:
            return cached
        decision, answered = self._answer(endpoint, REQUEST_DECISION, pruned)
        if answered:
            cache.put(key, decision)
        return decision

    def check_response(self, endpoint: str, request_input: dict[str, Any], *, status: int,
                       headers: dict[str, str], body: bytes) -> Decision:
        """Judge a response; an allowed decision may carry a replacement `body` (redaction)."""
        response: dict[str, Any] = {"http_status": status, "headers": headers, "size": len(body)}
        response["body"] = body.decode("utf-8", "replace")
        if "application/json" in headers.get("content-type", ""):
            try:
                response["parsed_body"] = json.loads(body) if body else None
            except ValueError:
                return Decision.deny("denied: the app's response is not the JSON it declares", 502)
        return self._evaluate(endpoint, RESPONSE_DECISION, {**request_input, "response": response},
                              response=True)
