"""The run API's caller check: every way to forge, tamper with or replay a member's signed request is
refused (401), a non-member is refused (403), and all of it before the body is parsed."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from fastapi.testclient import TestClient

from sidecars.analytics.auth import MemberDirectory, ReplayGuard, parse_members
from sidecars.analytics.engine import Engine
from sidecars.analytics.service import Analytics, ServiceConfig, build_app
from sidecars.common.errors import Unauthorized
from sidecars.common.governance_client import ConsentStatus
from sidecars.common.memberauth import MemberIdentity

P384_ORDER = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16)


class StubGovernance:
    """Answers the routes the auth path uses; any document lookup means the request got past auth."""

    def __init__(self, members: list[dict]):
        self.member_list = members
        self.members_calls = 0
        self.document_calls = 0
        self.events: list[dict] = []

    def members(self):
        self.members_calls += 1
        return {"value": self.member_list}

    def member_document(self, document_id):
        self.document_calls += 1
        return None

    def document_consent(self, document_id):
        return ConsentStatus("enabled")

    def contract_consent(self):
        return ConsentStatus("enabled")

    def audit(self, event, **_kwargs):
        self.events.append(event)


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    root = tmp_path_factory.mktemp("ids")
    return {n: MemberIdentity.create(root / n, n) for n in ("northwind", "woodgrove", "outsider", "removed")}


def member_entry(identity, status="Active"):
    return {"memberId": identity.member_id, "certificate": identity.cert_pem, "status": status,
            "memberData": {"identifier": identity.name}}


@pytest.fixture
def api(identities, tmp_path):
    gov = StubGovernance([member_entry(identities["northwind"]), member_entry(identities["woodgrove"]),
                          member_entry(identities["removed"], status="Accepted")])
    analytics = Analytics(ServiceConfig("http://unused", tmp_path / "mnt", tmp_path / "scratch"),
                          Engine(tmp_path / "spark"), gov)  # the engine is never started: no run reaches it
    with TestClient(build_app(analytics)) as client:
        yield client, gov
    analytics.close()


def post(client, identity, path="/queries/q1/run", body=b"{}", *, sign_body=None, sign_path=None, now_ms=None,
         header=None):
    auth = header or identity.authorization("POST", sign_path or path, body if sign_body is None else sign_body,
                                            now_ms=now_ms)
    return client.post(path, content=body, headers={"authorization": auth})


def error(response, status, code=None):
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert "\n" not in body["message"]
    if code:
        assert body["code"] == code
    return body["message"]


def test_a_signed_member_request_gets_past_auth(api, identities):
    client, gov = api
    # past auth, the query is looked up (and does not exist): proof the checks let it through
    error(post(client, identities["woodgrove"]), 404, "UnknownQuery")
    assert gov.document_calls == 1


def test_no_header_and_a_foreign_scheme_are_401(api):
    client, gov = api
    error(client.post("/queries/q1/run", content=b"{}"), 401)
    error(client.post("/queries/q1/run", content=b"{}", headers={"authorization": "Bearer abc"}), 401)
    error(client.get("/runs/x"), 401)
    assert gov.document_calls == 0


def test_a_signature_by_another_members_key_is_401(api, identities):
    client, _ = api
    # woodgrove signs, but claims to be northwind
    forged = identities["woodgrove"].authorization("POST", "/queries/q1/run", b"{}")
    forged = re.sub(r"id=[0-9a-f]{64}", f"id={identities['northwind'].member_id}", forged)
    assert "does not verify" in error(post(client, None, header=forged), 401)


def test_a_tampered_body_or_path_is_401(api, identities):
    client, gov = api
    error(post(client, identities["woodgrove"], body=b'{"dryRun": false}', sign_body=b'{"dryRun": true}'), 401)
    error(post(client, identities["woodgrove"], path="/queries/q2/run", sign_path="/queries/q1/run"), 401)
    assert gov.document_calls == 0


def test_a_replayed_request_is_401_even_with_a_malleated_signature(api, identities):
    client, gov = api
    header = identities["woodgrove"].authorization("POST", "/queries/q1/run", b"{}")
    error(post(client, None, header=header), 404)  # first use: past auth
    assert error(post(client, None, header=header), 401, "Replayed")
    # ECDSA's twin signature (r, n - s) verifies too: the replay memory is keyed by what was signed
    prefix, sig = header.rsplit("sig=", 1)
    r, s = decode_dss_signature(base64.b64decode(sig))
    twin = prefix + "sig=" + base64.b64encode(encode_dss_signature(r, P384_ORDER - s)).decode()
    assert error(post(client, None, header=twin), 401, "Replayed")
    assert gov.document_calls == 1


def test_a_stale_or_future_timestamp_is_401(api, identities):
    client, _ = api
    now = int(time.time() * 1000)
    assert "window" in error(post(client, identities["woodgrove"], now_ms=now - 61_000), 401, "TimestampOutOfWindow")
    error(post(client, identities["woodgrove"], now_ms=now + 61_000), 401, "TimestampOutOfWindow")


def test_a_non_member_or_inactive_member_is_403_before_its_body_is_parsed(api, identities):
    client, gov = api
    # a body that is not JSON at all: the answer is about the caller, not the body
    assert "not an active member" in error(post(client, identities["outsider"], body=b"\x00not json"), 403,
                                           "NotAMember")
    error(post(client, identities["removed"], body=b"{"), 403, "NotAMember")
    error(client.get("/queries/q1/runs", headers={"authorization": identities["outsider"].authorization(
        "GET", "/queries/q1/runs", b"")}), 403)
    assert gov.document_calls == 0


def test_a_member_s_bad_body_is_400_only_after_auth(api, identities):
    client, _ = api
    assert "not JSON" in error(post(client, identities["woodgrove"], body=b"\x00not json"), 400)
    error(post(client, identities["woodgrove"], body=b"[]"), 400)


def test_an_oversized_body_is_refused_unread(api, identities):
    client, _ = api
    error(post(client, identities["woodgrove"], body=b"{" + b" " * 10_000 + b"}"), 413)


def test_unknown_ids_refresh_the_member_list_at_most_every_few_seconds(identities):
    calls = []
    now = [0.0]

    def fetch():
        calls.append(1)
        return {"value": [member_entry(identities["northwind"])]}

    directory = MemberDirectory(fetch, refresh_interval_s=5, clock=lambda: now[0])
    assert directory.member("0" * 64) is None
    for _ in range(50):
        assert directory.member("1" * 64) is None
    assert len(calls) == 1
    now[0] = 6
    assert directory.member(identities["northwind"].member_id).name == "northwind"
    assert directory.member("2" * 64) is None and len(calls) == 2


def test_a_member_entry_whose_certificate_is_not_its_id_is_ignored(identities):
    entry = member_entry(identities["northwind"])
    entry["certificate"] = identities["outsider"].cert_pem  # a swapped certificate must not vouch for the id
    assert parse_members({"value": [entry, "junk", {"status": "Active"}]}) == {}
    assert parse_members({"value": "not a list"}) == {} and parse_members(json.loads("[]")) == {}


def test_the_replay_guard_refuses_requests_signed_before_it_started():
    guard = ReplayGuard(60, clock=lambda: 1000.0)
    with pytest.raises(Unauthorized, match="before the app"):
        guard.check_time(999_000)


def test_a_member_removed_from_the_contract_loses_access_once_the_list_ages(identities):
    listed = [member_entry(identities["northwind"]), member_entry(identities["woodgrove"])]
    now = [0.0]
    directory = MemberDirectory(lambda: {"value": list(listed)}, refresh_interval_s=5, max_age_s=30,
                                clock=lambda: now[0])
    woodgrove = identities["woodgrove"].member_id
    assert directory.member(woodgrove) is not None
    listed.pop()  # the consortium removes woodgrove
    now[0] = 29
    assert directory.member(woodgrove) is not None  # within the list's age
    now[0] = 31
    assert directory.member(woodgrove) is None
