"""The stand-ins of `ccr emulators start`, run by a test session: `running(run_dir, *names)` starts the named
ones (all when none is named) as the command does and stops exactly those it started."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def running(run_dir: Path, *names: str) -> Iterator[dict]:
    """The endpoints (endpoints.json) of the stand-ins `names` while the block runs."""
    # lazy: the unit tests that load this file need none of the stand-ins' dependencies
    from sidecars.emulators import runner

    registry = [e for e in runner.REGISTRY if e.name in names] if names else None
    unknown = set(names) - {e.name for e in runner.REGISTRY}
    if unknown:
        raise ValueError(f"no stand-in named {', '.join(sorted(unknown))}")
    endpoints = runner.start(run_dir, registry=registry)
    try:
        yield endpoints
    finally:
        runner.stop(run_dir)
