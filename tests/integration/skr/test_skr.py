"""The skr sidecar end to end against the stand-ins: the API of Microsoft's SKR sidecar, a key released
only to the room its policy names, and refusals that name the reason without leaking key material."""

from __future__ import annotations

import base64
import hashlib
import json
import socket

import httpx
import pytest

from sidecars.attestation import SnpReport
from sidecars.attestation.maa_client import verify_token
from sidecars.common.jose import b64url_encode

from .conftest import HOST_DATA, REPO, start_skr


def post(skr, path: str, body) -> httpx.Response:
    return httpx.post(f"{skr.url}{path}", json=body, timeout=60)


def release(skr, room, kid: str) -> httpx.Response:
    return post(skr, "/key/release", {"maa_endpoint": room.endpoints["maa_endpoint"],
                                      "akv_endpoint": room.endpoints["keyvault_url"], "kid": kid})


def test_status(skr):
    # Microsoft's shape, plus the platform kind: a room on the stand-ins' mock says so
    assert httpx.get(f"{skr.url}/status").json() == {"message": "STATUS OK", "platform": "mock"}


def test_rsa_kek_released_as_private_jwk_matching_the_vault_key(skr, room):
    answer = release(skr, room, room.rsa_kek)
    assert answer.status_code == 200, answer.text
    jwk = json.loads(answer.json()["key"])
    assert jwk["kty"] == "RSA" and {"d", "p", "q"} <= set(jwk)
    assert base64.urlsafe_b64decode(jwk["n"] + "==") == room.keys.get_key(room.rsa_kek).key.n


def test_oct_key_released_as_raw_k(skr, room):
    answer = release(skr, room, room.oct_kek)
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.json()["key"]) == {"kty": "oct", "k": b64url_encode(room.oct_material)}


def test_full_key_identifier_and_bare_vault_host_are_accepted(skr, room):
    kid = room.keys.get_key(room.oct_kek).id
    answer = post(skr, "/key/release", {"maa_endpoint": room.endpoints["maa_endpoint"].removeprefix("https://"),
                                        "akv_endpoint": room.endpoints["keyvault_url"].removeprefix("https://"),
                                        "kid": kid})
    assert answer.status_code == 200, answer.text


def _assert_refused_without_material(answer, status, words, room, *logs):
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"} and words in answer.json()["error"]
    secret_forms = (b64url_encode(room.oct_material), room.oct_material.hex())
    for text in (answer.text, *logs):
        assert not any(form in text for form in secret_forms)


def test_other_host_data_is_refused_naming_the_claim(skr_other_policy, room):
    for kid in (room.oct_kek, room.rsa_kek):
        answer = release(skr_other_policy, room, kid)
        _assert_refused_without_material(answer, 403, "x-ms-sevsnpvm-hostdata", room, skr_other_policy.log(),
                                         (room.run_dir / "logs" / "keyvault.log").read_text())


def test_debuggable_room_is_refused(skr_debuggable, room):
    answer = release(skr_debuggable, room, room.oct_kek)
    _assert_refused_without_material(answer, 403, "x-ms-sevsnpvm-is-debuggable", room, skr_debuggable.log())


def test_report_from_an_unknown_chain_is_refused_by_maa(skr_unknown_chain, room):
    answer = release(skr_unknown_chain, room, room.oct_kek)
    _assert_refused_without_material(answer, 403, "MAA", room, skr_unknown_chain.log())
    maa = post(skr_unknown_chain, "/attest/maa", {"maa_endpoint": room.endpoints["maa_endpoint"],
                                                  "runtime_data": base64.b64encode(b"x").decode()})
    assert maa.status_code == 403 and "attestation failed" in maa.json()["error"]


def test_wrong_kid_is_404(skr, room):
    for kid in ("no-such-key", f"{room.oct_kek}/{'0' * 32}"):
        answer = release(skr, room, kid)
        assert answer.status_code == 404, answer.text
        assert "not found" in answer.json()["error"]


@pytest.mark.parametrize("path, body, field", [
    ("/key/release", {"maa_endpoint": "https://m", "akv_endpoint": "https://v"}, "kid"),
    ("/key/release", {"maa_endpoint": "https://m", "akv_endpoint": "http://v", "kid": "k"}, "akv_endpoint"),
    ("/key/release", {"maa_endpoint": "https://m", "akv_endpoint": "https://v", "kid": "a/b/c"}, "kid"),
    ("/attest/raw", {}, "runtime_data"),
    ("/attest/raw", {"runtime_data": "%%%"}, "runtime_data"),
    ("/attest/maa", {"runtime_data": "eA=="}, "maa_endpoint"),
    ("/attest/combined", [], "body"),
])
def test_malformed_requests_are_400_naming_the_field(skr, path, body, field):
    answer = post(skr, path, body)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"]


def test_attest_raw_binds_the_runtime_data(skr):
    runtime = b"nonce-from-a-relying-party"
    answer = post(skr, "/attest/raw", {"runtime_data": base64.b64encode(runtime).decode()})
    report = SnpReport.parse(bytes.fromhex(answer.json()["report"]))
    assert report.report_data == hashlib.sha256(runtime).digest() + bytes(32)
    assert report.host_data.hex() == HOST_DATA


def test_attest_combined_has_the_sidecar_fields(skr):
    answer = post(skr, "/attest/combined", {"runtime_data": base64.b64encode(b"k").decode()}).json()
    assert set(answer) == {"evidence", "endorsements", "uvm_endorsements", "endorsed_tcb"}
    assert len(base64.b64decode(answer["evidence"])) == 1184
    assert b"BEGIN CERTIFICATE" in base64.b64decode(answer["endorsements"])
    assert len(answer["endorsed_tcb"]) == 16


def test_attest_maa_token_carries_the_room_claims(skr, room):
    runtime = json.dumps({"keys": []}).encode()
    answer = post(skr, "/attest/maa", {"maa_endpoint": room.endpoints["maa_endpoint"],
                                       "runtime_data": base64.b64encode(runtime).decode()})
    assert answer.status_code == 200, answer.text
    claims = verify_token(answer.json()["token"], room.endpoints["maa_endpoint"], verify=room.endpoints["ca_bundle"])
    assert claims["x-ms-sevsnpvm-hostdata"] == HOST_DATA and claims["x-ms-sevsnpvm-is-debuggable"] is False
    assert claims["x-ms-compliance-status"] == "ccr-mock-uvm"  # a room on the mock says so in its claims


def test_access_token_in_the_request_is_used(skr, room):
    from sidecars.common.devtokens import DevTokenCredential

    good = DevTokenCredential.from_dir(room.endpoints["dev_tokens_dir"], subject="app").get_token(
        "https://vault.azure.net/.default").token
    body = {"maa_endpoint": room.endpoints["maa_endpoint"], "akv_endpoint": room.endpoints["keyvault_url"],
            "kid": room.oct_kek}
    assert post(skr, "/key/release", {**body, "access_token": good}).status_code == 200
    refused = post(skr, "/key/release", {**body, "access_token": good[:-8] + "AAAAAAAA"})
    assert refused.status_code == 403 and "(401)" in refused.json()["error"]


@pytest.fixture(scope="module")
def skr_in_room(room):
    """skr as a room starts it: with the spec, so it contacts only the MAA and vaults the spec names."""
    sidecar = start_skr(room, "skr-room", "--host-data", HOST_DATA, "--spec",
                        str(REPO / "examples/cleanroomhello-job/spec.yaml"))
    yield sidecar
    sidecar.process.stop()


@pytest.fixture
def elsewhere():
    """A listener standing for a server outside the contract: the test checks nobody connected to it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)

        def connections() -> int:
            count = 0
            while True:
                try:
                    server.accept()[0].close()
                except BlockingIOError:
                    return count
                count += 1

        yield f"https://127.0.0.1:{server.getsockname()[1]}", connections


def test_a_room_skr_releases_from_the_contracts_vault(skr_in_room, room):
    answer = release(skr_in_room, room, room.oct_kek)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("field", ["akv_endpoint", "maa_endpoint"])
def test_a_room_skr_goes_nowhere_the_contract_does_not_name(skr_in_room, room, elsewhere, field):
    # The app could otherwise carry data out in a host name or path, with the room's MAA token attached.
    origin, connections = elsewhere
    body = {"maa_endpoint": room.endpoints["maa_endpoint"], "akv_endpoint": room.endpoints["keyvault_url"],
            "kid": room.oct_kek}
    body[field] = origin
    answer = post(skr_in_room, "/key/release", body)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"].startswith(f"{field}: {origin} is not")
    maa = post(skr_in_room, "/attest/maa", {"maa_endpoint": origin, "runtime_data": "AAAA"})
    assert maa.status_code == 403 and "not an attestation service of this room's contract" in maa.json()["error"]
    assert connections() == 0
