"""Shared by the workspace tests: a CGS stand-in that verifies invitees' ID tokens (--ca-bundle), the Entra
stand-in with people who can sign in, and workspaces (the real app, in process) acting for a party."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi.testclient import TestClient

from sidecars.emulators.entra import LOCAL_TENANT_ID
from sidecars.governance.member_client import CgsMemberClient
from sidecars.workspace.app import build_app
from sidecars.workspace.attestation import RoomEvidence
from sidecars.workspace.party import EntraSettings, Party

from .conftest import Cgs, start_service

WORKSPACE_URL = "http://127.0.0.1:8765"
PEOPLE = {"bo@woodgrove.example": "bo's password", "mallory@evil.example": "mallory's password"}


def start_identity_cgs(run_dir: Path, tls, platform_dir: Path, ca_file: Path) -> Cgs:
    state = run_dir / "cgs-state"
    args = ["--cert", tls.cert_file, "--key", tls.key_file, "--state-dir", str(state),
            "--trust-mock-platform", str(platform_dir), "--ca-bundle", str(ca_file)]
    proc, url = start_service("cgs", "sidecars.emulators.cgs", args, run_dir)
    return Cgs(url, state, proc, run_dir, args)


def start_entra(run_dir: Path, tls):
    users = [arg for email, password in PEOPLE.items() for arg in ("--user", f"{email}:{password}")]
    return start_service("entra", "sidecars.emulators.entra", [
        "--cert", tls.cert_file, "--key", tls.key_file, "--state-dir", str(run_dir / "entra-state"), *users], run_dir)


@dataclass
class Workspace:
    party: Party
    http: TestClient

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, json=None, **kwargs) -> httpx.Response:
        return self.http.post(path, json=json, **kwargs)

    def ok(self, method: str, path: str, json=None, status: int = 200) -> dict:
        answer = self.http.request(method, path, json=json)
        assert answer.status_code == status, answer.text
        return answer.json()


def workspace(cgs_url: str, ca_file: Path, identity_dir: Path, *, entra_url: str | None = None,
              evidence: RoomEvidence | None = None) -> Workspace:
    entra = EntraSettings(f"{entra_url}/{LOCAL_TENANT_ID}", "ccr-workspace") if entra_url else None
    party = Party(cgs_url=cgs_url, ca_bundle=str(ca_file), identity_dir=identity_dir,
                  mode="entra" if entra else "certificate", entra=entra, room_evidence=evidence)
    party.base_url = WORKSPACE_URL
    return Workspace(party, TestClient(build_app(party), base_url=WORKSPACE_URL, follow_redirects=False))


def sign_in(ws: Workspace, ca_file: Path, email: str, password: str) -> httpx.Response:
    """The browser's part of the sign-in: follow the workspace to the authority, post its form, come back."""
    start = ws.get("/api/signin")
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_file), follow_redirects=False) as browser:
        assert browser.get(authorize).status_code == 200
        posted = browser.post(authorize.split("?", 1)[0], data={**params, "login": email, "password": password})
    assert posted.status_code == 302, posted.text
    back = urlsplit(posted.headers["location"])
    assert f"{back.scheme}://{back.netloc}" == WORKSPACE_URL
    return ws.get(f"{back.path}?{back.query}")


def member_client(cgs_url: str, ca_file: Path, identity) -> CgsMemberClient:
    return CgsMemberClient(cgs_url, identity, ca_bundle=str(ca_file))
