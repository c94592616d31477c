"""Containers of a group start in no order: governance attesting before skr listens waits for it, briefly."""

import asyncio

import httpx
import pytest

from sidecars.common.errors import RemoteServiceError
from sidecars.governance import cgs_client
from sidecars.governance.cgs_client import CgsRoomClient

EVIDENCE = {"evidence": "ZXZpZGVuY2U=", "endorsements": "ZW5kb3JzZW1lbnRz", "uvm_endorsements": ""}


def client_with(handler) -> CgsRoomClient:
    client = CgsRoomClient("https://cgs.example", "c1", skr_url="http://127.0.0.1:8284")
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return client


def test_skr_not_listening_yet_is_waited_for():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=EVIDENCE)

    client = client_with(handler)
    _key, attestation = asyncio.run(client.attest())
    assert calls == ["/attest/combined"] * 3 and attestation.evidence == EVIDENCE["evidence"]
    assert client.attested


def test_skr_that_never_listens_fails_naming_it(monkeypatch):
    monkeypatch.setattr(cgs_client, "SKR_START_WAIT_S", 0.3)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = client_with(handler)
    with pytest.raises(RemoteServiceError, match=r"skr: http://127.0.0.1:8284 unreachable: connection refused"):
        asyncio.run(client.attest())
    assert not client.attested


def test_a_sidecar_starting_with_the_room_waits_for_governance_to_listen():
    from sidecars.common.governance_client import GovernanceClient

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"value": "s3cret"})

    waiting = GovernanceClient("http://127.0.0.1:8300", start_wait_s=5.0)
    waiting._http = httpx.Client(base_url="http://127.0.0.1:8300", transport=httpx.MockTransport(handler))
    assert waiting.secret("db-config") == "s3cret" and len(calls) == 3
    # Without a start window, as on every call once the room runs, it fails closed at once.
    calls.clear()
    at_once = GovernanceClient("http://127.0.0.1:8300")
    at_once._http = httpx.Client(base_url="http://127.0.0.1:8300", transport=httpx.MockTransport(handler))
    with pytest.raises(RemoteServiceError, match="governance: http://127.0.0.1:8300 unreachable"):
        at_once.secret("db-config")
    assert len(calls) == 1
