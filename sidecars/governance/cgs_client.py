"""`CgsRoomClient`: the room's side of CGS. It attests once (evidence from the skr sidecar bound to a fresh
RSA key), then sends every request in the reference's envelope, at the paths the reference's governance
sidecar uses, and unwraps the answers with that key.

Commit before acknowledge: CCF answers a write once it is executed, which an election may still roll back.
Like the reference's sidecar, an audit event is done only when `GET /app/tx?transaction_id=` says the
transaction its answer named is `Committed` (`sidecars.common.ccftx`); until then the caller's step waits,
and if it is not committed the write fails. Releases (secrets, documents, tokens, certificates) are reads
on CGS (its `readonly` endpoints): nothing to wait for, as in the reference."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ..common.ccftx import COMMIT_TIMEOUT_S, wait_committed_async
from ..common.ccfwire import GOV_API_VERSION
from ..common.envelope import Attestation, RoomKey, attested, b64
from ..common.errors import CcrError, RemoteServiceError
from ..common.transports import async_http_transport

log = logging.getLogger("ccr.governance")
#: A container group starts its containers in no particular order (C-ACI, compose): while attesting, a
#: refused connection to skr means "not listening yet" and is tried again for this long.
SKR_START_WAIT_S = 30.0


class CgsRefused(CcrError):
    """CGS answered with an error: its status, code and message are passed on unchanged."""


class CgsRoomClient:
    def __init__(self, cgs_endpoint: str, contract_id: str, *, skr_url: str, ca_bundle: str | None = None,
                 api_path_prefix: str | None = None, timeout: float = 10.0,
                 commit_timeout_s: float = COMMIT_TIMEOUT_S):
        self.contract_id = contract_id
        self.root = cgs_endpoint.rstrip("/")
        self.commit_timeout_s = commit_timeout_s
        prefix = api_path_prefix if api_path_prefix is not None else f"app/contracts/{quote(contract_id)}"
        self.base = cgs_endpoint.rstrip("/") + "/" + prefix.strip("/")
        self.skr_url = skr_url.rstrip("/")
        self._http = httpx.AsyncClient(transport=async_http_transport(ca_bundle), timeout=timeout)
        self._key: RoomKey | None = None
        self._attestation: Attestation | None = None
        self._lock = asyncio.Lock()

    @property
    def attested(self) -> bool:
        return self._attestation is not None

    async def close(self) -> None:
        await self._http.aclose()

    async def attest(self) -> tuple[RoomKey, Attestation]:
        async with self._lock:
            if self._key is None or self._attestation is None:
                key = RoomKey.generate()
                response = await self._evidence(key)
                if response.status_code != 200:
                    raise RemoteServiceError("skr", f"/attest/combined answered {response.status_code}: "
                                                    f"{response.text[:200]}", status=response.status_code)
                evidence = response.json()
                self._attestation = Attestation(evidence["evidence"], evidence["endorsements"],
                                                evidence.get("uvm_endorsements", ""))
                self._key = key
                log.info("attested: room key bound to the SNP report")
            return self._key, self._attestation

    async def _evidence(self, key: RoomKey) -> httpx.Response:
        deadline = time.monotonic() + SKR_START_WAIT_S
        while True:
            try:
                return await self._http.post(f"{self.skr_url}/attest/combined",
                                             json={"runtime_data": b64(key.public_pem)})
            except httpx.ConnectError as exc:
                if time.monotonic() > deadline:
                    raise RemoteServiceError("skr", f"{self.skr_url} unreachable: {exc}") from None
                await asyncio.sleep(0.2)
            except httpx.HTTPError as exc:
                raise RemoteServiceError("skr", f"{self.skr_url} unreachable: {exc}") from None

    async def _send(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            response = await self._http.request(method, f"{self.base}/{path}", json=body)
        except httpx.HTTPError as exc:
            raise RemoteServiceError("CGS", f"{self.base} unreachable: {exc}") from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "RemoteServiceError", f"CGS answered {response.status_code}: {response.text[:200]}"
            raise CgsRefused(message, code=code, http_status=response.status_code)
        return response

    async def read(self, path: str) -> dict[str, Any]:
        """An attested read whose answer is not wrapped (consent checks): the evidence alone, as the reference
        sends it."""
        _key, attestation = await self.attest()
        return (await self._send("POST", path, attested(attestation))).json()

    async def read_wrapped(self, path: str) -> bytes:
        key, attestation = await self.attest()
        response = await self._send("POST", path, key.request(attestation))
        return key.unwrap(response.json()["value"])

    async def write(self, method: str, path: str, data: Any) -> None:
        """A signed write, done once committed."""
        key, attestation = await self.attest()
        response = await self._send(method, path, key.signed_request(attestation, data))
        try:
            await wait_committed_async(self._http, self.root, response, endpoint="/app/tx",
                                       timeout_s=self.commit_timeout_s)
        except httpx.HTTPError as exc:
            raise RemoteServiceError("CGS", f"{self.root}/app/tx unreachable: {exc}") from None

    async def signed_read_wrapped(self, path: str, data: Any) -> bytes:
        """A signed request that CGS answers wrapped to the room's key (a certificate)."""
        key, attestation = await self.attest()
        response = await self._send("POST", path, key.signed_request(attestation, data))
        return key.unwrap(response.json()["value"])

    # -- the operations
    async def consent(self, option: str) -> dict[str, Any]:
        return await self.read(f"runtimeoptions/{quote(option)}/status")

    async def document_consent(self, document_id: str) -> dict[str, Any]:
        """A member document's execution consent (analytics documents: its data owners may revoke it)."""
        return await self.read(f"memberdocuments/{quote(document_id, safe='')}/runtimeoptions/execution/status")

    async def members(self) -> list[dict[str, Any]]:
        """The consortium's members as CCF lists them (public, no attestation needed): each one's id, status,
        certificate and member data, checked for shape and passed on with only those fields."""
        try:
            response = await self._http.get(f"{self.root}/gov/service/members?api-version={GOV_API_VERSION}")
        except httpx.HTTPError as exc:
            raise RemoteServiceError("CGS", f"{self.root} unreachable: {exc}") from None
        if response.status_code != 200:
            raise RemoteServiceError("CGS", f"/gov/service/members answered {response.status_code}",
                                     status=response.status_code)
        try:
            listed = response.json()["value"]
            return [{"memberId": str(m["memberId"]), "certificate": str(m["certificate"]),
                     "status": str(m["status"]), "memberData": dict(m.get("memberData") or {})} for m in listed]
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteServiceError("CGS", f"/gov/service/members: not a member list ({exc})") from None

    async def put_event(self, data: Any, *, event_id: str | None, scope: str | None) -> None:
        query = {k: v for k, v in (("id", event_id), ("scope", scope)) if v}
        await self.write("PUT", "events" + (f"?{urlencode(query)}" if query else ""), data)

    async def spend_privacy_budget(self, run_id: str, query_id: str) -> dict[str, Any]:
        """A private analytics run's spend, recorded by CGS before the run releases anything; the
        acknowledgement comes back wrapped to this room's key (the stand-in's `budget.py`)."""
        return json.loads(await self.signed_read_wrapped("privacybudget/spend", {"runId": run_id, "queryId": query_id}))

    async def secret(self, secret_id: str) -> str:
        return (await self.read_wrapped(f"secrets/{quote(secret_id)}")).decode()

    async def document(self, document_id: str) -> dict[str, Any]:
        return json.loads(await self.read_wrapped(f"memberdocuments/accepted/{quote(document_id)}"))

    async def token(self, *, sub: str, tenant_id: str, aud: str, lifetime_s: int = 3600) -> str:
        now = int(time.time())
        query = urlencode({"sub": sub, "tid": tenant_id, "aud": aud, "iat": now, "nbf": now,
                           "exp": now + lifetime_s, "jti": uuid.uuid4().hex})
        return (await self.read_wrapped(f"oauth/token?{query}")).decode()

    async def endorsed_cert(self, request: dict[str, Any]) -> dict[str, Any]:
        """`{cert}`: the certificate alone, as CGS answers it."""
        return json.loads(await self.signed_read_wrapped("ca/generateEndorsedCert", request))

