"""Shared test fixtures and markers.

Tests that need root (network namespaces, nftables, FUSE mounts, podman) are marked `root` and skip with
that reason when not run as root; CI runs as root and runs them all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the checkout; a worktree under /work/wt/<name> finds it one level further up.
SHARED = next((p / "shared" for p in REPO.parents if (p / "shared" / "testvectors").is_dir()), REPO.parent / "shared")
TESTVECTORS = SHARED / "testvectors"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip_root = pytest.mark.skip(reason="needs root (netns/nftables/FUSE/podman); CI runs as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip_root)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def testvectors() -> Path:
    if not TESTVECTORS.is_dir():
        pytest.fail(f"test vectors not found at {TESTVECTORS}: ../shared must sit beside the checkout")
    return TESTVECTORS
