"""The workspace app: the API under `/api/` (OpenAPI at `/api/openapi.json`, docs at `/api/docs`) and the page
(`static/`) at `/`.

It listens on loopback only and is the party's own: it acts with the party's key, so it must not be reachable
by anyone else. A browser page of another site could still send it requests, so every state-changing request
must come from the workspace's own origin (or from no browser at all: a script sends no Origin header)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from ..common.bodylimit import KIB, BodyLimitMiddleware
from . import audit, collaborations, documents, errors, invitations, runs, signin
from .deps import PartyDep
from .party import Party

STATIC_DIR = Path(__file__).parent / "static"
# A request is a document of at most 256 KiB (the CLI's DOCUMENT_LIMITS) wrapped in a small object.
MAX_BODY_BYTES = 320 * KIB
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class SameOriginWrites(BaseHTTPMiddleware):
    """Refuses a state-changing request a browser sent from another origin (cross-site request forgery on a
    service that holds the party's key), and one whose Host is not the workspace's (DNS rebinding)."""

    def __init__(self, app, party: Party):
        super().__init__(app)
        self.party = party

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        host = request.headers.get("host", "")
        if host.rsplit(":", 1)[0] not in ("127.0.0.1", "localhost", "[::1]"):
            return JSONResponse(errors.body(errors.problem(None, f"host {host[:64]!r} is not this workspace")),
                                status_code=421)
        origin = request.headers.get("origin")
        if request.method not in SAFE_METHODS and origin is not None and origin.rstrip("/") not in (
                f"http://{host}", self.party.base_url.rstrip("/")):
            return JSONResponse(errors.body(errors.problem(None, f"a request from {origin[:64]} may not act for "
                                                                 "this party")), status_code=403)
        return await call_next(request)


def build_app(party: Party, static_dir: Path = STATIC_DIR) -> FastAPI:
    app = FastAPI(title="ccr workspace", version="1", openapi_url="/api/openapi.json", docs_url="/api/docs",
                  redoc_url=None, description="One party's collaboration workspace (see sidecars/workspace/API.md)")
    app.state.party = party
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES,
                       error_body=lambda exc: errors.body(errors.problem(None, exc.message)))
    app.add_middleware(SameOriginWrites, party=party)
    for area in (collaborations, documents, runs, audit, invitations, signin):
        app.include_router(area.router)

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: str, party: PartyDep) -> dict[str, Any]:
        return party.jobs.get(job_id[:64]).view()

    @app.get("/api/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse)
    async def job_events(job_id: str, party: PartyDep) -> StreamingResponse:
        job = party.jobs.get(job_id[:64])

        async def stream():
            seen = -1
            while True:
                seen = await asyncio.to_thread(job.wait_change, seen, 15.0)
                view = job.view()
                yield f"data: {json.dumps(view)}\n\n"
                if view["state"] != "running":
                    return

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    def unknown(rest: str) -> JSONResponse:
        return JSONResponse(errors.body(errors.problem(None, f"no API /api/{rest[:64]}")), status_code=404)

    if static_dir.is_dir():
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="page")
    return app
