"""Fixtures for the conformance suite: the CGS stand-in as a real process in real-wire mode (HTTPS that asks for
a client certificate, no `--allow-signed-header`), and `ReferenceClient`, which sends requests exactly as the
reference's cgs-client does (see `reference` and `vectors`), with plain httpx and nothing of ours.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from sidecars.attestation import MockPlatform
from sidecars.common.memberauth import MemberIdentity
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.common.tls import LocalCA
from tests.conformance import reference
from tests.conformance.reference import GOV_API_VERSION, TRANSACTION_ID_HEADER, Signer


@dataclass
class StandIn:
    url: str
    ca_file: str
    state_dir: Path
    proc: ManagedProcess

    @property
    def operator(self) -> Signer:
        operator = self.state_dir / "operator"
        return Signer.from_pem((operator / "member.pem").read_bytes(), (operator / "member.key").read_bytes())


def start_standin(run_dir: Path, ca: LocalCA, *extra: str, env: dict[str, str] | None = None) -> StandIn:
    tls = ca.issue_server_cert("cgs", directory=run_dir / "tls")
    ready = run_dir / "cgs.ready"
    state = run_dir / "state"
    proc = ManagedProcess("cgs", [sys.executable, "-m", "sidecars.emulators.cgs", "--port", "0",
                                  "--cert", str(tls.cert_file), "--key", str(tls.key_file),
                                  "--state-dir", str(state), "--ready-file", str(ready), *extra],
                          ready=file_exists(ready), ready_timeout=30, log_path=run_dir / "cgs.log",
                          env=dict(os.environ) if env is None else env)
    proc.start()
    return StandIn(json.loads(ready.read_text())["url"], str(ca.cert_file), state, proc)


@pytest.fixture(scope="session")
def conformance_ca(tmp_path_factory) -> LocalCA:
    return LocalCA.create(tmp_path_factory.mktemp("conformance-ca"))


@pytest.fixture(scope="session")
def platform_dir(tmp_path_factory) -> Path:
    """A mock SEV-SNP platform the stand-in trusts, for rooms (see sidecars.attestation.mock)."""
    directory = tmp_path_factory.mktemp("platform") / "platform"
    MockPlatform.create(directory)
    return directory


@pytest.fixture(scope="module")
def standin(tmp_path_factory, conformance_ca, platform_dir) -> Iterator[StandIn]:
    service = start_standin(tmp_path_factory.mktemp("standin"), conformance_ca, "--trust-mock-platform",
                            str(platform_dir))
    yield service
    service.proc.stop()


class ReferenceClient:
    """What cgs-client sends, request by request: COSE bodies for `/gov` writes, `?api-version=` on every
    versioned `/gov` path, the member's certificate as TLS client certificate for `/app` only (its `Gov` and
    `NoAuth` clients present none: `CcfClientManager.InitializeClient`), and the commit wait (no credentials)."""

    def __init__(self, standin: StandIn, signer: Signer | None, cert_dir: Path | None = None):
        self.standin = standin
        self.signer = signer
        self.gov_http = httpx.Client(base_url=standin.url, verify=ssl.create_default_context(cafile=standin.ca_file),
                                     timeout=10)
        tls = ssl.create_default_context(cafile=standin.ca_file)
        if signer is not None and cert_dir is not None:
            cert_dir.mkdir(parents=True, exist_ok=True)
            (cert_dir / "member.pem").write_text(signer.cert_pem)
            (cert_dir / "member.key").write_bytes(signer.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            tls.load_cert_chain(cert_dir / "member.pem", cert_dir / "member.key")
        self.http = httpx.Client(base_url=standin.url, verify=tls, timeout=10)

    def close(self) -> None:
        self.http.close()
        self.gov_http.close()

    @staticmethod
    def gov_target(path: str, api_version: str | None = GOV_API_VERSION) -> str:
        return path if api_version is None else f"{path}?api-version={api_version}"

    def gov_get(self, path: str, **kw: Any) -> httpx.Response:
        return self.gov_http.get(self.gov_target(path, **kw))

    def gov_post(self, path: str, envelope: bytes, *, api_version: str | None = GOV_API_VERSION,
                 content_type: str = "application/cose") -> httpx.Response:
        return self.gov_http.post(self.gov_target(path, api_version), content=envelope,
                                  headers={"content-type": content_type})

    def envelope(self, msg_type: str, payload: str | None, **kw: Any) -> bytes:
        assert self.signer is not None
        return reference.gov_envelope(self.signer, msg_type, payload, **kw)

    def propose(self, *actions: dict[str, Any]) -> httpx.Response:
        response = self.gov_post("/gov/members/proposals:create",
                                 self.envelope("proposal", reference.proposal_payload(*actions)))
        self.wait_committed(response, "gov")
        return response

    def vote(self, proposal_id: str, accept: bool = True) -> httpx.Response:
        assert self.signer is not None
        response = self.gov_post(
            f"/gov/members/proposals/{proposal_id}/ballots/{self.signer.member_id}:submit",
            self.envelope("ballot", reference.ballot_payload(accept), proposal_id=proposal_id))
        self.wait_committed(response, "gov")
        return response

    def activate(self) -> None:
        """`MembersController.AckStateDigest`: update, then sign the answer as the ack."""
        assert self.signer is not None
        update = self.gov_post(f"/gov/members/state-digests/{self.signer.member_id}:update",
                               self.envelope("state_digest", None))
        assert update.status_code == 200, update.text
        ack = self.gov_post(f"/gov/members/state-digests/{self.signer.member_id}:ack",
                            self.envelope("ack", update.text))
        assert ack.status_code == 204, ack.text

    def app(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if body is None:
            response = self.http.request(method, path)
        else:
            response = self.http.request(method, path, content=json.dumps(body, separators=(",", ":")),
                                         headers={"content-type": "application/json"})
        if response.status_code < 400 and method != "GET":
            self.wait_committed(response, "app")
        return response

    def wait_committed(self, response: httpx.Response, endpoint: str, timeout_s: float = 5.0) -> str | None:
        """The reference's commit wait: poll `{endpoint}/tx` while Unknown or Pending; must reach Committed."""
        tx = response.headers.get(TRANSACTION_ID_HEADER)
        if tx is None or response.status_code >= 400:
            return None
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.gov_http.get(f"/{endpoint}/tx", params={"transaction_id": tx})
            assert status.status_code == 200, status.text
            state = status.json()["status"]
            if state not in ("Unknown", "Pending") or time.monotonic() > deadline:
                assert state == "Committed", f"{tx}: {state}"
                return tx
            time.sleep(0.05)


@dataclass
class Consortium:
    """The operator and three members made Active the reference's way: the operator proposes `set_member`
    (certificate + member_data {identifier}), the members already active accept it (the reference constitution:
    all active non-operator members), then the new member updates and acks its state digest."""

    operator: ReferenceClient
    members: dict[str, ReferenceClient]
    anonymous: ReferenceClient

    def __getitem__(self, name: str) -> ReferenceClient:
        return self.members[name]

    def accept(self, proposal: httpx.Response, voters: list[ReferenceClient] | None = None) -> dict[str, Any]:
        assert proposal.status_code == 200, proposal.text
        view = proposal.json()
        for member in self.members.values() if voters is None else voters:
            if view["proposalState"] != "Open":
                break
            voted = member.vote(view["proposalId"], True)
            assert voted.status_code == 200, voted.text
            view = voted.json()
        assert view["proposalState"] == "Accepted", view
        return view


def make_signer(directory: Path, name: str) -> Signer:
    identity = MemberIdentity.create(directory / name, name)
    return Signer(identity.key, identity.cert)


@pytest.fixture(scope="module")
def consortium(standin, tmp_path_factory) -> Iterator[Consortium]:
    base = tmp_path_factory.mktemp("members")
    operator = ReferenceClient(standin, standin.operator, base / "operator-tls")
    signers = {"member0": reference.reference_member0(), "alice": make_signer(base, "alice"),
               "bob": make_signer(base, "bob")}
    consortium = Consortium(operator, {}, ReferenceClient(standin, None))
    for name, signer in signers.items():
        client = ReferenceClient(standin, signer, base / f"{name}-tls")
        proposal = operator.propose({"name": "set_member", "args": {
            "cert": signer.cert_pem, "member_data": {"identifier": name}}})
        consortium.accept(proposal, list(consortium.members.values()))
        client.activate()
        consortium.members[name] = client
    yield consortium
    for client in (operator, consortium.anonymous, *consortium.members.values()):
        client.close()
