"""Hostile requests the fuzz does not make by itself, each a hole that was open: every one of these answered 500,
answered before authenticating, or stored what it should have refused."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator

import httpx
import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization

from sidecars.common.bodylimit import MIB
from sidecars.emulators.cgs.app import MAX_BODY_BYTES as CGS_MAX_BODY_BYTES
from sidecars.emulators.keyvault.secrets import MAX_SECRET_BYTES

from .services import CONTRACT, Fixtures, Service

pytestmark = pytest.mark.anyio
DEEP_JSON = b"[" * 20_000 + b"]" * 20_000  # 40 KB: under every body limit, far deeper than the parsers go


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def call(app, method: str, path: str, *, content=None, headers=None, params=None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://service.test") as client:
        return await client.request(method, path, content=content, headers=headers, params=params)


def assert_refused(service: Service, answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text[:300]
    body = answer.json()
    jsonschema.validate(body, service.error_schema)
    return body


def signed(fixtures: Fixtures, method: str, target: str, body: bytes) -> dict[str, str]:
    return {"authorization": fixtures.member.authorization(method, target, body)}


# -- authentication comes first ------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [
    "CCR-Member id=" + "ab" * 32 + ", ts=1, sig=abc",  # base64 of the wrong length: binascii.Error, was a 500
    "CCR-Member id=" + "ab" * 32 + ", ts=1, sig=a===",
])
async def test_cgs_malformed_member_authorization_is_401_not_500(all_services, header):
    answer = await call(all_services["cgs"].app, "GET", "/app/contracts", headers={"authorization": header})
    assert assert_refused(all_services["cgs"], answer, 401)["error"]["code"] == "Unauthorized"


@pytest.mark.parametrize("body", [b"{not json", b'{"value": 12}', DEEP_JSON])
async def test_keyvault_refuses_a_caller_without_a_token_before_reading_the_body(all_services, body):
    answer = await call(all_services["keyvault"].app, "PUT", "/secrets/s2", content=body,
                        params={"api-version": "7.4"}, headers={"content-type": "application/json"})
    assert_refused(all_services["keyvault"], answer, 401)
    assert answer.headers["www-authenticate"].startswith('Bearer authorization="')


async def test_keyvault_reads_a_malformed_body_once_the_caller_is_authenticated(all_services):
    answer = await call(all_services["keyvault"].authenticated, "PUT", "/secrets/s2", content=b"{not json",
                        headers={"content-type": "application/json"})
    assert assert_refused(all_services["keyvault"], answer, 400)["error"]["code"] == "BadParameter"


@pytest.mark.parametrize("token", ["a.b.c", "abcde.e30.c2ln", "e30.e30"])
async def test_keyvault_answers_a_malformed_bearer_token_with_the_challenge(all_services, token):
    answer = await call(all_services["keyvault"].app, "GET", "/secrets", params={"api-version": "7.4"},
                        headers={"authorization": f"Bearer {token}"})
    assert_refused(all_services["keyvault"], answer, 401)
    assert answer.headers["www-authenticate"].startswith('Bearer authorization="')


async def test_keyvault_bearer_token_nested_too_deep_is_a_challenge_not_500(all_services):
    header = base64.urlsafe_b64encode(b"[" * 5000).rstrip(b"=").decode()
    answer = await call(all_services["keyvault"].app, "GET", "/secrets", params={"api-version": "7.4"},
                        headers={"authorization": f"Bearer {header}.e30.c2ln"})
    assert_refused(all_services["keyvault"], answer, 401)


async def test_cgs_events_query_is_not_parsed_before_the_member_is_authenticated(all_services):
    answer = await call(all_services["cgs"].app, "GET", f"/app/contracts/{CONTRACT}/events",
                        params={"from_seqno": "not-a-number"})
    assert_refused(all_services["cgs"], answer, 401)


# -- bodies are bounded ---------------------------------------------------------------------------------------
async def test_a_50_mb_contract_is_refused_413_and_nothing_is_stored(all_services, fixtures):
    cgs = all_services["cgs"]
    store = cgs.app.state.cgs.store
    saved = store.path.read_bytes()
    target = "/app/contracts/big"
    body = json.dumps({"data": "x" * (50 * MIB)}).encode()
    answer = await call(cgs.app, "PUT", target, content=body, headers=signed(fixtures, "PUT", target, body))
    assert assert_refused(cgs, answer, 413)["error"]["code"] == "PayloadTooLarge"
    assert "big" not in store.state.contracts and store.path.read_bytes() == saved


async def test_a_streamed_body_without_content_length_is_counted_and_refused(all_services, fixtures):
    cgs = all_services["cgs"]
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(800):  # 50 MiB in 64 KiB chunks, unless the reader stops early
            sent += 64 * 1024
            yield b"x" * (64 * 1024)

    target = "/app/contracts/streamed"
    headers = signed(fixtures, "PUT", target, b"")  # the limit answers before the signature is checked
    answer = await call(cgs.app, "PUT", target, content=chunks(), headers=headers)
    assert "content-length" not in answer.request.headers
    assert_refused(cgs, answer, 413)
    assert sent <= CGS_MAX_BODY_BYTES + 64 * 1024, "the service read on past its limit"
    assert "streamed" not in cgs.app.state.cgs.store.state.contracts


@pytest.mark.parametrize("name, method, path", [
    ("cgs", "PUT", "/app/contracts/c9"), ("keyvault", "PUT", "/secrets/s9"), ("maa", "POST", "/attest/SevSnpVm"),
    ("entra", "POST", "/tenant/oauth2/v2.0/token"), ("skr", "POST", "/key/release"), ("governance", "PUT", "/events"),
    ("identity", "POST", "/msi/token"), ("telemetry", "POST", "/v1/traces"), ("launcher", "POST", "/consent/revoked"),
])
async def test_every_service_answers_an_oversize_body_413_in_its_own_shape(all_services, name, method, path):
    service = all_services[name]
    answer = await call(service.app, method, path, content=b"{" + b" " * (17 * MIB) + b"}",
                        headers={"content-type": "application/json"})
    assert_refused(service, answer, 413)


async def test_keyvault_refuses_a_secret_over_25_kb(all_services):
    kv = all_services["keyvault"]
    answer = await call(kv.authenticated, "PUT", "/secrets/too-big", content=json.dumps(
        {"value": "x" * (MAX_SECRET_BYTES + 1)}).encode(), headers={"content-type": "application/json"})
    assert "25 KB" in assert_refused(kv, answer, 400)["error"]["message"]
    answer = await call(kv.authenticated, "PUT", "/secrets/just-fits", content=json.dumps(
        {"value": "x" * MAX_SECRET_BYTES}).encode(), headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/keys/k9/create", {"kty": "RSA", "public_exponent": 4}),  # cryptography's ValueError was a 500
    ("PUT", "/keys/k9", {"key": {"kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAA", "key_ops": [1, 2]}}),
    ("POST", "/keys/k9/create", {"kty": "RSA", "attributes": {"nbf": 10**30}}),
    ("PATCH", "/keys/k1/", {"attributes": {"exp": -1}}),
    ("PUT", "/secrets/s9", {"value": "v", "attributes": {"exp": 10**30}}),
])
async def test_keyvault_refuses_key_parameters_it_cannot_hold(all_services, method, path, body):
    kv = all_services["keyvault"]
    answer = await call(kv.authenticated, method, path, content=json.dumps(body).encode(),
                        headers={"content-type": "application/json"})
    assert assert_refused(kv, answer, 400)["error"]["code"] == "BadParameter"


async def test_a_gzip_bomb_is_refused_without_inflating_it(all_services):
    telemetry = all_services["telemetry"]
    bomb = gzip.compress(bytes(64 * MIB))  # 64 KB that inflate to 64 MiB
    assert len(bomb) < 100_000
    answer = await call(telemetry.app, "POST", "/v1/traces", content=bomb,
                        headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"})
    assert_refused(telemetry, answer, 413)


# -- malformed bodies are 400, not 500 ------------------------------------------------------------------------
async def test_deeply_nested_json_is_400_everywhere_it_is_read(all_services, fixtures):
    cgs = all_services["cgs"]
    target = "/gov/members/proposals:create"
    answer = await call(cgs.app, "POST", target, content=DEEP_JSON, headers=signed(fixtures, "POST", target, DEEP_JSON))
    assert_refused(cgs, answer, 400)
    report = base64.urlsafe_b64encode(b"[" * 5000).decode()
    answer = await call(all_services["maa"].app, "POST", "/attest/SevSnpVm", params={"api-version": "2022-08-01"},
                        content=json.dumps({"report": report, "runtimeData": {"data": "", "dataType": "JSON"}}))
    assert_refused(all_services["maa"], answer, 400)
    answer = await call(all_services["governance"].app, "PUT", "/events", content=DEEP_JSON)
    assert_refused(all_services["governance"], answer, 400)
    answer = await call(all_services["telemetry"].app, "POST", "/v1/logs", content=DEEP_JSON,
                        headers={"content-type": "application/json"})
    assert_refused(all_services["telemetry"], answer, 400)


@pytest.mark.parametrize("body", [b"null", b"[]", b'"spans"', b'{"resourceSpans": 7}'])
async def test_otlp_json_of_the_wrong_shape_is_400(all_services, body):
    answer = await call(all_services["telemetry"].app, "POST", "/v1/traces", content=body,
                        headers={"content-type": "application/json"})
    assert_refused(all_services["telemetry"], answer, 400)


@pytest.mark.parametrize("time", [-1, 2**64, "0001-01-01T00:00:00Z"])
async def test_app_log_times_a_record_cannot_hold_are_400(all_services, time):
    line = json.dumps({"time": time, "stream": "stdout", "line": "x"}).encode()
    answer = await call(all_services["telemetry"].app, "POST", "/logs/app", content=line)
    assert_refused(all_services["telemetry"], answer, 400)


@pytest.mark.parametrize("actions", [
    "set_contract", [7], [{"name": "set_contract", "args": {"contractId": ["c1"]}}],
    [{"name": "set_clean_room_policy", "args": {"contractId": CONTRACT, "claims": {"x-ms-sevsnpvm-hostdata": []}}}],
])
async def test_malformed_proposals_are_400_and_not_stored(all_services, fixtures, actions):
    cgs = all_services["cgs"]
    proposals = dict(cgs.app.state.cgs.store.state.proposals)
    target = "/gov/members/proposals:create"
    body = json.dumps({"actions": actions}).encode()
    answer = await call(cgs.app, "POST", target, content=body, headers=signed(fixtures, "POST", target, body))
    assert_refused(cgs, answer, 400)
    assert cgs.app.state.cgs.store.state.proposals == proposals


async def test_a_document_for_a_contract_id_that_is_not_a_string_is_400(all_services, fixtures):
    cgs = all_services["cgs"]
    target = "/app/memberdocuments/d7"
    body = json.dumps({"contractId": [CONTRACT], "data": {}}).encode()
    answer = await call(cgs.app, "PUT", target, content=body, headers=signed(fixtures, "PUT", target, body))
    assert assert_refused(cgs, answer, 400)["error"]["code"] == "ContractIdMissing"


@pytest.mark.parametrize("query", ["iat=soon", "exp=1e99", "nbf=-5"])
async def test_cgs_token_times_that_are_not_times_are_400(all_services, query):
    answer = await call(all_services["cgs"].authenticated, "POST",
                        f"/app/contracts/{CONTRACT}/oauth/token?sub=s&tid=t&aud=a&{query}", content=b"{}")
    assert_refused(all_services["cgs"], answer, 400)


@pytest.mark.parametrize("change", [
    {"subjectAlternateNames": ["ip:not-an-address"]}, {"subjectAlternateNames": ["dns:bücher.example"]},
    {"subjectName": ["CN=x"]}, {"subjectName": "CN=" + "x" * 200}, {"validityPeriodDays": "ten"},
    {"validityPeriodDays": 10**9}, {"validityPeriodDays": -3}, {"subjectAlternateNames": "dns:x"},
])
async def test_an_endorsement_a_certificate_cannot_hold_is_400(all_services, fixtures, change):
    public_pem = fixtures.member.cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    body = json.dumps({"publicKey": public_pem, **change}).encode()
    answer = await call(all_services["cgs"].authenticated, "POST", f"/app/contracts/{CONTRACT}/ca/generateEndorsedCert",
                        content=body)
    assert_refused(all_services["cgs"], answer, 400)


# -- every refusal in the service's own shape -----------------------------------------------------------------
@pytest.mark.parametrize("name, get_only", [
    ("cgs", "/node/ready/app"), ("keyvault", "/secrets"), ("maa", "/certs"), ("entra", "/t/discovery/keys"),
    ("skr", "/status"), ("governance", "/status"), ("identity", "/status"), ("telemetry", "/status"),
    ("launcher", "/status"),
])
async def test_unknown_paths_and_methods_answer_in_the_services_shape(all_services, name, get_only):
    service = all_services[name]
    assert_refused(service, await call(service.app, "GET", "/no/such/path"), 404)
    assert_refused(service, await call(service.app, "DELETE", get_only), 405)
