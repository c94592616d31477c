"""Logging setup shared by every sidecar and command.

One line per record, with the sidecar's name, so interleaved output of a room stays readable. Secrets
never reach a log: callers log key ids and fingerprints, never key material.
"""

from __future__ import annotations

import logging
import os
import sys

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str | int | None = None, *, stream=None) -> None:
    """Configure the root logger once. `CCR_LOG_LEVEL` overrides the default (INFO)."""
    level = level or os.environ.get("CCR_LOG_LEVEL", "INFO")
    root = logging.getLogger()
    if getattr(root, "_ccr_configured", False):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party HTTP clients are chatty at INFO (every request and header); keep their warnings only.
    for noisy in ("azure", "httpx", "httpcore", "urllib3", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._ccr_configured = True  # type: ignore[attr-defined]


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
