"""The workspace's check of the room's attestation, attacked by a hostile room: evidence replayed from an
earlier nonce, evidence of another CCE policy (HOST_DATA), a debuggable room, a body cut short and one too
large are each "not verified", with the reason in plain words. The evidence is real: signed by a mock
SEV-SNP platform the workspace is told to trust, as for a local room."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sidecars.attestation.maa_client import report_data_for
from sidecars.attestation.mock import MockPlatform
from sidecars.attestation.providers import MockSnpProvider
from sidecars.common.roomevidence import NONCE_EVIDENCE_PATH, PUBLIC_EVIDENCE_PATH, runtime_data_for_nonce
from sidecars.workspace.attestation import MAX_EVIDENCE_BYTES, RoomEvidence, verify_room

ACCEPTED = hashlib.sha256(b"the agreed CCE policy").digest()
OLD_NONCE = "ab" * 32

#: what the room answers, given the nonce the workspace sent
Answer = Callable[[MockPlatform, str], bytes]


def evidence(platform: MockPlatform, nonce: str, **provider: object) -> bytes:
    made = MockSnpProvider(platform, **{"host_data": ACCEPTED, **provider})  # type: ignore[arg-type]
    return json.dumps(made.get_evidence(report_data_for(runtime_data_for_nonce(nonce))).to_combined()).encode()


ANSWERS: dict[str, Answer] = {
    "honest": lambda platform, nonce: evidence(platform, nonce),
    "replayed": lambda platform, _nonce: evidence(platform, OLD_NONCE),
    "another policy": lambda platform, nonce: evidence(platform, nonce, host_data=hashlib.sha256(b"x").digest()),
    "debuggable": lambda platform, nonce: evidence(platform, nonce, debug=True),
    "truncated": lambda platform, nonce: evidence(platform, nonce)[:700],
    "oversized": lambda _platform, _nonce: b'{"evidence": "' + b"A" * (MAX_EVIDENCE_BYTES + 1) + b'"}',
}


class Governance:
    """The member client's one call the check makes: the collaboration's accepted clean-room policy."""

    def policy(self, _contract_id: str) -> dict[str, object]:
        return {"x-ms-sevsnpvm-hostdata": [ACCEPTED.hex()]}


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> MockPlatform:
    return MockPlatform.create(tmp_path_factory.mktemp("workspace-evidence") / "platform")


@pytest.fixture(scope="module")
def room(platform) -> Iterator[dict[str, str]]:
    """A room on loopback answering `POST /<answer>/<path>` with that answer; it records the nonces it got."""
    seen: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            answer = self.path.split("/")[1].replace("-", " ")
            seen[answer] = body["nonce"]
            payload = ANSWERS[answer](platform, body["nonce"])
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "seen": seen}  # type: ignore[dict-item]
    server.shutdown()


def check(room: dict, platform: MockPlatform, answer: str, *, trusted: bool = True) -> dict:
    source = RoomEvidence(f"{room['url']}/{answer.replace(' ', '-')}", None,
                          Path(platform.directory) if trusted else None, PUBLIC_EVIDENCE_PATH)
    return verify_room(source, Governance(), "c1")  # type: ignore[arg-type]


def test_fresh_evidence_of_the_accepted_policy_is_verified_and_says_why(room, platform):
    result = check(room, platform, "honest")
    assert result["verified"], result
    assert len(room["seen"]["honest"]) == 64  # 32 random bytes, new for each check
    assert any("own fresh nonce" in line for line in result["lines"])
    assert any("HOST_DATA" in line for line in result["lines"])
    assert check(room, platform, "honest")["verified"] and room["seen"]["honest"] != OLD_NONCE


@pytest.mark.parametrize(("answer", "reason"), [
    ("replayed", "does not carry this workspace's nonce: it is not fresh"),
    ("another policy", "is not one the collaboration accepted"),
    ("debuggable", "debuggable"),
    ("truncated", "not JSON (cut short"),
    ("oversized", f"larger than {MAX_EVIDENCE_BYTES // 1024} KiB"),
])
def test_a_hostile_rooms_evidence_is_not_verified_with_the_reason(room, platform, answer, reason):
    result = check(room, platform, answer)
    assert not result["verified"] and result["claims"] is None
    assert reason in result["problem"], result["problem"]
    assert result["lines"][-1] == f"NOT VERIFIED: {result['problem']}" and "\n" not in result["problem"]
    assert "Traceback" not in result["problem"]


def test_a_chip_the_party_does_not_trust_is_not_verified(room, platform):
    result = check(room, platform, "honest", trusted=False)
    assert not result["verified"] and result["problem"]


def test_the_nonce_is_all_a_caller_chooses_of_the_runtime_data():
    # a caller cannot make the room sign runtime data of its own (a key MAA would release a secret to)
    assert json.loads(runtime_data_for_nonce("0f" * 16)) == {"evidence-nonce": "0f" * 16}
    for hostile in ("0F" * 16, "0f" * 15, "0f" * 65, '0f","keys":[]', ""):
        with pytest.raises(ValueError):
            runtime_data_for_nonce(hostile)
    assert NONCE_EVIDENCE_PATH != PUBLIC_EVIDENCE_PATH
