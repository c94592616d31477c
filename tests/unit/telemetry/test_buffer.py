"""The encrypted buffer and the exported object format, attacked directly."""

from __future__ import annotations

import os

import pytest

from sidecars.telemetry.buffer import BufferCorrupted, EncryptedBuffer
from sidecars.telemetry.signals import Signal


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
