"""COSE Sign1 governance messages (sidecars.common.cose): what we sign is what CCF reads, a published test
vector verifies byte for byte, and every tampering with a signed message is refused."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from sidecars.common import cose
from sidecars.common.cose import CoseRefused, decode_sign1, sign_gov_message, verify_es384, verify_gov_message
from sidecars.common.memberauth import MemberIdentity

# cose-wg/Examples, ecdsa-examples/ecdsa-sig-02.json: a tagged COSE_Sign1, ES384 (protected {1: -35}),
# unprotected {4: 'P384'}, payload 'This is the content.', signed with the examples' P-384 key (kid "P384").
ES384_VECTOR = bytes.fromhex(
    "D28444A1013822A104445033383454546869732069732074686520636F6E74656E742E"
    "58605F150ABD1C7D25B32065A14E05D6CB1F665D10769FF455EA9A2E0ADAB5DE63838D"
    "B257F0949C41E13330E110EBA7B912F34E1546FB1366A2568FAA91EC3E6C8D42F4A67A"
    "0EDF731D88C9AEAD52258B2E2C4740EF614F02E9D91E9B7B59622A3C")
ES384_VECTOR_KEY = ec.EllipticCurvePublicNumbers(
    int("9132723f6292b010619dbe248d698c17b58756c639e7150f81bee4eb8ac37236ad0a1a19d67be32a66263e1e524d129c", 16),
    int("98cd3078c554d832ac603c4326410ff61662459b41f1f3df5dbcc83598ff7c5ed8411ca735679d1c4cb3009397d9ef2c", 16),
    ec.SECP384R1()).public_key()

# The member0 certificate of the reference's CoseTests.cs (src/governance/test/tests/CoseTests.cs, SignAndVerify).
REFERENCE_MEMBER0_CERT = b"""-----BEGIN CERTIFICATE-----
MIIBtTCCATygAwIBAgIUY9SYtDL/Y4p/a4UNYmZ7knaJz9cwCgYIKoZIzj0EAwMw
EjEQMA4GA1UEAwwHbWVtYmVyMDAeFw0yNDAxMjkxMzAyMzlaFw0yNTAxMjgxMzAy
MzlaMBIxEDAOBgNVBAMMB21lbWJlcjAwdjAQBgcqhkjOPQIBBgUrgQQAIgNiAAQk
iEE7/6+NF7C4kRmzeMZz5lbDB+LQlhE/gaipklIZtbkqztDZDTSm2rgKwxNy0XE3
zj1IuZz/RLJAZvHlZRAm96Gq05IXZFamkV7yZlyg9Pi2Hr2jaAsK30UXWOhCvZWj
UzBRMB0GA1UdDgQWBBTJjVBo2fhr0Ie40JMqw9x9KoB35jAfBgNVHSMEGDAWgBTJ
jVBo2fhr0Ie40JMqw9x9KoB35jAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMD
A2cAMGQCMHOW9fMpRal+3pUU8vwI9y/X91lbIp/3m9Vx24NssbwH94j+k5tyV3aG
z7cDBnG38gIwOGlb7Efd1DjkyjS5pDZNhizEW2CSLBVO+1ZvR1YfRPqLNRMky3G/
jt8Wz5K3zJOd
-----END CERTIFICATE-----
"""
REFERENCE_MEMBER0_KEY = b"""-----BEGIN EC PRIVATE KEY-----
MIGkAgEBBDA6njOb0k7XmIUtjx3OfSIdW1uHqVFQkEjMhgI+Hi9h+PGTkP9hIugj
MxuIg+TV5fagBwYFK4EEACKhZANiAAQkiEE7/6+NF7C4kRmzeMZz5lbDB+LQlhE/
gaipklIZtbkqztDZDTSm2rgKwxNy0XE3zj1IuZz/RLJAZvHlZRAm96Gq05IXZFam
kV7yZlyg9Pi2Hr2jaAsK30UXWOhCvZU=
-----END EC PRIVATE KEY-----
"""
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def alice(tmp_path_factory) -> MemberIdentity:
    return MemberIdentity.create(tmp_path_factory.mktemp("alice") / "m", "alice")


@pytest.fixture(scope="module")
def bob(tmp_path_factory) -> MemberIdentity:
    return MemberIdentity.create(tmp_path_factory.mktemp("bob") / "m", "bob")


def _members(*identities: MemberIdentity):
    certs = {identity.member_id: identity.cert for identity in identities}
    return certs.get


def _parts(envelope: bytes) -> list:
    return list(cbor2.loads(envelope).value)


def _envelope(parts: list) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(18, parts))


def _resign_header(identity: MemberIdentity, header: dict, payload: bytes) -> bytes:
    """A message with a header of our choosing, validly signed by `identity` (to test header checks alone)."""
    protected = cbor2.dumps(header)
    der = identity.key.sign(cbor2.dumps(["Signature1", protected, b"", payload]),
                            ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return _envelope([protected, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")])


def test_the_published_es384_vector_verifies_byte_for_byte():
    message = decode_sign1(ES384_VECTOR)
    assert cbor2.loads(message.protected) == {1: -35}
    assert message.payload == b"This is the content."
    verify_es384(message, ES384_VECTOR_KEY)
    tampered = ES384_VECTOR.replace(b"content.", b"content/")
    with pytest.raises(CoseRefused):
        verify_es384(decode_sign1(tampered), ES384_VECTOR_KEY)


def test_the_kid_is_the_ascii_hex_sha256_of_the_certificate_as_the_reference_computes_it(tmp_path):
    """Cose.FingerprintCertificate: SHA-256 of the DER, lowercase hex, as ASCII bytes; created_at an integer."""
    key = serialization.load_pem_private_key(REFERENCE_MEMBER0_KEY, password=None)
    cert = x509.load_pem_x509_certificate(REFERENCE_MEMBER0_CERT)
    envelope = sign_gov_message(key, cert, "proposal", b'{"actions": []}', created_at=NOW)
    header = cbor2.loads(_parts(envelope)[0])
    der = cert.public_bytes(serialization.Encoding.DER)
    assert header == {1: -35, 4: hashlib.sha256(der).hexdigest().encode("ascii"),
                      "ccf.gov.msg.type": "proposal", "ccf.gov.msg.created_at": NOW}
    assert cbor2.loads(envelope).tag == 18 and len(_parts(envelope)[3]) == 96
    message = verify_gov_message(envelope, lambda kid: cert if kid == hashlib.sha256(der).hexdigest() else None)
    assert (message.msg_type, message.created_at, message.proposal_id, message.payload) == (
        "proposal", NOW, None, b'{"actions": []}')


def test_a_ballot_carries_its_proposal_id_in_the_signed_header(alice):
    envelope = sign_gov_message(alice.key, alice.cert, "ballot", b'{"ballot": "x"}', proposal_id="p1")
    message = verify_gov_message(envelope, _members(alice))
    assert (message.member_id, message.msg_type, message.proposal_id) == (alice.member_id, "ballot", "p1")


def test_a_changed_payload_is_refused(alice):
    parts = _parts(sign_gov_message(alice.key, alice.cert, "proposal", b'{"actions": [1]}'))
    parts[2] = b'{"actions": [2]}'
    with pytest.raises(CoseRefused, match="does not verify"):
        verify_gov_message(_envelope(parts), _members(alice))


@pytest.mark.parametrize("change", [
    {"ccf.gov.msg.type": "ballot"}, {"ccf.gov.msg.created_at": NOW + 1}, {"ccf.gov.msg.proposal_id": "other"},
    {"extra": 1},
])
def test_a_changed_protected_header_is_refused(alice, change):
    parts = _parts(sign_gov_message(alice.key, alice.cert, "proposal", b"{}", created_at=NOW, proposal_id="p"))
    parts[0] = cbor2.dumps({**cbor2.loads(parts[0]), **change})
    with pytest.raises(CoseRefused, match="does not verify"):
        verify_gov_message(_envelope(parts), _members(alice))


def test_a_re_encoded_but_equal_protected_header_is_refused(alice):
    """The signature covers the header's bytes: the same map in another order is another message."""
    parts = _parts(sign_gov_message(alice.key, alice.cert, "proposal", b"{}", created_at=NOW))
    reordered = dict(reversed(list(cbor2.loads(parts[0]).items())))
    assert reordered == cbor2.loads(parts[0])
    parts[0] = cbor2.dumps(reordered)
    with pytest.raises(CoseRefused, match="does not verify"):
        verify_gov_message(_envelope(parts), _members(alice))


def test_swapping_the_kid_to_another_member_is_refused(alice, bob):
    parts = _parts(sign_gov_message(alice.key, alice.cert, "proposal", b"{}"))
    parts[0] = cbor2.dumps({**cbor2.loads(parts[0]), 4: bob.member_id.encode()})
    with pytest.raises(CoseRefused, match="does not verify"):
        verify_gov_message(_envelope(parts), _members(alice, bob))


def test_a_kid_no_member_holds_is_refused(alice, bob):
    with pytest.raises(CoseRefused, match="not a member"):
        verify_gov_message(sign_gov_message(bob.key, bob.cert, "proposal", b"{}"), _members(alice))


@pytest.mark.parametrize("alg", [-7, -36, -8, True, "-35", None])
def test_any_algorithm_but_es384_is_refused(alice, alg):
    header = {1: alg, 4: alice.member_id.encode(), "ccf.gov.msg.type": "proposal", "ccf.gov.msg.created_at": NOW}
    with pytest.raises(CoseRefused, match="alg must be ES384"):
        verify_gov_message(_resign_header(alice, header, b"{}"), _members(alice))


@pytest.mark.parametrize("header, problem", [
    ({4: "TEXT-KID"}, "kid must be"),
    ({4: b"ABCDEF" * 10 + b"ABCD"}, "kid must be"),
    ({4: b"ab" * 32 + b"\n"}, "kid must be"),
    ({"ccf.gov.msg.type": 7}, "ccf.gov.msg.type"),
    ({"ccf.gov.msg.created_at": "1800000000"}, "created_at"),
    ({"ccf.gov.msg.created_at": 10_000_000_000}, "created_at"),
    ({"ccf.gov.msg.created_at": -1}, "created_at"),
    ({"ccf.gov.msg.proposal_id": b"p"}, "proposal_id"),
    ({2: ["ccf.gov.msg.type"]}, "critical"),
])
def test_malformed_header_values_are_refused(alice, header, problem):
    base = {1: -35, 4: alice.member_id.encode(), "ccf.gov.msg.type": "proposal", "ccf.gov.msg.created_at": NOW}
    with pytest.raises(CoseRefused, match=problem):
        verify_gov_message(_resign_header(alice, {**base, **header}, b"{}"), _members(alice))


@pytest.mark.parametrize("envelope, problem", [
    (b"", "CBOR"), (b"\xff\xff", "CBOR"), (b"\x9f" * 100_000, "CBOR"),
    (cbor2.dumps([b"", {}, b"", b""]), "tag 18"),
    (cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"", b""])), "tag 18"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b""])), "protected, unprotected"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"\xa0", {}, None, b"\0" * 96])), "attached"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"\xa0", {}, b"", b"\0" * 64])), "96 bytes"),
    (cbor2.dumps(cbor2.CBORTag(18, [{}, {}, b"", b"\0" * 96])), "byte string"),
])
def test_what_is_not_a_cose_sign1_message_is_refused(alice, envelope, problem):
    with pytest.raises(CoseRefused, match=problem):
        verify_gov_message(envelope, _members(alice))


def test_a_der_signature_is_refused(alice):
    """CCF and .NET write r || s; a DER signature (what a naive signer emits) is refused, not reinterpreted."""
    parts = _parts(sign_gov_message(alice.key, alice.cert, "proposal", b"{}"))
    r, s = int.from_bytes(parts[3][:48], "big"), int.from_bytes(parts[3][48:], "big")
    parts[3] = encode_dss_signature(r, s)
    with pytest.raises(CoseRefused):
        verify_gov_message(_envelope(parts), _members(alice))


def test_a_member_whose_certificate_is_not_p384_cannot_sign(tmp_path, alice):
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="P-384"):
        sign_gov_message(p256, alice.cert, "proposal", b"{}")


def test_a_malleated_signature_verifies_but_has_the_same_replay_digest(alice):
    """(r, n - s) is a valid signature of the same message: the replay record must not tell them apart."""
    envelope = sign_gov_message(alice.key, alice.cert, "proposal", b"{}")
    parts = _parts(envelope)
    s = int.from_bytes(parts[3][48:], "big")
    parts[3] = parts[3][:48] + (cose._P384_ORDER - s).to_bytes(48, "big")
    original = verify_gov_message(envelope, _members(alice))
    malleated = verify_gov_message(_envelope(parts), _members(alice))
    assert original.signature != malleated.signature
    assert cose.signature_digest(original) == cose.signature_digest(malleated)
    again = verify_gov_message(sign_gov_message(alice.key, alice.cert, "proposal", b"{}",
                                                created_at=original.created_at), _members(alice))
    assert cose.signature_digest(again) != cose.signature_digest(original)
