"""Member certificates in mutual TLS against the running CGS stand-in: the listener asks every client for a
certificate, a registered member's connection is that member, and whoever cannot present a member's
certificate with its key is refused — in the handshake or by the app."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sidecars.cli import main as ccr
from sidecars.common.errors import RemoteServiceError
from sidecars.common.memberauth import MemberIdentity
from sidecars.governance.member_client import CgsMemberClient, CgsRequestFailed, join

from .conftest import start_cgs, start_service, unique


@pytest.fixture(scope="module")
def cgs(server_tls, platform_dir, tmp_path_factory):
    """A stand-in of this module's own: the members registered here must not join the session's consortium
    (whose proposals need every member's vote)."""
    service = start_cgs(tmp_path_factory.mktemp("member-tls"), server_tls, platform_dir)
    yield service
    service.proc.stop()


@pytest.fixture(scope="module")
def member(cgs, local_ca, tmp_path_factory) -> MemberIdentity:
    """A member who joins while the stand-in is running (proposed by the operator, then acknowledging the state
    digest over a connection presenting its certificate)."""
    identity = MemberIdentity.create(tmp_path_factory.mktemp("carol") / "carol", unique("carol"))
    with CgsMemberClient(cgs.url, cgs.operator, ca_bundle=str(local_ca.cert_file)) as operator, \
            CgsMemberClient(cgs.url, identity, ca_bundle=str(local_ca.cert_file)) as client:
        assert join(operator, [client]) == [identity.name]
    return identity


def test_a_member_registered_after_start_is_known_by_its_certificate(cgs, local_ca, member):
    contract_id = unique("contract")
    with CgsMemberClient(cgs.url, member, ca_bundle=str(local_ca.cert_file)) as client:
        client.put_contract(contract_id, {"purpose": "mtls"})
        assert client.contract(contract_id)["data"] == {"purpose": "mtls"}


def test_a_strangers_certificate_is_refused_in_the_handshake(cgs, local_ca, tmp_path):
    stranger = MemberIdentity.create(tmp_path / "mallory", "mallory")
    with CgsMemberClient(cgs.url, stranger, ca_bundle=str(local_ca.cert_file)) as client, \
            pytest.raises(RemoteServiceError, match="refused member mallory's certificate"):
        client.put_contract(unique("contract"), {"purpose": "intrusion"})


def test_a_certificate_copying_a_members_name_is_refused(cgs, local_ca, member, tmp_path):
    """Same subject (and issuer) as the member's self-signed certificate, another key: the handshake fails."""
    key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)
    forged = (x509.CertificateBuilder().subject_name(member.cert.subject).issuer_name(member.cert.issuer)
              .public_key(key.public_key()).serial_number(member.cert.serial_number)
              .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
              .sign(key, hashes.SHA384()))
    (tmp_path / "forged").mkdir()
    (tmp_path / "forged" / "member.pem").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "forged" / "member.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with CgsMemberClient(cgs.url, MemberIdentity.load(tmp_path / "forged"), ca_bundle=str(local_ca.cert_file)) \
            as client, pytest.raises(RemoteServiceError, match="certificate"):
        client.put_contract(unique("contract"), {"purpose": "impersonation"})


def test_a_members_certificate_without_its_key_cannot_be_presented(member, local_ca, tmp_path):
    """TLS makes the client sign the handshake with the certificate's key: a copy of the (public) certificate
    paired with any other key is refused by the client's own TLS stack before a byte is sent."""
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "member.pem").write_text(member.cert_pem)
    (tmp_path / "copy" / "member.key").write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.create_default_context(cafile=str(local_ca.cert_file))
    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH|key values mismatch"):
        context.load_cert_chain(tmp_path / "copy" / "member.pem", tmp_path / "copy" / "member.key")


def test_a_connection_without_a_certificate_completes_but_app_requests_are_refused(cgs, local_ca):
    with httpx.Client(base_url=cgs.url, verify=ssl.create_default_context(cafile=str(local_ca.cert_file))) as plain:
        answer = plain.put(f"/app/contracts/{unique('contract')}", json={"data": {}})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationInfo"


def test_the_legacy_header_is_refused_by_a_stand_in_that_does_not_allow_it(cgs, local_ca, member):
    with CgsMemberClient(cgs.url, member, ca_bundle=str(local_ca.cert_file), auth="header") as client, \
            pytest.raises(CgsRequestFailed) as refused:
        client.put_contract(unique("contract"), {"purpose": "legacy"})
    assert refused.value.http_status == 401


def _raw_answer(url: str, ca_file: str, identity: MemberIdentity) -> bytes:
    """What the listener answers a TLS connection presenting `identity`'s certificate: the HTTP status line,
    or b"" when it ends the connection (an alert or a close) without one."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    context = identity.tls_context(ca_file)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        try:
            tls.sendall(b"GET /app/contracts HTTP/1.1\r\nhost: cgs\r\nconnection: close\r\n\r\n")
            return tls.recv(64).split(b"\r\n")[0]
        except (ssl.SSLError, ConnectionError):
            return b""


def test_the_handshake_itself_refuses_a_stranger(cgs, local_ca, member, tmp_path):
    stranger = MemberIdentity.create(tmp_path / "mallory", "mallory")
    assert _raw_answer(cgs.url, str(local_ca.cert_file), member).startswith(b"HTTP/1.1 ")
    assert _raw_answer(cgs.url, str(local_ca.cert_file), stranger) == b""


@pytest.fixture(scope="module")
def legacy_cgs(server_tls, platform_dir, local_ca, tmp_path_factory):
    """A stand-in started with --allow-signed-header, and a member registered there."""
    run_dir = tmp_path_factory.mktemp("legacy-cgs")
    proc, url = start_service("cgs-legacy", "sidecars.emulators.cgs", [
        "--cert", server_tls.cert_file, "--key", server_tls.key_file, "--state-dir", str(run_dir / "state"),
        "--trust-mock-platform", str(platform_dir), "--allow-signed-header"], run_dir)
    member = MemberIdentity.create(run_dir / "dave", "dave")
    with CgsMemberClient(url, MemberIdentity.load(run_dir / "state" / "operator"),
                         ca_bundle=str(local_ca.cert_file), auth="header") as operator, \
            CgsMemberClient(url, member, ca_bundle=str(local_ca.cert_file), auth="header") as client:
        join(operator, [client])
    yield url, member
    proc.stop()


def test_the_command_line_authenticates_with_the_certificate_unless_told_otherwise(
        cgs, local_ca, member, legacy_cgs, tmp_path, capsys):
    def create(endpoint: str, identity: MemberIdentity, *extra: str) -> tuple[int, str]:
        endpoints = tmp_path / "endpoints.json"
        endpoints.write_text(json.dumps({"cgs_endpoint": endpoint, "ca_bundle": str(local_ca.cert_file)}))
        code = ccr(["governance", "contract", "create", unique("contract"), "--data", "{}", "--endpoints",
                    str(endpoints), "--identity", str(identity.directory), *extra])
        return code, capsys.readouterr().err

    assert create(cgs.url, member) == (0, "")
    code, err = create(cgs.url, member, "--member-auth", "header")
    assert code != 0 and "401" in err and len(err.strip().splitlines()) == 1
    url, dave = legacy_cgs
    assert create(url, dave, "--member-auth", "header") == (0, "")


def test_the_allowed_legacy_header_still_refuses_a_replay_or_another_path(legacy_cgs, local_ca):
    url, dave = legacy_cgs
    with CgsMemberClient(url, dave, ca_bundle=str(local_ca.cert_file), auth="header") as client:
        contract_id = unique("contract")
        client.put_contract(contract_id, {"purpose": "legacy"})
        target = f"/app/contracts/{contract_id}/runtimeoptions/execution/disable"
        auth = dave.authorization("POST", target, b"")
        first = client._http.post(target, headers={"authorization": auth})
        assert first.status_code == 400  # signature fine; the contract is not accepted yet
        again = client._http.post(target, headers={"authorization": auth})
        assert again.status_code == 401 and "replay" in again.json()["error"]["message"]
        other = client._http.post(f"/app/contracts/{contract_id}/runtimeoptions/execution/enable",
                                  headers={"authorization": auth})
        assert other.status_code == 401 and "signature" in other.json()["error"]["message"]


def test_a_captured_governance_write_replayed_on_the_wire_is_refused(cgs, local_ca, member):
    """COSE writes need no client certificate (the envelope is the credential), so whoever captured one may
    send it again: the proposal is refused as a replay, and a ballot cannot be moved to another proposal."""
    sent: list[httpx.Request] = []
    with CgsMemberClient(cgs.url, member, ca_bundle=str(local_ca.cert_file)) as client:
        client._gov.event_hooks["request"].append(sent.append)
        contracts = [unique("contract"), unique("contract")]
        for contract_id in contracts:
            client.put_contract(contract_id, {"purpose": "replay"})
        first = client.propose_contract(contracts[0])
        proposal = next(r for r in sent if r.url.path == "/gov/members/proposals:create")
        second = client.propose_contract(contracts[1])
        client.vote(first["proposalId"], True)
        ballot = next(r for r in sent if r.url.path.endswith(":submit"))
    with httpx.Client(base_url=cgs.url, verify=ssl.create_default_context(cafile=str(local_ca.cert_file))) as plain:
        again = plain.post(str(proposal.url), content=proposal.content, headers={"content-type": "application/cose"})
        assert again.status_code == 400 and again.json()["error"]["code"] == "ProposalReplay"
        moved = plain.post(str(ballot.url).replace(first["proposalId"], second["proposalId"]),
                           content=ballot.content, headers={"content-type": "application/cose"})
        assert moved.status_code == 400 and moved.json()["error"]["code"] == "InvalidResourceName"
        unversioned = plain.post("/gov/members/proposals:create", content=proposal.content,
                                 headers={"content-type": "application/cose"})
        assert unversioned.status_code == 400
        assert unversioned.json()["error"]["code"] == "MissingApiVersionParameter"


def test_gov_requests_present_no_certificate_so_a_stranger_reads_and_is_refused_by_cose(cgs, local_ca, tmp_path):
    """As cgs-client's Gov and NoAuth clients: /gov reads need no credentials, and a /gov write is judged by
    its COSE signature, not by the connection (so the stranger hears why: not a member)."""
    stranger = MemberIdentity.create(tmp_path / "mallory", "mallory")
    with CgsMemberClient(cgs.url, stranger, ca_bundle=str(local_ca.cert_file)) as client:
        assert isinstance(client.proposals(), list)
        with pytest.raises(CgsRequestFailed, match="401 InvalidAuthenticationInfo.*not a member"):
            client.propose({"name": "set_contract_runtime_options_disable_logging", "args": {"contractId": "c"}})
