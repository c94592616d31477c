"""UVM endorsements: the real one verifies; tampering, a wrong issuer or a wrong measurement does not."""

from __future__ import annotations

import dataclasses
import hashlib

import cbor2
import pytest

from sidecars.attestation import AttestationError, MockSnpProvider, verify_evidence
from sidecars.attestation.uvm import (
    MICROSOFT_UVM_DID,
    MICROSOFT_UVM_FEED,
    UvmEndorser,
    resolve_did_x509,
    verify_uvm_endorsement,
)

MICROSOFT = (UvmEndorser(MICROSOFT_UVM_DID, MICROSOFT_UVM_FEED),)


def _reencode(cose: bytes, *, protected=None, payload=None, signature=None) -> bytes:
    tag = cbor2.loads(cose)
    prot, unprot, pay, sig = tag.value
    if protected is not None:
        header = dict(cbor2.loads(prot))
        header.update(protected)
        prot = cbor2.dumps(header)
    return cbor2.dumps(cbor2.CBORTag(18, [prot, dict(unprot), payload if payload is not None else pay,
                                          signature if signature is not None else sig]))


def test_real_endorsement(real_evidence):
    endorsement = verify_uvm_endorsement(real_evidence.uvm_endorsement, MICROSOFT)
    assert endorsement.issuer == MICROSOFT_UVM_DID and endorsement.feed == "ContainerPlat-AMD-UVM"
    assert endorsement.launch_measurement.startswith("d0c9e2be")
    assert endorsement.guest_svn == "103"


def test_tampered_payload_is_rejected(real_evidence):
    payload = cbor2.loads(real_evidence.uvm_endorsement).value[2]
    tampered = _reencode(real_evidence.uvm_endorsement, payload=payload.replace(b"d0c9", b"d0c8"))
    with pytest.raises(AttestationError, match="UVM endorsement signature does not verify"):
        verify_uvm_endorsement(tampered, MICROSOFT)


def test_tampered_signature_is_rejected(real_evidence):
    signature = bytearray(cbor2.loads(real_evidence.uvm_endorsement).value[3])
    signature[10] ^= 1
    with pytest.raises(AttestationError, match="signature does not verify"):
        verify_evidence(dataclasses.replace(real_evidence, uvm_endorsement=_reencode(
            real_evidence.uvm_endorsement, signature=bytes(signature))))


@pytest.mark.parametrize("offset", [0, 1, 5, 40, 200, 2000, -300, -1])
def test_flipped_byte_of_the_endorsement_is_rejected(real_evidence, offset):
    data = bytearray(real_evidence.uvm_endorsement)
    data[offset] ^= 0x01
    with pytest.raises(AttestationError, match="UVM endorsement"):
        verify_evidence(dataclasses.replace(real_evidence, uvm_endorsement=bytes(data)))


def test_changed_feed_is_untrusted(real_evidence):
    changed = _reencode(real_evidence.uvm_endorsement, protected={"feed": "Other-UVM"})
    with pytest.raises(AttestationError, match="untrusted issuer/feed"):
        verify_uvm_endorsement(changed, MICROSOFT)


def test_mock_signer_claiming_microsofts_did_is_rejected(mock_platform, real_evidence):
    """The mock signer's chain, with `iss` set to Microsoft's DID: the DID's fingerprint is not in the chain."""
    mock = mock_platform.endorse_uvm(bytes.fromhex(verify_uvm_endorsement(
        real_evidence.uvm_endorsement, MICROSOFT).launch_measurement))
    forged = _reencode(mock, protected={"iss": MICROSOFT_UVM_DID})
    with pytest.raises(AttestationError, match="does not contain the CA its issuer DID names"):
        verify_uvm_endorsement(forged, MICROSOFT)


def test_mock_endorsement_is_untrusted_by_default(mock_platform, mock_trust):
    evidence = MockSnpProvider(mock_platform).get_evidence(b"")
    with pytest.raises(AttestationError, match="untrusted issuer/feed"):
        verify_uvm_endorsement(evidence.uvm_endorsement, MICROSOFT)
    verify_uvm_endorsement(evidence.uvm_endorsement, mock_trust.uvm_endorsers)


def test_measurement_mismatch_is_rejected(mock_platform, mock_trust):
    provider = MockSnpProvider(mock_platform)
    other = mock_platform.endorse_uvm(hashlib.sha384(b"some other uvm").digest())
    evidence = dataclasses.replace(provider.get_evidence(b""), uvm_endorsement=other)
    with pytest.raises(AttestationError, match="UVM endorsement measurement mismatch"):
        verify_evidence(evidence, mock_trust)


def test_real_endorsement_on_a_mock_report_is_a_measurement_mismatch(mock_platform, mock_trust, real_evidence):
    evidence = dataclasses.replace(MockSnpProvider(mock_platform).get_evidence(b""),
                                   uvm_endorsement=real_evidence.uvm_endorsement)
    trust = dataclasses.replace(mock_trust, uvm_endorsers=mock_trust.uvm_endorsers + MICROSOFT)
    with pytest.raises(AttestationError, match="measurement mismatch"):
        verify_evidence(evidence, trust)


def test_did_eku_policy_is_enforced(real_evidence):
    import warnings

    from cryptography import x509

    ders = cbor2.loads(cbor2.loads(real_evidence.uvm_endorsement).value[0])[33]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chain = [x509.load_der_x509_certificate(d) for d in ders]
    resolve_did_x509(MICROSOFT_UVM_DID, chain, None)
    with pytest.raises(AttestationError, match="lacks the EKU 1.2.3.4"):
        resolve_did_x509(MICROSOFT_UVM_DID.rsplit(":", 1)[0] + ":1.2.3.4", chain, None)
    with pytest.raises(AttestationError, match="does not verify"):
        resolve_did_x509(MICROSOFT_UVM_DID, [chain[0], chain[2]], None)


def test_not_cbor_is_rejected(real_evidence):
    with pytest.raises(AttestationError, match="UVM endorsement"):
        verify_evidence(dataclasses.replace(real_evidence, uvm_endorsement=b"\xff\x00garbage"))
