"""Admission by attestation, attacked: only evidence of the accepted executor policy, bound to the key the
secret is wrapped to, gets the cluster's secret; every refusal is audited with the claim that did not match."""

from __future__ import annotations

import base64
import json
import socket
import threading

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.attestation import MockPlatform, Trust
from sidecars.attestation.providers import MockSnpProvider
from sidecars.cluster.admission import (
    OAEP,
    Admission,
    AdmissionPolicy,
    ExecutorPolicyUnavailable,
    join,
    key_binding,
    serve,
)
from sidecars.cluster.network import ClusterNetwork, firewall_rules
from sidecars.common.errors import AttestationError, BadRequest, PolicyDenied, RemoteServiceError

ACCEPTED = "ab" * 32
ALTERED = "cd" * 32
SECRET = b"s" * 32


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> MockPlatform:
    return MockPlatform.create(tmp_path_factory.mktemp("cluster") / "mock-platform")


class Governance:
    """What the members accepted (read at each admission) and the audit log it keeps."""

    def __init__(self, host_data: str | None) -> None:
        self.host_data = host_data
        self.events: list[dict] = []

    def accepted_policy(self) -> AdmissionPolicy:
        if self.host_data is None:
            raise ExecutorPolicyUnavailable("no accepted executor policy")
        return AdmissionPolicy(self.host_data)

    def audit(self, record: dict) -> None:
        self.events.append(record)


@pytest.fixture
def admission(platform, tmp_path) -> Admission:
    trust = Trust.default().trusting_mock_platform(platform.directory)
    return Admission(Governance(ACCEPTED), SECRET, trust, tmp_path / "audit.jsonl")


def _request(platform, host_data: str, *, debug: bool = False, bind: bytes | None = None):
    key = rsa.generate_private_key(65537, 2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    provider = MockSnpProvider(platform, host_data=bytes.fromhex(host_data), debug=debug)
    evidence = provider.get_evidence((bind if bind is not None else key_binding(der)) + bytes(32))
    return key, {"evidence": evidence.to_combined(), "public_key": base64.b64encode(der).decode()}


def _audit(admission) -> list[dict]:
    return [json.loads(line) for line in admission.audit_path.read_text().splitlines()]


def test_the_accepted_policy_gets_the_secret_wrapped_to_its_key(platform, admission):
    key, body = _request(platform, ACCEPTED)
    assert key.decrypt(admission.admit(body, "10.205.0.2"), OAEP) == SECRET
    assert _audit(admission)[-1]["event"] == "cluster.executor.admitted"


def test_another_policy_is_refused_and_audited_with_the_claim(platform, admission):
    _, body = _request(platform, ALTERED)
    with pytest.raises(PolicyDenied, match="x-ms-sevsnpvm-hostdata"):
        admission.admit(body, "10.205.0.9")
    record = _audit(admission)[-1]
    assert record == {"event": "cluster.executor.refused", "peer": "10.205.0.9", "claim": "x-ms-sevsnpvm-hostdata",
                      "expected": ACCEPTED, "presented": ALTERED}
    assert admission.governance.events[-1] == record


def test_the_policy_is_read_from_the_governance_at_each_admission(platform, admission):
    """The members accept another executor policy: the one that was admitted before is refused now."""
    _, body = _request(platform, ACCEPTED)
    admission.admit(body, "10.205.0.2")
    admission.governance.host_data = ALTERED
    with pytest.raises(PolicyDenied, match="x-ms-sevsnpvm-hostdata"):
        admission.admit(_request(platform, ACCEPTED)[1], "10.205.0.2")
    admission.governance.host_data = None
    with pytest.raises(ExecutorPolicyUnavailable):
        admission.admit(_request(platform, ACCEPTED)[1], "10.205.0.2")
    assert admission.governance.events[-1]["reason"] == "no accepted executor policy"


def test_a_governance_that_cannot_record_does_not_admit_a_refused_room(platform, admission):
    def unreachable(record: dict) -> None:
        raise RemoteServiceError("CGS", "unreachable")

    admission.governance.audit = unreachable
    with pytest.raises(PolicyDenied):
        admission.admit(_request(platform, ALTERED)[1], "10.205.0.9")
    assert _audit(admission)[-1]["claim"] == "x-ms-sevsnpvm-hostdata"


def test_a_debuggable_room_with_the_right_policy_is_refused(platform, admission):
    _, body = _request(platform, ACCEPTED, debug=True)
    with pytest.raises(PolicyDenied, match="is-debuggable"):
        admission.admit(body, "10.205.0.2")
    assert _audit(admission)[-1]["claim"] == "x-ms-sevsnpvm-is-debuggable"


def test_evidence_replayed_with_the_attackers_own_key_is_refused(platform, admission):
    """A good executor's evidence binds its key; an attacker who swaps in its own key gets nothing."""
    _, good = _request(platform, ACCEPTED)
    _, attacker = _request(platform, ALTERED)
    with pytest.raises(PolicyDenied, match="does not bind public_key"):
        admission.admit({"evidence": good["evidence"], "public_key": attacker["public_key"]}, "10.205.0.9")


def test_evidence_from_another_platform_is_refused(tmp_path, admission):
    forged = MockPlatform.create(tmp_path / "forged")
    _, body = _request(forged, ACCEPTED)
    with pytest.raises(AttestationError):
        admission.admit(body, "10.205.0.9")
    assert _audit(admission)[-1]["event"] == "cluster.executor.refused"


@pytest.mark.parametrize("body", [None, [], {}, {"public_key": 3}, {"public_key": "!!", "evidence": {}},
                                  {"public_key": base64.b64encode(b"x" * 300).decode(), "evidence": {}}])
def test_malformed_requests_are_one_line_refusals(admission, body):
    with pytest.raises(BadRequest):
        admission.admit(body, "10.205.0.9")


def test_a_small_rsa_key_is_refused(platform, admission):
    small = rsa.generate_private_key(65537, 1024)
    der = small.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    evidence = MockSnpProvider(platform, host_data=bytes.fromhex(ACCEPTED)).get_evidence(key_binding(der) + bytes(32))
    with pytest.raises(BadRequest, match="2048"):
        admission.admit({"evidence": evidence.to_combined(), "public_key": base64.b64encode(der).decode()}, "x")


def test_over_http_the_good_room_joins_and_a_bad_one_gets_403(platform, admission):
    server = serve(admission, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}/admit"
    try:
        good = MockSnpProvider(platform, host_data=bytes.fromhex(ACCEPTED))
        assert join(url, good.get_evidence) == SECRET
        bad = MockSnpProvider(platform, host_data=bytes.fromhex(ALTERED))
        with pytest.raises(PolicyDenied, match="refused this executor room"):
            join(url, bad.get_evidence)
        assert httpx.post(url, content=b"x" * 70_000).status_code == 400
        assert httpx.post(url, content=b"{not json").status_code == 400
        # a body announced but never sent does not hold the server: another request is answered meanwhile
        with socket.create_connection(server.server_address) as stalled:
            stalled.sendall(b"POST /admit HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
            assert httpx.post(url, json={}).status_code == 400
    finally:
        server.shutdown()
        server.server_close()
    assert threading.active_count() < 50


def test_the_firewall_opens_only_spark_ports_between_members():
    net = ClusterNetwork.plan("cluster-x", 2)
    driver_rules = firewall_rules(net.driver, net.rooms)
    assert "policy drop" in driver_rules
    assert "ip saddr { 10.205.0.2, 10.205.0.3 } tcp dport { 7077, 7078, 7079, 7080 } accept" in driver_rules
    assert "8080" not in driver_rules and "6066" not in driver_rules
    executor_rules = firewall_rules(net.executors[0], net.rooms)
    assert "ip saddr { 10.205.0.1, 10.205.0.3 } tcp dport { 7079, 7081 } accept" in executor_rules
    assert "8081" not in executor_rules
