"""Manifests, attacked: a dataset manifest other than the pinned one, a listing that lost, gained or resized an
object, a sink manifest altered, truncated, re-signed by a key the contract CA never endorsed, or endorsed by
another contract's CA — each refused with one line naming the problem."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecars.common.errors import ConfigError
from sidecars.volumes import manifest as mf
from sidecars.volumes.owner import pin_manifest

ACCOUNT, CONTAINER = "devstoreaccount1", "results"
ENTRIES = {"a.csv": mf.Entry("a.csv", 100, "1" * 64, "28" + "ab" * 39),
           "dir/b.bin": mf.Entry("dir/b.bin", 70000, "2" * 64, "28" + "cd" * 39)}


def dataset() -> mf.Manifest:
    return mf.Manifest("dataset", ACCOUNT, CONTAINER, "CSE", dict(ENTRIES))


def make_ca(name: str = "Azure Clean Room CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA as the CGS stand-in makes one (sidecars/emulators/cgs/ca.py)."""
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=100))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA384()))
    return key, cert


def endorse(ca_key, ca_cert: x509.Certificate, subject_key, *, days: int = 7) -> str:
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ccr datasink results")]))
            .issuer_name(ca_cert.subject).public_key(subject_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA384()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def sink(entries=None, *, contract: str = "collab", finished: dt.datetime | None = None) -> mf.Manifest:
    when = (finished or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    return mf.Manifest("sink", ACCOUNT, CONTAINER, "CSE", dict(ENTRIES if entries is None else entries),
                       contract=contract, run="r1", finished=when)


@pytest.fixture(scope="module")
def ca():
    return make_ca()


@pytest.fixture(scope="module")
def room_signer(ca) -> mf.Signer:
    key = mf.new_signing_key()
    return mf.Signer(key, endorse(*ca, key))


def check_sink(raw: bytes | None, ca_cert: x509.Certificate, contract: str | None = "collab") -> mf.Manifest:
    return mf.signed_sink(raw, pem(ca_cert), contract=contract, account=ACCOUNT, container=CONTAINER,
                          where=f"{ACCOUNT}/{CONTAINER}")


# -- datasets ------------------------------------------------------------------------------------------------

def test_a_dataset_manifest_round_trips_through_its_pin() -> None:
    raw = dataset().to_bytes()
    pin = hashlib.sha256(raw).hexdigest()
    assert pin == dataset().sha256()
    got = mf.pinned_dataset(raw, pin, account=ACCOUNT, container=CONTAINER, where="w")
    assert got.entries == ENTRIES


def test_another_manifest_than_the_pinned_one_is_refused() -> None:
    pin = dataset().sha256()
    older = mf.Manifest("dataset", ACCOUNT, CONTAINER, "CSE", {"a.csv": ENTRIES["a.csv"]}).to_bytes()
    with pytest.raises(mf.ManifestRefused, match="not the .* the spec pins"):
        mf.pinned_dataset(older, pin, account=ACCOUNT, container=CONTAINER, where="w")
    with pytest.raises(mf.ManifestRefused, match="missing"):
        mf.pinned_dataset(None, pin, account=ACCOUNT, container=CONTAINER, where="w")
    # Re-serialised (whitespace) is another byte string: the pin is over the stored bytes.
    spaced = json.dumps(json.loads(dataset().to_bytes()), indent=1).encode()
    with pytest.raises(mf.ManifestRefused):
        mf.pinned_dataset(spaced, pin, account=ACCOUNT, container=CONTAINER, where="w")


def test_a_pinned_manifest_of_another_container_is_refused() -> None:
    other = mf.Manifest("dataset", ACCOUNT, "elsewhere", "CSE", dict(ENTRIES))
    with pytest.raises(mf.ManifestRefused, match="is for devstoreaccount1/elsewhere"):
        mf.pinned_dataset(other.to_bytes(), other.sha256(), account=ACCOUNT, container=CONTAINER, where="w")


@pytest.mark.parametrize("listing, problem", [
    ({"a.csv": 100}, "dir/b.bin named by the manifest is missing"),
    ({"a.csv": 100, "dir/b.bin": 69999}, "dir/b.bin is 69999 bytes, the manifest says 70000"),
    ({"a.csv": 100, "dir/b.bin": 70000, "planted.csv": 5}, "planted.csv is not in the manifest"),
])
def test_a_listing_that_differs_from_the_manifest_is_refused(listing, problem) -> None:
    with pytest.raises(mf.ManifestRefused, match=problem) as info:
        mf.compare(dataset(), listing, "w", extras_allowed=False)
    assert "\n" not in str(info.value)


def test_extras_are_reported_when_allowed_and_reserved_names_ignored() -> None:
    stored = {"a.csv": 100, "dir/b.bin": 70000, "planted.csv": 5, mf.MANIFEST_BLOB: 300}
    assert mf.compare(dataset(), stored, "w", extras_allowed=True) == ["planted.csv"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_a_manifest_are_refused_in_one_line(junk: bytes) -> None:
    with pytest.raises(mf.ManifestRefused) as info:
        mf.parse(junk, "w")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("objects", [
    [{"name": "a", "size": -1, "sha256": "0" * 64}],
    [{"name": "a", "size": True, "sha256": "0" * 64}],
    [{"name": "a", "size": 1, "sha256": "0" * 63}],
    [{"name": "a", "size": 1, "sha256": "0" * 64, "header": "zz"}],
    [{"name": ".ccr/manifest.json", "size": 1, "sha256": "0" * 64}],
    [{"name": "a", "size": 1, "sha256": "0" * 64}, {"name": "a", "size": 2, "sha256": "1" * 64}],
    [{"name": "a", "size": 1, "sha256": "0" * 64, "note": "x"}],
])
def test_malformed_entries_are_refused(objects) -> None:
    body = {"format": mf.FORMAT, "kind": "dataset", "account": ACCOUNT, "container": CONTAINER, "mode": "CSE",
            "objects": objects}
    with pytest.raises(mf.ManifestRefused):
        mf.parse(json.dumps(body).encode(), "w")


def test_pin_manifest_adds_then_replaces_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("datasources:\n  - name: input  # the publisher's\n    owner: p\n  - name: other\n    owner: q\n"
                    "datasinks:\n  - name: input-copy\n")
    assert pin_manifest(spec, "input", "a" * 64)
    assert spec.read_text().splitlines()[2] == "    manifest_sha256: " + "a" * 64
    assert not pin_manifest(spec, "input", "a" * 64)
    assert pin_manifest(spec, "input", "b" * 64)
    text = spec.read_text()
    assert text.count("manifest_sha256") == 1 and "b" * 64 in text and "# the publisher's" in text
    with pytest.raises(ConfigError, match="no datasource 'input-copy'"):
        pin_manifest(spec, "input-copy", "c" * 64)


# -- sinks ---------------------------------------------------------------------------------------------------

def test_a_sink_manifest_signed_by_an_endorsed_room_verifies(ca, room_signer) -> None:
    got = check_sink(room_signer.sign(sink()), ca[1])
    assert got.entries == ENTRIES and got.contract == "collab"


def test_an_altered_sink_manifest_is_refused(ca, room_signer) -> None:
    envelope = json.loads(room_signer.sign(sink()))
    envelope["manifest"]["objects"] = envelope["manifest"]["objects"][:1]  # drop an object after signing
    with pytest.raises(mf.ManifestRefused, match="does not verify"):
        check_sink(json.dumps(envelope).encode(), ca[1])
    envelope = json.loads(room_signer.sign(sink()))
    envelope["manifest"]["objects"][0]["sha256"] = "f" * 64  # an older version's digest
    with pytest.raises(mf.ManifestRefused, match="does not verify"):
        check_sink(json.dumps(envelope).encode(), ca[1])


def test_a_truncated_or_missing_sink_manifest_is_refused(ca, room_signer) -> None:
    raw = room_signer.sign(sink())
    for cut in (0, 1, len(raw) // 2, len(raw) - 1):
        with pytest.raises(mf.ManifestRefused) as info:
            check_sink(raw[:cut], ca[1])
        # an emptied or cut manifest is tampering, never "not signed yet"
        assert not isinstance(info.value, mf.SinkManifestMissing)
    with pytest.raises(mf.SinkManifestMissing, match="no signed manifest"):
        check_sink(None, ca[1])


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,                                    # deeper than the parser's stack
    b'{"manifest": ' * 50 + b"{}" + b"}" * 50,                          # deep, and not a manifest
    b"\xff\xfe not utf-8",
], ids=["nested-100k", "nested-50", "not-utf8"])
def test_hostile_bytes_from_storage_are_refused_in_one_line_not_a_traceback(ca, raw) -> None:
    """Storage is hostile: whatever it hands back as a sink's signed manifest or a dataset's manifest is
    refused as a manifest, never a RecursionError out of `ccr data download` or the mount."""
    for check in (lambda: check_sink(raw, ca[1]), lambda: mf.parse(raw, "w")):
        with pytest.raises(mf.ManifestRefused) as info:
            check()
        assert "\n" not in str(info.value)


def test_a_bit_flipped_signature_is_refused(ca, room_signer) -> None:
    envelope = json.loads(room_signer.sign(sink()))
    signature = bytearray(base64.b64decode(envelope["signature"]))
    signature[len(signature) // 2] ^= 1
    envelope["signature"] = base64.b64encode(bytes(signature)).decode()
    with pytest.raises(mf.ManifestRefused):
        check_sink(json.dumps(envelope).encode(), ca[1])


def test_a_key_the_contract_ca_never_endorsed_is_refused(ca) -> None:
    # Storage (or anyone) signs with its own key and a self-made certificate named like the CA's.
    forger_ca = make_ca("Azure Clean Room CA")
    key = mf.new_signing_key()
    forged = mf.Signer(key, endorse(*forger_ca, key)).sign(sink())
    with pytest.raises(mf.ManifestRefused, match="not issued by the contract CA"):
        check_sink(forged, ca[1])
    # The room's real certificate, but the manifest signed by another key.
    real_cert = json.loads(mf.Signer(mf.new_signing_key(), endorse(*ca, mf.new_signing_key())).sign(sink()))
    with pytest.raises(mf.ManifestRefused, match="does not verify"):
        check_sink(json.dumps(real_cert).encode(), ca[1])


def test_the_ca_itself_cannot_stand_in_for_a_room(ca) -> None:
    ca_key, ca_cert = ca
    signed = mf.Signer(ca_key, pem(ca_cert).decode()).sign(sink())
    with pytest.raises(mf.ManifestRefused):
        check_sink(signed, ca_cert)


def test_another_contracts_room_is_refused(ca, room_signer) -> None:
    other_ca = make_ca("Azure Clean Room CA")
    with pytest.raises(mf.ManifestRefused, match="not a room of this contract|not issued"):
        check_sink(room_signer.sign(sink()), other_ca[1])
    with pytest.raises(mf.ManifestRefused, match="for contract 'collab', not 'other'"):
        check_sink(room_signer.sign(sink()), ca[1], contract="other")


def test_a_manifest_dated_outside_the_certificate_is_refused(ca, room_signer) -> None:
    late = sink(finished=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    with pytest.raises(mf.ManifestRefused, match="outside its certificate's validity"):
        check_sink(room_signer.sign(late), ca[1])


def test_a_dataset_manifest_is_not_a_sink_manifest(ca, room_signer) -> None:
    with pytest.raises(mf.ManifestRefused, match="dataset manifest, not a sink"):
        check_sink(room_signer.sign(mf.Manifest("dataset", ACCOUNT, CONTAINER, "CSE", dict(ENTRIES),
                                                finished=dt.datetime.now(dt.UTC).isoformat())), ca[1])


def test_another_key_of_the_room_cannot_sign_a_sinks_manifest(ca) -> None:
    """The contract CA also endorses the room's TLS key (its subject says so): with the datasink named, only
    the key endorsed for that datasink's mount is accepted."""
    key = mf.new_signing_key()
    signer = mf.Signer(key, endorse(*ca, key))  # CN=ccr datasink results
    raw = signer.sign(sink())
    assert mf.signed_sink(raw, pem(ca[1]), contract="collab", account=ACCOUNT, container=CONTAINER, where="w",
                          volume="results").entries == ENTRIES
    with pytest.raises(mf.ManifestRefused, match="not by the room's mount of datasink other"):
        mf.signed_sink(raw, pem(ca[1]), contract="collab", account=ACCOUNT, container=CONTAINER, where="w",
                       volume="other")
