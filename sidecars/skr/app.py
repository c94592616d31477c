"""The SKR sidecar's HTTP API, with the shapes of Microsoft's confidential-sidecar-containers `skr`:
`GET /status`, `POST /attest/raw`, `/attest/combined`, `/attest/maa`, `/key/release`; errors `{"error"}`. And
`POST /attest/nonce` (`{"nonce"}`), the one route the room's ingress exposes outside the room (see
common/roomevidence.py)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from ..common.bodylimit import KIB
from ..common.errors import CcrError
from ..common.http import create_app, plain_error_body
from ..common.roomevidence import NONCE, NONCE_EVIDENCE_PATH, runtime_data_for_nonce
from .flow import KeyReleaser, decode_runtime_data, jwk_text

log = logging.getLogger("ccr.skr")
# Requests name endpoints and a key id, and carry runtime data (a JWKS) and perhaps an access token: a few KB.
MAX_BODY_BYTES = 64 * KIB


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RawAttestIn(_In):
    runtime_data: str = Field(min_length=1)


class NonceAttestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a caller outside the room: nothing but the nonce
    nonce: str = Field(pattern=f"^{NONCE.pattern}$")


class MaaAttestIn(_In):
    maa_endpoint: str = Field(min_length=1)
    runtime_data: str = Field(min_length=1)


class KeyReleaseIn(_In):
    maa_endpoint: str = Field(min_length=1)
    akv_endpoint: str = Field(min_length=1)
    kid: str = Field(min_length=1)
    access_token: str | None = None


def build_app(releaser: KeyReleaser) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await releaser.aclose()

    app = create_app("skr", error_body=plain_error_body, max_body_bytes=MAX_BODY_BYTES, lifespan=lifespan)

    @app.get("/status")
    async def status() -> dict[str, str]:
        # platform: sev-snp, simulated (`ccr aci run`) or mock (the local stand-ins): a room not on hardware
        # says so
        return {"message": "STATUS OK", "platform": releaser.platform}

    @app.post("/attest/raw")
    async def attest_raw(body: RawAttestIn) -> dict[str, str]:
        evidence = releaser.evidence(decode_runtime_data(body.runtime_data))
        return {"report": evidence.report.hex()}

    @app.post("/attest/combined")
    async def attest_combined(body: RawAttestIn) -> dict[str, str]:
        return releaser.evidence(decode_runtime_data(body.runtime_data)).to_combined()

    @app.post(NONCE_EVIDENCE_PATH)
    async def attest_nonce(body: NonceAttestIn) -> dict[str, str]:
        return releaser.evidence(runtime_data_for_nonce(body.nonce)).to_combined()

    @app.post("/attest/maa")
    async def attest_maa(body: MaaAttestIn) -> dict[str, str]:
        return {"token": await releaser.maa_token(body.maa_endpoint, decode_runtime_data(body.runtime_data))}

    @app.post("/key/release")
    async def key_release(body: KeyReleaseIn) -> dict[str, str]:
        try:
            release = await releaser.release(body.maa_endpoint, body.akv_endpoint, body.kid, body.access_token)
        except CcrError as exc:
            log.warning("release of %s from %s refused: %s", body.kid, body.akv_endpoint, exc)
            raise
        return {"key": jwk_text(release.key)}

    return app
