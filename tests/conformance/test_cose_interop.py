"""Our COSE governance messages (`sidecars.common.cose`) against the reference's construction (`reference`),
both ways, with the reference's own test member: what cgs-client signs we verify, what we sign a reference
verifier (CCF) accepts — same header labels, kid, alg, created_at type and signature layout."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from sidecars.common import cose
from tests.conformance import reference
from tests.conformance.reference import BALLOT_ACCEPT

PROPOSAL_ID = "ab" * 32


def test_reference_member_id_is_the_hex_sha256_of_its_certificate():
    member0 = reference.reference_member0()
    der = member0.cert.public_bytes(serialization.Encoding.DER)
    assert member0.member_id == hashlib.sha256(der).hexdigest() == reference.REFERENCE_MEMBER0_ID
    assert member0.kid == reference.REFERENCE_MEMBER0_ID.encode("ascii")


@pytest.mark.parametrize("msg_type, payload, proposal_id", [
    ("proposal", reference.proposal_payload({"name": "set_contract_runtime_options_disable_logging",
                                             "args": {"contractId": "c1"}}), None),
    ("ballot", reference.ballot_payload(True), PROPOSAL_ID),
    ("withdrawal", None, PROPOSAL_ID),
    ("state_digest", None, None),
    ("ack", json.dumps({"memberId": reference.REFERENCE_MEMBER0_ID, "stateDigest": "11" * 32}), None),
])
def test_we_verify_what_the_reference_signs(msg_type, payload, proposal_id):
    member0 = reference.reference_member0()
    envelope = reference.gov_envelope(member0, msg_type, payload, proposal_id=proposal_id)
    message = cose.verify_gov_message(envelope, {member0.member_id: member0.cert}.get)
    assert message.member_id == member0.member_id
    assert message.msg_type == msg_type
    assert message.proposal_id == proposal_id
    assert message.payload == (payload or "").encode()


@pytest.mark.parametrize("msg_type, proposal_id", [("proposal", None), ("ballot", PROPOSAL_ID),
                                                   ("withdrawal", PROPOSAL_ID), ("state_digest", None)])
def test_the_reference_verifies_what_we_sign(msg_type, proposal_id):
    member0 = reference.reference_member0()
    payload = json.dumps({"ballot": BALLOT_ACCEPT}).encode() if msg_type == "ballot" else b""
    envelope = cose.sign_gov_message(member0.key, member0.cert, msg_type, payload, proposal_id=proposal_id)
    decoded = reference.verify_envelope(envelope, member0.cert)
    header = decoded.protected
    assert header[reference.ALG] == reference.ES384
    assert header[reference.KID] == member0.kid, "kid: bytes of the lowercase hex SHA-256 of the DER"
    assert header[reference.MSG_TYPE] == msg_type
    assert isinstance(header[reference.CREATED_AT], int), "created_at is a CBOR integer (AddHeaders: int.TryParse)"
    assert header.get(reference.PROPOSAL_ID) == proposal_id
    assert decoded.payload == payload and decoded.unprotected == {}


def test_a_tampered_reference_envelope_does_not_verify_with_us():
    member0 = reference.reference_member0()
    envelope = reference.gov_envelope(member0, "ballot", reference.ballot_payload(True), proposal_id=PROPOSAL_ID)
    tampered = envelope.replace(b"return true", b"return fals")
    with pytest.raises(Exception) as refused:
        cose.verify_gov_message(tampered, {member0.member_id: member0.cert}.get)
    assert not isinstance(refused.value, AssertionError)
    with pytest.raises(InvalidSignature):
        reference.verify_envelope(tampered, member0.cert)
