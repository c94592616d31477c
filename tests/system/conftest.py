"""One set of stand-ins (and one build of the sidecar images) for every system test that brings a room up.

A test that breaks a stand-in for good (crashes CGS, say) starts stand-ins of its own; pausing one (SIGSTOP)
is fine if the test resumes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.rooms import ccr


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory) -> Iterator[Path]:
    run = tmp_path_factory.mktemp("stand-ins")
    ccr("emulators", "start", "--run-dir", str(run))
    try:  # the stand-ins are stopped even when the image build fails
        ccr("images", "build", "--sidecars")
        yield run
    finally:
        ccr("emulators", "stop", "--run-dir", str(run), check=False)
