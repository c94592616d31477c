"""Secure key release, step by step: wrapping key -> report bound to it -> [audit: requested] -> MAA token
-> Key Vault release -> verified, unwrapped key -> [audit: released]. Each step is an OTel span and is timed
(`Release.timings`, milliseconds). With an audit (always in a room, see `audit`), no key is handed out
unless both records were acknowledged by CGS."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from opentelemetry import trace

from ..attestation.maa_client import attest_sev_snp_async, report_data_for
from ..common.errors import BadRequest, CcrError, Forbidden, NotFound, RemoteServiceError
from ..common.jose import CompactJws
from ..common.otel import step_span
from .audit import ReleaseAudit, room_summary
from .destinations import Destinations
from .release import (
    ReleasedKey,
    ReleaseVerificationError,
    VerifiedChains,
    load_roots,
    unwrap_released_key,
    verify_release_jws,
)
from .wrapping import WrappingKeyPool

log = logging.getLogger("ccr.skr")
tracer = trace.get_tracer("ccr.skr")
KEYVAULT_API_VERSION = "7.4"
SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"
URLSAFE_B64 = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


def decode_runtime_data(text: str) -> bytes:
    """Runtime data as the SKR sidecar takes it: base64 (standard, or URL-safe as some clients send)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    if not URLSAFE_B64.match(text):
        raise BadRequest("runtime_data: not base64")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadRequest("runtime_data: not base64") from None


def key_path(kid: str) -> tuple[str, str | None, str | None]:
    """(name, version, origin-or-None) from `name`, `name/version` or a full key id URL."""
    origin = None
    text = kid.strip()
    if "://" in text:
        parts = urlsplit(text)
        origin = f"https://{parts.netloc}"
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) < 2 or segments[0] != "keys":
            raise BadRequest(f"kid: {kid!r} is not a key identifier (…/keys/NAME[/VERSION])")
        segments = segments[1:]
    else:
        segments = [s for s in text.split("/") if s]
    if not 1 <= len(segments) <= 2:
        raise BadRequest(f"kid: {kid!r} is not NAME, NAME/VERSION or a key identifier URL")
    return segments[0], segments[1] if len(segments) == 2 else None, origin


@dataclass
class Release:
    key: ReleasedKey
    timings: dict[str, float] = field(default_factory=dict)


class Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, **attributes):
        began = time.perf_counter()
        with step_span(tracer, f"skr.{name}", **attributes):
            yield
        self.timings[name] = (time.perf_counter() - began) * 1000


TokenSource = Callable[[str], str]  # scope -> bearer token


def platform_of(provider) -> str:
    """The platform kind a provider's evidence comes from (sev-snp, simulated, mock); a provider that does
    not say is not trusted to be hardware."""
    return str(getattr(provider, "platform_kind", None) or "unknown")


class KeyReleaser:
    """The room's side of SKR; `provider` gives evidence (real or mock), `attest` gets an MAA token."""

    def __init__(self, provider, *, ca_bundle: str | None, token_source: TokenSource,
                 pool: WrappingKeyPool | None = None, destinations: Destinations | None = None,
                 audit: ReleaseAudit | None = None):
        self.provider = provider
        self.audit = audit
        self.destinations = destinations or Destinations()
        self.token_source = token_source
        self.wrapping_keys = pool or WrappingKeyPool()
        self.roots = load_roots(ca_bundle or SYSTEM_ROOTS)
        self.verified_chains = VerifiedChains()
        tls = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
        # TCP_NODELAY: a request's headers and body go out as separate TLS records; with Nagle the body
        # waits for the server's delayed ACK of the headers (up to 40 ms per call).
        transport = httpx.AsyncHTTPTransport(verify=tls, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.http = httpx.AsyncClient(transport=transport, timeout=30.0)
        self._tokens: dict[str, tuple[str, float]] = {}

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.audit is not None:
            self.audit.close()

    @property
    def platform(self) -> str:
        return platform_of(self.provider)

    def evidence(self, runtime_data: bytes):
        return self.provider.get_evidence(report_data_for(runtime_data))

    async def maa_token(self, maa_endpoint: str, runtime_data: bytes, timer: Timer | None = None) -> str:
        timer = timer or Timer()
        origin = self.destinations.attestation_origin(maa_endpoint)
        with timer.step("report"):
            evidence = self.evidence(runtime_data)
        return await self._attest(origin, maa_endpoint, evidence, runtime_data, timer)

    async def _attest(self, origin: str, maa_endpoint: str, evidence, runtime_data: bytes, timer: Timer) -> str:
        with timer.step("maa", maa_endpoint=maa_endpoint):
            try:
                return await attest_sev_snp_async(origin, evidence,
                                                  runtime_data, client=self.http)
            except RemoteServiceError as exc:
                raise Forbidden(f"attestation failed: {exc}") from None

    async def _bearer(self, scope: str) -> str:
        cached = self._tokens.get(scope)
        if cached and cached[1] > time.time() + 300:
            return cached[0]
        # Credentials are synchronous and may call out (IMDS, Entra): keep the event loop free meanwhile.
        token = await asyncio.to_thread(self.token_source, scope)
        try:
            expires = float(CompactJws.parse(token).claims().get("exp", 0))
        except (BadRequest, TypeError, ValueError):  # an opaque token: use it for this release only
            expires = 0.0
        self._tokens[scope] = (token, expires)
        return token

    async def release(self, maa_endpoint: str, akv_endpoint: str, kid: str,
                      access_token: str | None = None) -> Release:
        timer = Timer()
        name, version, kid_origin = key_path(kid)
        if not akv_endpoint and kid_origin is None:
            raise BadRequest("akv_endpoint: required unless kid is a full key identifier URL")
        vault = self.destinations.vault_origin(akv_endpoint or kid_origin or "")
        maa_origin = self.destinations.attestation_origin(maa_endpoint)
        with timer.step("wrapping_key"):
            wrapping = self.wrapping_keys.take()
            runtime_data = wrapping.runtime_data()
        try:
            with timer.step("report"):
                evidence = self.evidence(runtime_data)
            record = {"vault": vault, "key": name, "version": version or "", "maa": maa_origin,
                      "room": room_summary(evidence.report, platform_of(self.provider))}
            if self.audit is not None:
                with timer.step("audit_requested"):
                    await self.audit.record("requested", **record)
            try:
                released = await self._release(maa_origin, maa_endpoint, evidence, runtime_data,
                                               wrapping.private_key, vault, name, version, access_token, timer)
            except CcrError as exc:
                if self.audit is not None:
                    await self.audit.record_failure(exc, **record)
                raise
            if self.audit is not None:
                with timer.step("audit_released"):
                    # The version Key Vault released (the request may have named none), and what kind of key.
                    await self.audit.record("released", **{**record, "kid": released.kid, "kty": released.kty})
        finally:
            self.wrapping_keys.refill()
        log.info("released key %s from %s (%s) in %.1f ms", name, vault, released.kty, sum(timer.timings.values()))
        return Release(released, timer.timings)

    async def _release(self, maa_origin: str, maa_endpoint: str, evidence, runtime_data: bytes,
                       wrapping_key: rsa.RSAPrivateKey, vault: str, name: str, version: str | None,
                       access_token: str | None, timer: Timer) -> ReleasedKey:
        token = await self._attest(maa_origin, maa_endpoint, evidence, runtime_data, timer)
        with timer.step("access_token"):
            scope = ("https://managedhsm.azure.net/.default" if "managedhsm" in vault
                     else "https://vault.azure.net/.default")
            bearer = access_token or await self._bearer(scope)
        path = f"/keys/{quote(name)}/{quote(version)}/release" if version else f"/keys/{quote(name)}/release"
        with timer.step("keyvault", vault=vault, key=name):
            answer = await self._post_release(vault, path, token, bearer)
        with timer.step("unwrap"):
            payload = verify_release_jws(answer, urlsplit(vault).hostname or "", self.roots, self.verified_chains)
            released = unwrap_released_key(payload, wrapping_key)
            _check_answer_names(released.kid, name, version)
        return released

    async def _post_release(self, vault: str, path: str, token: str, bearer: str) -> str:
        try:
            response = await self.http.post(f"{vault}{path}", params={"api-version": KEYVAULT_API_VERSION},
                                            json={"target": token}, headers={"Authorization": f"Bearer {bearer}"})
        except httpx.HTTPError as exc:
            raise RemoteServiceError("Key Vault", f"cannot reach {vault}: {exc}") from None
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            message = error.get("message") if isinstance(error, dict) else response.text[:200]
            kind: type[CcrError] = NotFound if response.status_code == 404 else Forbidden
            raise kind(f"Key Vault refused the release ({response.status_code}): {message}")
        value = body.get("value") if isinstance(body, dict) else None
        if not isinstance(value, str):
            raise RemoteServiceError("Key Vault", "release answer has no value")
        return value


def _check_answer_names(answered_kid: str, name: str, version: str | None) -> None:
    """The signed answer must be for the key asked for (defence in depth: it is already bound to this
    release's fresh wrapping key)."""
    try:
        answered_name, answered_version, _origin = key_path(answered_kid)
    except BadRequest:
        answered_name, answered_version = "", None
    if answered_name != name or (version is not None and answered_version != version):
        raise ReleaseVerificationError(f"Key Vault answered for key {answered_kid!r}, not {name}"
                                       + (f"/{version}" if version else ""))


def jwk_text(key: ReleasedKey) -> str:
    return json.dumps(key.jwk(), separators=(",", ":"))
