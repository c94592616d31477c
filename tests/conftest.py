"""Shared test fixtures and markers.

Tests that need root (network namespaces, nftables, FUSE mounts, podman) are marked `root` and skip with
that reason when not run as root; CI runs as root and runs them all.

A stand-in two test packages use is a session fixture here, once: pytest makes a fixture imported into a
second conftest a second instance (a second server).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins import running

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


@pytest.fixture(scope="session")
def spark_engine(tmp_path_factory):
    """One warm Spark engine for every test that runs Spark in this process (unit and integration): a
    local[2] session costs 5-10 s to start (the JVM), and a process holds one SparkContext anyway."""
    # lazy: pyspark starts nothing on import but costs ~0.5 s; only the Spark tests pay it
    from sidecars.analytics.engine import Engine

    engine = Engine(tmp_path_factory.mktemp("engine-scratch"))
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def s3_emulation(tmp_path_factory) -> Iterator[dict]:
    """The S3 stand-in as `ccr emulators start` runs it (moto's server over TLS from the emulation's CA): its
    endpoints (`s3_endpoint`, `s3_region`, `ca_bundle`), for the S3 store, sink and volume tests alike."""
    with running(tmp_path_factory.mktemp("s3-emulators"), "s3") as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def keyvault_emulation(tmp_path_factory) -> Iterator[dict]:
    """The Key Vault stand-in as `ccr emulators start` runs it (HTTPS, dev tokens): its endpoints
    (`keyvault_url`, `dev_tokens_dir`, `ca_bundle`), for the owner's commands in every package."""
    with running(tmp_path_factory.mktemp("keyvault-emulators"), "keyvault") as endpoints:
        yield endpoints
