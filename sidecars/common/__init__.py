"""Pieces every sidecar shares: errors, logging, OpenTelemetry, the HTTP app factory, the process
supervisor and the local CA."""

from .errors import (
    AttestationError,
    BadRequest,
    CcrError,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    PolicyDenied,
    ProcessError,
    RemoteServiceError,
    SpecError,
    Unauthorized,
)

__all__ = [
    "AttestationError", "BadRequest", "CcrError", "ConfigError", "Conflict", "Forbidden", "NotFound",
    "PolicyDenied", "ProcessError", "RemoteServiceError", "SpecError", "Unauthorized",
]
