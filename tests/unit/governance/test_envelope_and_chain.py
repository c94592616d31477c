"""The room envelope's crypto, member request signatures and the audit chain, attacked directly."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from sidecars.common.auditchain import GENESIS, event_hash, verify_chain
from sidecars.common.envelope import (
    Attestation,
    RoomKey,
    UnwrapError,
    report_data_for,
    verify_signature,
    wrap,
)
from sidecars.common.errors import Unauthorized
from sidecars.common.memberauth import MemberIdentity, parse_authorization, verify_member_signature

ATTESTATION = Attestation("ZXZpZGVuY2U=", "Y2hhaW4=", "")


def test_wrapped_answer_opens_only_with_the_room_key():
    room, other = RoomKey.generate(), RoomKey.generate()
    blob = base64.b64encode(wrap(room.public_pem, b"db password")).decode()
    assert room.unwrap(blob) == b"db password"
    with pytest.raises(UnwrapError):
        other.unwrap(blob)
    tampered = bytearray(base64.b64decode(blob))
    tampered[-1] ^= 1
    with pytest.raises(UnwrapError):
        room.unwrap(base64.b64encode(bytes(tampered)).decode())


def test_report_data_binds_the_public_key_pem():
    room = RoomKey.generate()
    assert room.report_data == hashlib.sha256(room.public_pem).digest() + bytes(32)
    assert report_data_for(RoomKey.generate().public_pem) != room.report_data


def test_signature_covers_the_data_bytes_not_the_timestamp():
    room = RoomKey.generate()
    body = room.signed_request(ATTESTATION, {"event": "x"}, now_ms=1_700_000_000_000)
    assert body["encrypt"]["publicKey"] == body["sign"]["publicKey"]
    data = base64.b64decode(body["data"])
    assert json.loads(data) == {"event": "x"}
    signature = base64.b64decode(body["sign"]["signature"])
    assert verify_signature(room.public_pem, signature, data)
    assert not verify_signature(room.public_pem, signature, b'{"event":"y"}')
    assert not verify_signature(room.public_pem, signature, f"{body['timestamp']}.{body['data']}".encode())
    assert not verify_signature(RoomKey.generate().public_pem, signature, data)


def test_member_signature_binds_method_path_time_and_body(tmp_path):
    alice = MemberIdentity.create(tmp_path / "a", "alice")
    header = alice.authorization("PUT", "/app/contracts/c1", b'{"data":1}', now_ms=123)
    signed = parse_authorization(header)
    assert signed.member_id == alice.member_id and signed.timestamp_ms == 123
    verify_member_signature(alice.cert, signed, "PUT", "/app/contracts/c1", b'{"data":1}')
    for method, target, body in (("POST", "/app/contracts/c1", b'{"data":1}'),
                                 ("PUT", "/app/contracts/c2", b'{"data":1}'),
                                 ("PUT", "/app/contracts/c1", b'{"data":2}')):
        with pytest.raises(Unauthorized):
            verify_member_signature(alice.cert, signed, method, target, body)
    mallory = MemberIdentity.create(tmp_path / "m", "mallory")
    with pytest.raises(Unauthorized):
        verify_member_signature(mallory.cert, signed, "PUT", "/app/contracts/c1", b'{"data":1}')
    with pytest.raises(Unauthorized):
        parse_authorization("Bearer abc")


def _chain(n: int) -> list[dict]:
    events, prev = [], GENESIS
    for seqno in range(1, n + 1):
        event = {"seqno": seqno, "timestamp": str(seqno).zfill(13), "scope": "app", "id": "c", "data": {"n": seqno},
                 "prev_hash": prev}
        event["hash"] = prev = event_hash(prev, seqno, event["timestamp"], "app", "c", event["data"])
        events.append(event)
    return events


def test_audit_chain_detects_alteration_removal_reordering_and_truncation():
    events = _chain(5)
    head = {"seqno": 5, "hash": events[-1]["hash"]}
    assert verify_chain(events, head) == []

    altered = [dict(e) for e in events]
    altered[2]["data"] = {"n": 99}
    assert any("seqno 3" in p and "altered" in p for p in verify_chain(altered, head))

    removed = events[:2] + events[3:]
    assert verify_chain(removed, head)

    reordered = [events[1], events[0], *events[2:]]
    assert verify_chain(reordered, head)

    assert any("head" in p for p in verify_chain(events[:4], head))

    rehashed = [dict(e) for e in events]
    rehashed[4]["timestamp"] = "9999999999999"
    assert verify_chain(rehashed, head)


def test_replay_guard_accepts_each_signature_once_inside_the_window():
    import time

    from sidecars.emulators.cgs.app import ReplayGuard, RoomRefused

    guard = ReplayGuard(window_s=60)
    now = int(time.time() * 1000)
    guard.check(now, b"sig-1", "write")
    guard.check(now, b"sig-2", "write")
    with pytest.raises(RoomRefused, match="replay"):
        guard.check(now, b"sig-1", "write")
    with pytest.raises(RoomRefused, match="replay window"):
        guard.check(now - 61_000, b"sig-3", "write")
    with pytest.raises(RoomRefused, match="replay window"):
        guard.check(now + 61_000, b"sig-4", "write")


def test_a_restarted_replay_guard_refuses_what_was_signed_before_it_started():
    """The signatures a stand-in accepted die with it: after a restart, a request signed inside the window but
    before the restart may be one it already applied, so it is refused; one signed afterwards is accepted."""
    import time

    from sidecars.emulators.cgs.app import ReplayGuard, RoomRefused

    before = int(time.time() * 1000)
    time.sleep(0.005)
    restarted = ReplayGuard(window_s=60)
    with pytest.raises(RoomRefused, match="signed before the service"):
        restarted.check(before, b"sig-accepted-by-the-last-run", "write")
    restarted.check(int(time.time() * 1000), b"sig-new", "write")
