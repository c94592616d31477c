"""Fixtures for the attestation tests: the real C-ACI evidence and one mock platform per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecars.attestation import Evidence, MaaRequest, MockPlatform, Trust


@pytest.fixture(scope="session")
def caci_dir(testvectors: Path) -> Path:
    return testvectors / "caci-snp-allow-all"


@pytest.fixture(scope="session")
def real_evidence(caci_dir: Path) -> Evidence:
    return Evidence.from_caci(json.loads((caci_dir / "attestation.json").read_text()))


@pytest.fixture(scope="session")
def real_maa_request(caci_dir: Path) -> MaaRequest:
    return MaaRequest.from_body(json.loads((caci_dir / "maa-request.json").read_text()))


@pytest.fixture(scope="session")
def mock_platform(tmp_path_factory: pytest.TempPathFactory) -> MockPlatform:
    return MockPlatform.create(tmp_path_factory.mktemp("attestation") / "mock-platform")


@pytest.fixture(scope="session")
def mock_trust(mock_platform: MockPlatform) -> Trust:
    return Trust.default().trusting_mock_platform(mock_platform.directory)
