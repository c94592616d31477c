"""The object format against the independent `tink` package, both directions, and against tampering."""

from __future__ import annotations

import io
import os

import pytest
import tink
from tink import cleartext_keyset_handle, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from sidecars.common import objectformat as fmt

LOCATION = fmt.ObjectLocation("devstoreaccount1", "publisher-input", "dir/data.csv")
SMALL = 4096  # 4 KiB segments keep multi-segment cases cheap; the default size is checked too

streaming_aead.register()


def tink_primitive(key: fmt.DataKey) -> streaming_aead.StreamingAead:
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=key.segment_size, derived_key_size=32, hkdf_hash_type=common_pb2.SHA256)
    value = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=0, params=params, key_value=key.export_material())
    keyset = tink_pb2.Keyset(primary_key_id=1, key=[tink_pb2.Keyset.Key(
        key_data=tink_pb2.KeyData(
            type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
            value=value.SerializeToString(), key_material_type=tink_pb2.KeyData.SYMMETRIC),
        status=tink_pb2.ENABLED, key_id=1, output_prefix_type=tink_pb2.RAW)])
    return cleartext_keyset_handle.from_keyset(keyset).primitive(streaming_aead.StreamingAead)


class _KeepOnClose(io.BytesIO):
    def close(self) -> None:  # tink closes the destination; keep the bytes readable
        pass


def tink_encrypt(key: fmt.DataKey, plaintext: bytes, ad: bytes) -> bytes:
    out = _KeepOnClose()
    with tink_primitive(key).new_encrypting_stream(out, ad) as stream:
        stream.write(plaintext)
    return out.getvalue()


def tink_decrypt(key: fmt.DataKey, ciphertext: bytes, ad: bytes) -> bytes:
    with tink_primitive(key).new_decrypting_stream(io.BytesIO(ciphertext), ad) as stream:
        return stream.read()


def boundary_sizes(segment_size: int) -> list[int]:
    first = segment_size - fmt.HEADER_SIZE - fmt.TAG_SIZE
    second = first + segment_size - fmt.TAG_SIZE
    return [0, 1, first - 1, first, first + 1, second - 1, second, second + 1]


SIZES = [(SMALL, n) for n in boundary_sizes(SMALL)] + [(SMALL, 3 * 1024 * 1024 + 7)] + [
    (fmt.SEGMENT_SIZE, n) for n in boundary_sizes(fmt.SEGMENT_SIZE)] + [(fmt.SEGMENT_SIZE, 5 * 1024 * 1024 + 3)]


@pytest.mark.parametrize(("segment_size", "size"), SIZES)
def test_ours_to_tink_and_back(segment_size: int, size: int) -> None:
    key = fmt.DataKey.generate(segment_size=segment_size)
    plaintext = os.urandom(size)
    ad = LOCATION.associated_data()
    ours = fmt.encrypt(key, LOCATION, plaintext)
    assert len(ours) == fmt.ciphertext_size(size, segment_size)
    assert fmt.plaintext_size(len(ours), segment_size) == size
    assert tink_decrypt(key, ours, ad) == plaintext
    theirs = tink_encrypt(key, plaintext, ad)
    assert len(theirs) == len(ours)
    assert fmt.decrypt(key, LOCATION, theirs) == plaintext


def test_streaming_encryptor_matches_layout_with_odd_writes() -> None:
    key = fmt.DataKey.generate(segment_size=SMALL)
    plaintext = os.urandom(50_000)
    enc = fmt.Encryptor(key, LOCATION)
    pieces, pos = [], 0
    for step in (1, 4000, 4055, 4056, 3, 9000, 123, 20000):
        pieces.append(enc.update(plaintext[pos:pos + step]))
        pos += step
    pieces.append(enc.update(plaintext[pos:]))
    # every update emits whole segments only
    emitted = sum(len(p) for p in pieces)
    assert emitted % SMALL == 0
    ciphertext = b"".join(pieces) + enc.finish()
    assert tink_decrypt(key, ciphertext, LOCATION.associated_data()) == plaintext


def test_random_access_by_segment() -> None:
    key = fmt.DataKey.generate(segment_size=SMALL)
    plaintext = os.urandom(30_000)
    ciphertext = fmt.encrypt(key, LOCATION, plaintext)
    reader = fmt.SegmentReader(key, LOCATION, ciphertext[:fmt.HEADER_SIZE], len(ciphertext))
    lay = reader.layout
    for index in reversed(range(lay.segment_count)):
        start, end = lay.ciphertext_range(index)
        p_start, p_end = lay.plaintext_range(index)
        assert reader.decrypt_segment(index, ciphertext[start:end]) == plaintext[p_start:p_end]
    assert list(lay.segments_for(4000, 200)) == [0, 1]
    assert list(lay.segments_for(29_999, 100)) == [lay.segment_count - 1]
    assert list(lay.segments_for(30_000, 10)) == []


def tamper_cases(ciphertext: bytes, segment_size: int) -> dict[str, bytes]:
    s = segment_size
    seg = [ciphertext[i:i + s] for i in range(0, len(ciphertext), s)]
    flipped = bytearray(ciphertext)
    flipped[s + 100] ^= 0x01
    header = bytearray(ciphertext)
    header[5] ^= 0x80
    length_byte = bytearray(ciphertext)
    length_byte[0] = 41
    return {
        "flip one bit": bytes(flipped),
        "swap segments 1 and 2": seg[0] + seg[2] + seg[1] + b"".join(seg[3:]),
        "drop the last segment": b"".join(seg[:-1]),
        "append a segment": ciphertext + seg[1],
        "edit the header salt": bytes(header),
        "edit the header length": bytes(length_byte),
        "truncate inside a tag": ciphertext[:-5],
    }


@pytest.mark.parametrize("case", list(tamper_cases(b"\0" * 5 * SMALL, SMALL)))
def test_tampering_is_detected(case: str) -> None:
    key = fmt.DataKey.generate(segment_size=SMALL)
    ciphertext = fmt.encrypt(key, LOCATION, os.urandom(4 * SMALL + 100))
    with pytest.raises(fmt.TamperedObject):
        fmt.decrypt(key, LOCATION, tamper_cases(ciphertext, SMALL)[case])


def test_object_is_bound_to_its_place_and_key() -> None:
    key = fmt.DataKey.generate()
    ciphertext = fmt.encrypt(key, LOCATION, b"secret rows")
    for elsewhere in (fmt.ObjectLocation("devstoreaccount1", "publisher-input", "dir/other.csv"),
                      fmt.ObjectLocation("devstoreaccount1", "partner-input", "dir/data.csv"),
                      fmt.ObjectLocation("otheraccount", "publisher-input", "dir/data.csv")):
        with pytest.raises(fmt.TamperedObject):
            fmt.decrypt(key, elsewhere, ciphertext)
    with pytest.raises(fmt.TamperedObject):
        fmt.decrypt(fmt.DataKey.generate(), LOCATION, ciphertext)
    with pytest.raises(tink.TinkError):
        tink_decrypt(key, ciphertext, fmt.ObjectLocation("a", "bcd", "x").associated_data())


def test_associated_data_encoding_is_injective() -> None:
    a = fmt.ObjectLocation("acct", "con", "a/b").associated_data()
    b = fmt.ObjectLocation("acct", "con/a", "b").associated_data()
    assert a != b
    assert a == b"ccr/blob/v1" + b"\0\0\0\x04acct" + b"\0\0\0\x03con" + b"\0\0\0\x03a/b"


def test_key_does_not_leak_through_repr() -> None:
    key = fmt.DataKey.generate()
    assert key.export_material().hex() not in repr(key)
    with pytest.raises(ValueError):
        fmt.DataKey(b"short")
