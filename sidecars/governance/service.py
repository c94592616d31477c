"""The governance sidecar's local API, with the Azure clean room's paths and shapes:

- `POST /consentcheck/{execution,logging,telemetry}` → `{status, reason:{code,message}}`
- `PUT /events?id=&scope=` (any JSON) → 204 once CGS committed the write (its transaction id `Committed`)
- `POST /secrets/{id}` → `{value}`; `POST /documents/{id}` (or `/memberdocuments/{id}`) → the accepted document
- `POST /memberdocuments/{id}/consentcheck/execution` → `{status, reason:{code,message}}` of that document's
  execution consent (an analytics dataset or query: its data owners may revoke it)
- `POST /privacybudget/spend` `{runId, queryId}` → CGS's acknowledgement of a private analytics run's ε spend
  (409 `PrivacyBudgetExhausted` naming the dataset and what is left)
- `GET /members` → `{value: [{memberId, certificate, status, memberData}]}`, the consortium's members (the
  analytics app verifies members' signed requests with their certificates)
- `POST /oauth/token?sub=&tenantId=&aud=` → `{value: JWT}` (the federated client assertion; `sub` defaults to
  the contract id, the app's subject; any other, the sidecars' `sidecars.common.roomsubjects` included, only
  with the sidecar token, and a refusal is audited)
- `POST /ca/generateEndorsedCert` `{publicKey, subjectName, subjectAlternateNames, validityPeriodDays}` →
  `{cert}` (subjects reserved for the sidecars, `sidecars.common.roomcerts`, only with the sidecar token)
- errors `{error:{code,message}}`

While the room runs it polls execution consent; when a member revokes it, it audits the revocation and
POSTs a notice to the subscriber (the launcher), which stops the app. Audit scopes: with a sidecar token
(`--sidecar-token-file`, a file only the sidecars can read), callers presenting it choose their scope and
anyone else, the app included, writes under scope `app`, so the app can audit its own steps but cannot
forge a sidecar's record. Without a token every caller's scope is taken as given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ..common.bodies import json_value
from ..common.bodylimit import KIB
from ..common.errors import BadRequest, CcrError, Forbidden, NotFound
from ..common.http import create_app
from ..common.roomcerts import reserved_for_sidecars
from ..common.roomsubjects import MAX_SUBJECT_LENGTH
from ..common.transports import async_http_transport
from .cgs_client import CgsRoomClient

log = logging.getLogger("ccr.governance")
OPTIONS = ("execution", "logging", "telemetry")
APP_SCOPE = "app"
SIDECAR_SCOPE = "governance"
# An event goes to CGS base64-encoded (4/3) in an envelope with ~30 KB of evidence: 512 KiB stays well inside
# CGS's 1 MiB limit, so an event this sidecar accepts is one CGS accepts.
MAX_BODY_BYTES = 512 * KIB


@dataclass
class GovernanceConfig:
    contract_id: str
    consent_poll_interval_s: float = 5.0
    consent_unverifiable_after_s: float = 60.0
    subscriber_url: str | None = None
    sidecar_token: str | None = None
    token_lifetime_s: int = 3600
    #: secrets only the sidecars may read (with the sidecar token): a store's credentials (an S3 key pair),
    #: which would let the app reach the bucket around its volume's encryption, manifest and prefix
    sidecar_only_secrets: frozenset[str] = frozenset()


class ConsentWatcher:
    """Polls execution consent and reports the first revocation after consent was seen enabled. Consent
    that cannot be confirmed for `consent_unverifiable_after_s` (CGS unreachable or refusing) counts as
    revoked: the room fails closed."""

    def __init__(self, cgs: CgsRoomClient, config: GovernanceConfig,
                 audit: Callable[[dict[str, Any]], Any]):
        self.cgs, self.config, self.audit = cgs, config, audit
        self.last_status: str | None = None
        self.revoked_at: float | None = None
        self.last_confirmed = time.monotonic()
        self._http = httpx.AsyncClient(transport=async_http_transport(), timeout=5.0)

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # noqa: BLE001 - a failed poll must not end the watch
                log.warning("consent poll failed: %s", exc)
                unconfirmed = time.monotonic() - self.last_confirmed
                if self.last_status == "enabled" and unconfirmed > self.config.consent_unverifiable_after_s:
                    await self.observe({"status": "disabled", "reason": {
                        "code": "ConsentUnverifiable",
                        "message": f"execution consent could not be confirmed for {unconfirmed:.0f} s: {exc}"}})
            await asyncio.sleep(self.config.consent_poll_interval_s)

    async def poll_once(self) -> None:
        result = await self.cgs.consent("execution")
        await self.observe(result)

    async def observe(self, result: dict[str, Any]) -> None:
        status = result.get("status")
        if status == "enabled":
            self.last_confirmed = time.monotonic()
        previous, self.last_status = self.last_status, status
        if previous == "enabled" and status != "enabled":
            self.revoked_at = time.time()
            reason = result.get("reason") or {}
            log.warning("execution consent revoked: %s", reason.get("message", ""))
            notice = {"event": "execution-consent-revoked", "contractId": self.config.contract_id,
                      "reason": reason, "detectedAt": int(self.revoked_at * 1000)}
            notified = await self._notify(notice)
            try:
                await self.audit({**notice, "subscriberNotified": notified})
            except CcrError as exc:
                log.error("cannot audit the revocation: %s", exc)

    async def _notify(self, notice: dict[str, Any]) -> bool:
        if not self.config.subscriber_url:
            return False
        try:
            response = await self._http.post(self.config.subscriber_url, json=notice)
            return response.status_code < 300
        except httpx.HTTPError as exc:
            log.error("cannot notify %s of the revocation: %s", self.config.subscriber_url, exc)
            return False

    async def close(self) -> None:
        await self._http.aclose()


def build_app(cgs: CgsRoomClient, config: GovernanceConfig) -> FastAPI:
    async def own_audit(event: dict[str, Any]) -> None:
        await cgs.put_event(event, event_id=config.contract_id, scope=SIDECAR_SCOPE)

    watcher = ConsentWatcher(cgs, config, own_audit)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        task = asyncio.create_task(watcher.run()) if config.consent_poll_interval_s > 0 else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await watcher.close()
            await cgs.close()

    app = create_app("governance sidecar", max_body_bytes=MAX_BODY_BYTES, lifespan=lifespan)

    def privileged(request: Request) -> bool:
        if not config.sidecar_token:
            return True
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(presented.encode(), config.sidecar_token.encode())

    @app.get("/status")
    async def status():
        return {"contractId": config.contract_id, "attested": cgs.attested,
                "executionConsent": watcher.last_status}

    @app.post("/consentcheck/{option}")
    async def consent_check(option: str):
        if option not in OPTIONS:
            raise NotFound(f"no consent check {option!r}: execution, logging or telemetry")
        result = await cgs.consent(option)
        if option == "execution":
            await watcher.observe(result)
            if result.get("status") != "enabled":
                try:
                    await own_audit({"event": "execution-consent-denied", "reason": result.get("reason") or {}})
                except CcrError as exc:
                    # The answer stays "disabled" either way; a lost record must not turn it into an error.
                    log.error("cannot audit the denied consent check: %s", exc)
        return result

    @app.put("/events", status_code=204, response_class=Response)
    async def put_event(request: Request, id: str | None = None, scope: str | None = None):
        data = json_value(await request.body(), what="body (the event)")
        if not privileged(request):
            scope = APP_SCOPE
        await cgs.put_event(data, event_id=id, scope=scope)
        return Response(status_code=204)

    @app.post("/secrets/{secret_id}")
    async def secret(secret_id: str, request: Request):
        if secret_id in config.sidecar_only_secrets and not privileged(request):
            raise Forbidden(f"secret {secret_id!r} is a store's credentials: only the room's sidecars read it")
        return {"value": await cgs.secret(secret_id)}

    # The reference's sidecar answers both spellings.
    @app.post("/documents/{document_id}")
    @app.post("/memberdocuments/{document_id}")
    async def document(document_id: str):
        return await cgs.document(document_id)

    @app.post("/memberdocuments/{document_id}/consentcheck/execution")
    async def document_consent_check(document_id: str):
        return await cgs.document_consent(document_id)

    @app.post("/privacybudget/spend")
    async def privacy_budget_spend(request: Request):
        body = json_value(await request.body(), what="body ({runId, queryId})")
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("runId", "queryId")):
            raise BadRequest("runId and queryId: strings are required")
        return await cgs.spend_privacy_budget(body["runId"], body["queryId"])

    @app.get("/members")
    async def members():
        return {"value": await cgs.members()}

    @app.post("/oauth/token")
    async def oauth_token(request: Request, tenantId: str, sub: str | None = None,
                          aud: str = "api://AzureADTokenExchange"):
        subject = sub or config.contract_id
        if len(subject) > MAX_SUBJECT_LENGTH:
            raise BadRequest(f"sub: at most {MAX_SUBJECT_LENGTH} characters")
        # A party's trust binds the subject (the issuer is every room's): a token for the sidecars' subject
        # would let the app assume the role meant for the volumes and reach the bucket around their encryption.
        if subject != config.contract_id and not privileged(request):
            try:
                await own_audit({"event": "token-refused", "sub": subject, "aud": aud[:MAX_SUBJECT_LENGTH]})
            except CcrError as exc:
                log.error("cannot audit the refused token request: %s", exc)
            raise Forbidden(f"sub {subject!r}: the app may ask only for its own subject, the contract id "
                            f"{config.contract_id!r} (other subjects are the room's sidecars')")
        token = await cgs.token(sub=subject, tenant_id=tenantId, aud=aud,
                                lifetime_s=config.token_lifetime_s)
        return {"value": token}

    @app.post("/ca/generateEndorsedCert")
    async def generate_endorsed_cert(request: Request):
        body = json_value(await request.body(), what="body ({publicKey, subjectName, subjectAlternateNames, "
                                                    "validityPeriodDays})")
        if not isinstance(body, dict) or not isinstance(body.get("publicKey"), str):
            raise BadRequest("publicKey: a PEM public key is required")
        subject = body.get("subjectName")
        if not isinstance(subject, str | None):
            raise BadRequest("subjectName: expected a string")
        # The proxy's TLS name and the datasinks' manifest signers are what clients and consumers trust as
        # "the room": the app may get certificates, never one that passes for a sidecar's.
        if subject and reserved_for_sidecars(subject) and not privileged(request):
            raise Forbidden(f"subjectName {subject!r} is reserved for the room's sidecars")
        return await cgs.endorsed_cert(body)

    app.state.watcher = watcher
    return app
