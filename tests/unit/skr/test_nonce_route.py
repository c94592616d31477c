"""skr's nonce route, the one part of skr a caller outside the room reaches: it signs evidence binding the
caller's nonce and nothing else the caller chose; any other shape of request is refused in one line."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sidecars.attestation import Evidence
from sidecars.attestation.maa_client import report_data_for
from sidecars.attestation.mock import MockPlatform
from sidecars.attestation.providers import MockSnpProvider
from sidecars.attestation.report import SnpReport
from sidecars.common.roomevidence import NONCE_EVIDENCE_PATH, runtime_data_for_nonce
from sidecars.skr.app import build_app
from sidecars.skr.flow import KeyReleaser


@pytest.fixture(scope="module")
def skr(tmp_path_factory):
    platform = MockPlatform.create(tmp_path_factory.mktemp("skr-nonce") / "platform")
    releaser = KeyReleaser(MockSnpProvider(platform), ca_bundle=None, token_source=lambda _scope: "unused")
    with TestClient(build_app(releaser)) as client:
        yield client


def test_the_evidence_binds_the_callers_nonce(skr):
    nonce = "5a" * 32
    answer = skr.post(NONCE_EVIDENCE_PATH, json={"nonce": nonce})
    assert answer.status_code == 200, answer.text
    report = SnpReport.parse(Evidence.from_combined(answer.json()).report)
    assert report.report_data == report_data_for(runtime_data_for_nonce(nonce)).ljust(64, b"\0")


@pytest.mark.parametrize("body", [
    {"nonce": "5A" * 32}, {"nonce": "5a" * 15}, {"nonce": "5a" * 65}, {"nonce": 5},
    {"nonce": "5a" * 32, "runtime_data": "eyJrZXlzIjpbXX0="},  # runtime data of the caller's: refused whole
    {"runtime_data": "eyJrZXlzIjpbXX0="}, [],
])
def test_anything_but_a_nonce_is_refused(skr, body):
    answer = skr.post(NONCE_EVIDENCE_PATH, json=body)
    assert answer.status_code in (400, 422), answer.text
    assert "\n" not in answer.text and "Traceback" not in answer.text


def test_an_oversized_request_is_refused_before_it_is_read(skr):
    answer = skr.post(NONCE_EVIDENCE_PATH, content=b'{"nonce":"' + b"a" * (100 * 1024) + b'"}',
                      headers={"content-type": "application/json"})
    assert answer.status_code == 413, answer.text
