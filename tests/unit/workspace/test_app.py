"""The workspace app without any service behind it: the page is served at /, the API's refusals keep their
one shape (unknown paths, bad bodies, bodies too large, an unreachable CGS), and the app cannot be driven by
another site's page (Origin) or reached under another name (Host, DNS rebinding)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sidecars.common.memberauth import MemberIdentity
from sidecars.workspace.app import build_app
from sidecars.workspace.party import Party

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def client(tmp_path) -> TestClient:
    MemberIdentity.create(tmp_path / "me", "me")
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>workspace</title>")
    # port 1 on loopback: nothing listens, so every call to CGS fails fast
    party = Party(cgs_url="https://127.0.0.1:1", ca_bundle=None, identity_dir=tmp_path / "me", mode="certificate")
    party.base_url = BASE
    return TestClient(build_app(party, static), base_url=BASE, raise_server_exceptions=False)


def only_errors(answer) -> list[dict]:
    body = answer.json()
    assert list(body) == ["errors"] and body["errors"]
    assert all(set(p) == {"field", "message"} and "\n" not in p["message"] and "Traceback" not in p["message"]
               for p in body["errors"])
    return body["errors"]


def test_the_page_is_served_at_the_root_and_the_api_beside_it(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>workspace</title>" in page.text
    assert client.get("/api/openapi.json").json()["info"]["title"] == "ccr workspace"
    unknown = client.get("/api/no/such/thing")
    assert unknown.status_code == 404 and only_errors(unknown)[0]["field"] is None


def test_bad_bodies_are_refused_before_anything_is_asked_of_cgs(client):
    answer = client.post("/api/collaborations/c1/consent", json={"enabled": "maybe"})
    assert answer.status_code == 400 and only_errors(answer)[0]["field"] == "enabled"
    answer = client.post("/api/collaborations/c1/queries/q1/vote", json={})
    assert answer.status_code == 400 and only_errors(answer)[0]["field"] == "ballot"
    answer = client.post("/api/collaborations/c1/datasets", content=b"x" * (400 * 1024),
                         headers={"content-type": "application/json"})
    assert answer.status_code == 413 and only_errors(answer)


def test_an_unreachable_cgs_is_one_line(client):
    answer = client.get("/api/collaborations")
    assert answer.status_code >= 500 and "CGS" in only_errors(answer)[0]["message"]


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:9999", "null"])
def test_another_sites_page_cannot_act_for_the_party(client, origin):
    answer = client.post("/api/collaborations/c1/consent", json={"enabled": False}, headers={"origin": origin})
    assert answer.status_code == 403 and only_errors(answer)


def test_the_workspaces_own_page_may_act(client):
    answer = client.post("/api/collaborations/c1/consent", json={"enabled": "x"}, headers={"origin": BASE})
    assert answer.status_code == 400  # past the origin check, refused for its body


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example:8765", "attacker.test:8765"])
def test_a_request_under_another_name_is_refused(client, host):
    answer = client.get("/api/me", headers={"host": host})
    assert answer.status_code == 421 and only_errors(answer)
