"""The policy side shared by the authorization and response-inspection servers: which engine holds which
endpoint's policy, how a request or a response is judged. Denials always; errors are denials too."""

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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicyConfig:
    """What the servers load: endpoint name → policy file, and the engine to evaluate them with."""

    policies: dict[str, str] = field(default_factory=dict)
    engine: str = "opa"
    opa_url: str | None = None

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


class PolicySet:
    """One engine per endpoint: OPA-Envoy policies all live in `package envoy.authz`."""

    def __init__(self, config: PolicyConfig):
        if config.engine == "opa-server" and len(config.policies) > 1:
            # One OPA server has one `envoy.authz` package: the endpoints' policies would merge.
            raise ConfigError("an external OPA server can hold the policy of one endpoint only; "
                              f"{len(config.policies)} endpoints have policies (use the embedded engine)")
        self.engines: dict[str, PolicyEngine] = {}
        for endpoint, policy_file in config.policies.items():
            path = Path(policy_file)
            try:
                source = path.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read the policy of endpoint {endpoint}: {path}: {exc.strerror}") from None
            self.engines[endpoint] = create_engine(config.engine, {path.name: source}, opa_url=config.opa_url)
        self.blocking = any(engine.blocking for engine in self.engines.values())

    def _evaluate(self, endpoint: str, document: str, input: dict[str, Any], *, response: bool = False) -> Decision:
        engine = self.engines.get(endpoint)
        if engine is None:
            return Decision.deny(f"denied: no policy for endpoint {endpoint!r}")
        try:
            result = engine.evaluate(document, input)
        except RemoteServiceError as exc:
            log.error("policy engine unavailable: %s", exc.message)
            return Decision.deny("denied: the policy engine is unavailable", 503)
        except CcrError as exc:
            log.error("policy evaluation failed: %s", exc.message)
            return Decision.deny("denied: the policy could not be evaluated")
        return interpret(result, document=document, response=response)

    def check_request(self, endpoint: str, *, method: str, path: str, headers: dict[str, str],
                      body: bytes) -> Decision:
        try:
            input = build_input(method=method, path=path, headers=headers, body=body)
        except InputError as exc:
            # OPA-Envoy fails the check, and Envoy answers a failed check with 403.
            return Decision.deny(f"denied: {exc.message}")
        return self._evaluate(endpoint, REQUEST_DECISION, input)

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
