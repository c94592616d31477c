"""Fixtures for the governance tests: the CGS and Entra stand-ins and the governance and identity sidecars
as real processes on free ports, mock SEV-SNP rooms, registered members and accepted contracts."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sidecars.attestation import MockPlatform
from sidecars.common.memberauth import MemberIdentity
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.common.tls import LocalCA
from sidecars.governance.member_client import CgsMemberClient, accept_by_all, join
from sidecars.renderings.layers import ImageInfo, LockedImages

ROOM_HOST_DATA = hashlib.sha256(b"the agreed CCE policy").digest()
_counter = itertools.count()


def layer_lock(group) -> LockedImages:
    """Image facts as a layer lock, so HOST_DATA is computed without building images."""
    def layer(label: str) -> str:
        return hashlib.sha256(label.encode()).hexdigest()

    return LockedImages({c.image: ImageInfo(reference=c.image, digest="sha256:" + layer(c.image),
                                            layers=(layer("base " + c.image),), env=("PATH=/usr/bin:/bin",),
                                            working_dir="/", user="") for c in group.containers})


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


def start_service(name: str, module: str, args: list[str], run_dir: Path,
                  env: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
    ready = run_dir / f"{name}.ready"
    ready.unlink(missing_ok=True)
    proc = ManagedProcess(name, [sys.executable, "-m", module, *args, "--ready-file", str(ready)],
                          ready=file_exists(ready), ready_timeout=30, log_path=run_dir / f"{name}.log",
                          env={**os.environ, **(env or {})})
    proc.start()
    return proc, json.loads(ready.read_text())["url"]


@dataclass
class Cgs:
    url: str
    state_dir: Path
    proc: ManagedProcess
    run_dir: Path
    args: list[str] = field(default_factory=list)

    @property
    def operator(self) -> MemberIdentity:
        return MemberIdentity.load(self.state_dir / "operator")

    def restart(self) -> None:
        self.proc.stop()
        port = self.url.rsplit(":", 1)[1]
        self.proc, self.url = start_service("cgs", "sidecars.emulators.cgs", [*self.args, "--port", port],
                                            self.run_dir)


def start_cgs(run_dir: Path, tls, platform_dir: Path) -> Cgs:
    state = run_dir / "cgs-state"
    args = ["--cert", tls.cert_file, "--key", tls.key_file, "--state-dir", str(state),
            "--trust-mock-platform", str(platform_dir)]
    proc, url = start_service("cgs", "sidecars.emulators.cgs", args, run_dir)
    return Cgs(url, state, proc, run_dir, args)


@pytest.fixture(scope="session")
def gov_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("governance")


@pytest.fixture(scope="session")
def local_ca(gov_dir):
    return LocalCA.create(gov_dir / "ca")


@pytest.fixture(scope="session")
def server_tls(local_ca, gov_dir):
    return local_ca.issue_server_cert("services", directory=gov_dir / "tls")


@pytest.fixture(scope="session")
def platform_dir(gov_dir) -> Path:
    MockPlatform.create(gov_dir / "platform")
    return gov_dir / "platform"


@pytest.fixture(scope="session")
def cgs(gov_dir, server_tls, platform_dir) -> Iterator[Cgs]:
    service = start_cgs(gov_dir / "cgs", server_tls, platform_dir)
    yield service
    service.proc.stop()


@dataclass
class Consortium:
    clients: dict[str, CgsMemberClient]

    def __getitem__(self, name: str) -> CgsMemberClient:
        return self.clients[name]

    def accept(self, proposal: dict[str, Any]) -> dict[str, Any]:
        proposal = accept_by_all(list(self.clients.values()), proposal)
        assert proposal["proposalState"] == "Accepted"
        return proposal

    def new_contract(self, *, host_data: bytes = ROOM_HOST_DATA, accept: bool = True) -> str:
        """A contract with a clean-room policy admitting `host_data`; CGS takes a policy only for an accepted
        contract, so `accept=False` leaves it a draft without one."""
        contract_id = unique("contract")
        alice = self["alice"]
        alice.put_contract(contract_id, {"purpose": "join two datasets"})
        if accept:
            self.accept(alice.propose_contract(contract_id))
            self.admit(contract_id, host_data)
        return contract_id

    def enable_ca(self, contract_id: str) -> None:
        """The contract CA, as CGS enables it: an accepted proposal, then a member asks for its signing key."""
        self.accept(self["alice"].propose_enable_ca(contract_id))
        self["alice"].generate_ca_signing_key(contract_id)

    def admit(self, contract_id: str, host_data: bytes = ROOM_HOST_DATA) -> None:
        """The accepted contract's clean-room policy: rooms with `host_data`, not debuggable."""
        self.accept(self["alice"].propose_policy(contract_id, {"x-ms-sevsnpvm-hostdata": [host_data.hex()],
                                                               "x-ms-sevsnpvm-is-debuggable": False}))


def register_consortium(cgs: Cgs, local_ca, base: Path, names=("alice", "bob")) -> Consortium:
    """The members, each proposed by the operator and activated (CCF's set_member, then the state digest ack);
    the consortium's OIDC issuer enabled with its signing key, for the rooms' tokens."""
    clients = {name: CgsMemberClient(cgs.url, MemberIdentity.create(base / name, name),
                                     ca_bundle=str(local_ca.cert_file)) for name in names}
    with CgsMemberClient(cgs.url, cgs.operator, ca_bundle=str(local_ca.cert_file)) as operator:
        join(operator, list(clients.values()))
    consortium = Consortium(clients)
    first = clients[names[0]]
    if not first.oidc_issuer_info()["enabled"]:
        consortium.accept(first.propose_enable_oidc_issuer("test-issuer"))
    first.generate_oidc_signing_key()
    return consortium


@pytest.fixture(scope="session")
def consortium(cgs, local_ca, gov_dir) -> Consortium:
    return register_consortium(cgs, local_ca, gov_dir / "members")


@pytest.fixture(scope="session")
def room_evidence(platform_dir, gov_dir):
    """`room_evidence(host_data=..., debug=...)` → URL of an skr sidecar on a mock platform for such a room."""
    started: dict[tuple[bytes, bool], tuple[ManagedProcess, str]] = {}

    def start(*, host_data: bytes = ROOM_HOST_DATA, debug: bool = False) -> str:
        if (host_data, debug) not in started:
            args = ["--port", "0", "--platform", "mock", "--mock-platform-dir", str(platform_dir),
                    "--host-data", host_data.hex(), *(["--debuggable"] if debug else [])]
            started[(host_data, debug)] = start_service(f"skr-{len(started)}", "sidecars.skr", args, gov_dir)
        return started[(host_data, debug)][1]

    yield start
    for proc, _url in started.values():
        proc.stop()


class Subscriber:
    """Records the notices the governance sidecar POSTs (the launcher's role)."""

    def __init__(self):
        self.notices: list[tuple[float, dict[str, Any]]] = []
        self.received = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                import time

                notice = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.notices.append((time.monotonic(), notice))
                outer.received.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gov/stop"


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    sub = Subscriber()
    yield sub
    sub.server.shutdown()


@pytest.fixture
def governance(tmp_path, cgs, local_ca, room_evidence):
    """`governance(contract_id, evidence_url=None, **options)` → base URL of a running governance sidecar."""
    procs = []

    def start(contract_id: str, *, evidence_url: str | None = None, cgs_url: str | None = None,
              poll: float = 0, subscriber_url: str | None = None, token: str | None = None,
              unverifiable_after: float | None = None) -> str:
        args = ["--port", "0", "--cgs-endpoint", cgs_url or cgs.url, "--contract-id", contract_id,
                "--cgs-ca-bundle", str(local_ca.cert_file), "--skr-url", evidence_url or room_evidence(),
                "--consent-poll-interval", str(poll)]
        args += ["--subscriber-url", subscriber_url or "http://127.0.0.1:9/unused"]
        if unverifiable_after is not None:
            args += ["--consent-unverifiable-after", str(unverifiable_after)]
        if token:
            token_file = tmp_path / f"token-{len(procs)}"
            token_file.write_text(token)
            args += ["--sidecar-token-file", str(token_file)]
        proc, url = start_service(f"governance-{len(procs)}", "sidecars.governance", args, tmp_path)
        procs.append(proc)
        return url

    yield start
    for proc in procs:
        proc.stop()
