"""The error hierarchy.

Every error a user (or a remote party) can cause derives from `CcrError`; its message is one line that
says what went wrong and, where it helps, what to do. The CLI prints it without a traceback; the HTTP
app factory turns it into a JSON error with `http_status`.
"""

from __future__ import annotations


class CcrError(Exception):
    """Base of every expected failure. `code` is a stable machine-readable name."""

    code = "Error"
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status

    def __str__(self) -> str:
        return self.message


class ConfigError(CcrError):
    """A configuration, spec or command-line value is wrong."""

    code = "InvalidConfiguration"
    http_status = 400


class SpecError(ConfigError):
    """The clean room spec is malformed. `problems` holds one line per problem, each naming a field."""

    code = "InvalidSpec"

    def __init__(self, problems: list[str], source: str = "spec"):
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))


class BadRequest(CcrError):
    """A request body or parameter is malformed (HTTP 400)."""

    code = "BadRequest"
    http_status = 400


class Unauthorized(CcrError):
    """Missing or invalid credentials (HTTP 401)."""

    code = "Unauthorized"
    http_status = 401


class Forbidden(CcrError):
    """Valid credentials that the policy does not allow (HTTP 403)."""

    code = "Forbidden"
    http_status = 403


class NotFound(CcrError):
    code = "NotFound"
    http_status = 404


class Conflict(CcrError):
    code = "Conflict"
    http_status = 409


class AttestationError(Forbidden):
    """Evidence did not verify, or its claims do not satisfy a policy. The message names the reason."""

    code = "AttestationFailed"


class PolicyDenied(Forbidden):
    """A policy (key release, container, consent, proxy) denied the operation; the message names the rule."""

    code = "PolicyDenied"


class RemoteServiceError(CcrError):
    """A service we depend on answered with an error or not at all."""

    code = "RemoteServiceError"
    http_status = 502

    def __init__(self, service: str, message: str, *, status: int | None = None):
        self.service = service
        self.status = status
        super().__init__(f"{service}: {message}")


class ProcessError(CcrError):
    """An external process (Envoy, Azurite, podman, a sidecar) failed to start, become ready or exit."""

    code = "ProcessFailed"
