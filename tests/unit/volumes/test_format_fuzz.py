"""Hypothesis against the object format's decryptor: whatever bytes storage hands back — random ones, or a
valid object truncated, bit-flipped, spliced with another, extended, or an older authentic version — the
decryptor answers with the exact plaintext that was written at that place, or with TamperedObject. Never
another exception, never other bytes.

Segments are 256 bytes here (the format allows any size above header + tag) so that objects of a few
segments stay small and every example runs in microseconds; the arithmetic is the same as at 64 KiB.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecars.common import objectformat as fmt

SEGMENT = 256
KEY = fmt.DataKey(bytes(range(32)), segment_size=SEGMENT)
OTHER_KEY = fmt.DataKey(bytes(range(1, 33)), segment_size=SEGMENT)
WHERE = fmt.ObjectLocation("acct", "cont", "dir/obj")
ELSEWHERE = fmt.ObjectLocation("acct", "cont", "dir/other")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
plaintexts = st.binary(min_size=0, max_size=4 * SEGMENT)


def outcome(ciphertext: bytes, key: fmt.DataKey = KEY) -> bytes | None:
    """The plaintext, or None for TamperedObject; any other exception fails the test."""
    try:
        return fmt.decrypt(key, WHERE, ciphertext)
    except fmt.TamperedObject as exc:
        assert str(exc).strip() and "\n" not in str(exc), "a tamper error is one line naming the problem"
        return None


def also_random_access(ciphertext: bytes, expected: bytes | None) -> None:
    """SegmentReader (the mount's path) agrees segment by segment: each decrypts to its part of the plaintext
    or raises TamperedObject."""
    try:
        reader = fmt.SegmentReader(KEY, WHERE, ciphertext[:fmt.HEADER_SIZE], len(ciphertext))
    except fmt.TamperedObject:
        return
    for index in range(reader.layout.segment_count):
        start, end = reader.layout.ciphertext_range(index)
        try:
            part = reader.decrypt_segment(index, ciphertext[start:end])
        except fmt.TamperedObject:
            continue
        # A segment that authenticates is the written one, at its written place.
        assert expected is not None, f"segment {index} of a forged object authenticated"
        lo, hi = reader.layout.plaintext_range(index)
        assert part == expected[lo:hi]


@FUZZ
@given(st.binary(max_size=5 * SEGMENT))
def test_random_bytes_are_refused(junk: bytes) -> None:
    assert outcome(junk) is None
    also_random_access(junk, None)


@FUZZ
@given(plaintexts, st.data())
def test_truncation_is_refused(plaintext: bytes, data) -> None:
    ciphertext = fmt.encrypt(KEY, WHERE, plaintext)
    cut = data.draw(st.integers(0, len(ciphertext) - 1))
    assert outcome(ciphertext[:cut]) is None


@FUZZ
@given(plaintexts, st.data())
def test_bit_flips_are_refused(plaintext: bytes, data) -> None:
    ciphertext = bytearray(fmt.encrypt(KEY, WHERE, plaintext))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(ciphertext) - 1), st.integers(0, 7)),
                               min_size=1, max_size=4, unique_by=lambda f: f))
    for offset, bit in flips:
        ciphertext[offset] ^= 1 << bit
    assert outcome(bytes(ciphertext)) is None
    also_random_access(bytes(ciphertext), plaintext)


@FUZZ
@given(plaintexts, plaintexts, st.data())
def test_splices_of_two_objects_are_refused_or_exact(first: bytes, second: bytes, data) -> None:
    """Any prefix of one valid object followed by any suffix of another (same key, same place: two versions of
    one object) is either exactly one of the two objects or refused."""
    a, b = fmt.encrypt(KEY, WHERE, first), fmt.encrypt(KEY, WHERE, second)
    cut_a = data.draw(st.integers(0, len(a)))
    cut_b = data.draw(st.integers(0, len(b)))
    spliced = a[:cut_a] + b[cut_b:]
    got = outcome(spliced)
    if spliced == a:
        assert got == first
    elif spliced == b:
        assert got == second
    else:
        assert got is None


@FUZZ
@given(plaintexts, st.data())
def test_appended_or_inserted_bytes_are_refused(plaintext: bytes, data) -> None:
    ciphertext = fmt.encrypt(KEY, WHERE, plaintext)
    at = data.draw(st.integers(0, len(ciphertext)))
    extra = data.draw(st.binary(min_size=1, max_size=2 * SEGMENT))
    assert outcome(ciphertext[:at] + extra + ciphertext[at:]) is None


@FUZZ
@given(plaintexts)
def test_another_key_or_place_is_refused(plaintext: bytes) -> None:
    assert outcome(fmt.encrypt(OTHER_KEY, WHERE, plaintext)) is None
    assert outcome(fmt.encrypt(KEY, ELSEWHERE, plaintext)) is None


@FUZZ
@given(plaintexts, plaintexts)
def test_an_older_authentic_version_decrypts_but_differs_in_header(old: bytes, new: bytes) -> None:
    """What the format alone cannot refuse: an older version of the same object is authentic. It decrypts to
    the *old* plaintext (never a mix), and its header (salt, nonce prefix) differs from the current version's,
    which is what a manifest pins (see sidecars/volumes/manifest.py)."""
    older, current = fmt.encrypt(KEY, WHERE, old), fmt.encrypt(KEY, WHERE, new)
    assert outcome(older) == old
    assert outcome(current) == new
    assert older[:fmt.HEADER_SIZE] != current[:fmt.HEADER_SIZE]


@pytest.mark.parametrize("size", [0, 1, SEGMENT - fmt.HEADER_SIZE - fmt.TAG_SIZE, SEGMENT, 3 * SEGMENT + 5])
def test_boundaries_round_trip(size: int) -> None:
    plaintext = bytes(range(256)) * (size // 256 + 1)
    assert outcome(fmt.encrypt(KEY, WHERE, plaintext[:size])) == plaintext[:size]
