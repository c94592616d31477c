"""The MAA stand-in as a real process (HTTPS, local CA), once trusting nothing but AMD and Microsoft, and
once also trusting a mock platform."""

from __future__ import annotations

import json
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sidecars.attestation import MaaRequest, MockPlatform
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.common.tls import LocalCA


@dataclass
class MaaServer:
    url: str
    ca_file: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=self.ca_file), timeout=30)


def _start(tmp: Path, name: str, extra: list[str]):
    ca = LocalCA.create(tmp / "ca")
    tls = ca.issue_server_cert(name, directory=tmp / name)
    ready = tmp / name / "ready.json"
    proc = ManagedProcess(name, [sys.executable, "-m", "sidecars.emulators.maa", "--port", "0",
                                 "--cert", tls.cert_file, "--key", tls.key_file, "--ready-file", str(ready), *extra],
                          ready=file_exists(ready), ready_timeout=60, log_path=tmp / name / "maa.log")
    proc.start()
    return proc, MaaServer(url=json.loads(ready.read_text())["url"], ca_file=str(ca.cert_file))


@pytest.fixture(scope="session")
def caci_dir(testvectors: Path) -> Path:
    return testvectors / "caci-snp-allow-all"


@pytest.fixture(scope="session")
def real_body(caci_dir: Path) -> dict:
    return json.loads((caci_dir / "maa-request.json").read_text())


@pytest.fixture(scope="session")
def real_request(real_body) -> MaaRequest:
    return MaaRequest.from_body(real_body)


@pytest.fixture(scope="session")
def mock_platform(tmp_path_factory) -> MockPlatform:
    return MockPlatform.create(tmp_path_factory.mktemp("maa-mock") / "platform")


@pytest.fixture(scope="session")
def maa(tmp_path_factory):
    proc, server = _start(tmp_path_factory.mktemp("maa"), "maa", [])
    with proc:
        yield server


@pytest.fixture(scope="session")
def maa_trusting_mock(tmp_path_factory, mock_platform):
    proc, server = _start(tmp_path_factory.mktemp("maa-mock"), "maa-mock",
                          ["--trust-mock-platform", str(mock_platform.directory)])
    with proc:
        yield server
