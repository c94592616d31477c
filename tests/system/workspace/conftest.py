"""The browser, the screenshots folder and the analytics demo's room for the story, on stand-ins of its own.

Its own stand-ins because CGS document ids are global: the analytics package's room has already put the
demo's contract, datasets and queries into the session's CGS, and the story's room is the same demo."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.analytics.conftest import analytics_room  # noqa: F401  the demo's room, for this package too
from tests.system.rooms import ccr
from tests.workspacepages.pages import browser, screenshots  # noqa: F401


@pytest.fixture(scope="package")
def stand_ins(tmp_path_factory) -> Iterator[Path]:
    run = tmp_path_factory.mktemp("workspace-stand-ins")
    ccr("emulators", "start", "--run-dir", str(run))
    try:
        ccr("images", "build", "--sidecars")  # built already when another package ran first: a cache hit
        yield run
    finally:
        ccr("emulators", "stop", "--run-dir", str(run), check=False)
