"""The encrypted buffer and the exported object format, attacked directly."""

from __future__ import annotations

import os

import pytest

from sidecars.telemetry.buffer import BufferCorrupted, EncryptedBuffer
from sidecars.telemetry.objectformat import (
    HEADER_SIZE,
    SEGMENT_SIZE,
    DataKey,
    ObjectPlace,
    ObjectVerificationError,
    account_name,
    seal,
    unseal,
)
from sidecars.telemetry.signals import Signal

PLACE = ObjectPlace("acct", "telemetry", "room/traces/a.binpb")


def test_buffer_round_trip_keeps_nothing_in_clear(tmp_path):
    buffer = EncryptedBuffer(tmp_path / "b.bin")
    secrets = [os.urandom(8).hex().encode() + b"-span-name" for _ in range(5)]
    for i, secret in enumerate(secrets):
        buffer.append(Signal.TRACES if i % 2 else Signal.APP_LOGS, secret)
    on_disk = (tmp_path / "b.bin").read_bytes()
    assert all(secret not in on_disk for secret in secrets)
    assert [p for _s, p in buffer.read((Signal.TRACES, Signal.APP_LOGS))] == secrets
    assert [p for _s, p in buffer.read((Signal.TRACES,), start=2)] == [secrets[3]]
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600


def test_buffer_detects_tampering_and_reordering(tmp_path):
    path = tmp_path / "b.bin"
    buffer = EncryptedBuffer(path)
    buffer.append(Signal.LOGS, b"first record")
    buffer.append(Signal.LOGS, b"second record")
    data = bytearray(path.read_bytes())
    half = len(data) // 2
    with open(path, "r+b") as f:  # swap the two (equal-length) records
        f.write(bytes(data[half:] + data[:half]))
    with pytest.raises(BufferCorrupted, match="record 0"):
        list(buffer.read((Signal.LOGS,)))
    with open(path, "r+b") as f:
        data[10] ^= 1
        f.write(bytes(data))
    with pytest.raises(BufferCorrupted):
        list(buffer.read((Signal.LOGS,)))


def test_a_new_buffer_cannot_read_an_old_one(tmp_path):
    old = EncryptedBuffer(tmp_path / "b.bin")
    old.append(Signal.TRACES, b"kept by the first process")
    old.close()
    new = EncryptedBuffer(tmp_path / "b.bin")  # a restart: new key, old file discarded
    assert len(new) == 0 and (tmp_path / "b.bin").stat().st_size == 0


@pytest.mark.parametrize("size", [0, 1, SEGMENT_SIZE - HEADER_SIZE - 16, SEGMENT_SIZE - HEADER_SIZE - 15,
                                  3 * SEGMENT_SIZE + 5])
def test_object_round_trip_across_segment_boundaries(size):
    key = DataKey(os.urandom(32))
    plaintext = os.urandom(size)
    sealed = seal(key, PLACE, plaintext)
    assert size < 16 or plaintext[:64] not in sealed
    assert unseal(key, PLACE, sealed) == plaintext


def test_object_attacks_are_refused():
    key = DataKey(os.urandom(32))
    plaintext = os.urandom(2 * SEGMENT_SIZE)
    sealed = seal(key, PLACE, plaintext)
    attacks = {
        "flipped bit": sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:],
        "truncated at a segment boundary": sealed[:SEGMENT_SIZE],
        "last byte cut": sealed[:-1],
        "segments swapped": sealed[:SEGMENT_SIZE] + sealed[2 * SEGMENT_SIZE:] + sealed[SEGMENT_SIZE:2 * SEGMENT_SIZE],
    }
    for what, attacked in attacks.items():
        with pytest.raises(ObjectVerificationError):
            unseal(key, PLACE, attacked)
            pytest.fail(what)
    with pytest.raises(ObjectVerificationError):  # moved to another blob name
        unseal(key, ObjectPlace("acct", "telemetry", "room/traces/b.binpb"), sealed)
    with pytest.raises(ObjectVerificationError):  # another account
        unseal(key, ObjectPlace("other", "telemetry", PLACE.blob), sealed)
    with pytest.raises(ObjectVerificationError):
        unseal(DataKey(os.urandom(32)), PLACE, sealed)


def test_account_names_and_keys():
    assert account_name("https://contoso.blob.core.windows.net") == "contoso"
    assert account_name("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"
    assert "sss" not in repr(DataKey(b"s" * 32)) and "7373" not in repr(DataKey(b"s" * 32))
    with pytest.raises(Exception, match="32 bytes"):
        DataKey(b"short")
    with pytest.raises(Exception, match="64 hex digits"):
        DataKey.from_hex("zz")
