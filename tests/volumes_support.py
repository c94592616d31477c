"""Test services for the volumes tests, until the Key Vault stand-in and the skr sidecar land on main.

`KeyVaultSecrets` speaks Key Vault's secrets REST shape (401 bearer challenge, PUT/GET
/secrets/{name}[/{version}], Azure error bodies) so the real azure-keyvault-secrets SDK talks to it;
`KeyRelease` speaks skr's `POST /key/release` and releases only the keys it was given, answering
`{"error": ...}` for the others as skr does when Key Vault refuses. Both are HTTPS with the test CA.
When the real emulators land, the fixtures switch to them and this file goes away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sidecars.common.http import TlsFiles, bind_socket


@contextmanager
def serve_in_thread(app: FastAPI, tls: TlsFiles | None) -> Iterator[str]:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            ssl_certfile=tls.cert_file if tls else None, ssl_keyfile=tls.key_file if tls else None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.005)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


class KeyVaultSecrets:
    def __init__(self) -> None:
        self.secrets: dict[str, list[dict]] = {}
        self.app = FastAPI()
        app = self.app

        def error(status: int, code: str, message: str) -> JSONResponse:
            return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

        def challenge() -> JSONResponse:
            return JSONResponse({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a "
                                                                              "Bearer or PoP token."}},
                                status_code=401, headers={"WWW-Authenticate": (
                                    'Bearer authorization="https://login.microsoftonline.com/common", '
                                    'resource="https://vault.azure.net"')})

        def bundle(request: Request, name: str, entry: dict) -> dict:
            base = str(request.base_url).rstrip("/")
            return {"value": entry["value"], "id": f"{base}/secrets/{name}/{entry['version']}",
                    "contentType": entry.get("contentType"), "tags": entry.get("tags") or {},
                    "attributes": {"enabled": True, "created": entry["created"], "updated": entry["created"],
                                   "recoveryLevel": "Recoverable+Purgeable"}}

        @app.put("/secrets/{name}")
        async def set_secret(name: str, request: Request):
            if not request.headers.get("authorization", "").startswith("Bearer "):
                return challenge()
            body = await request.json()
            entry = {"value": body["value"], "contentType": body.get("contentType"), "tags": body.get("tags"),
                     "version": uuid.uuid4().hex, "created": int(dt.datetime.now(dt.UTC).timestamp())}
            self.secrets.setdefault(name, []).append(entry)
            return bundle(request, name, entry)

        @app.get("/secrets/{name}")
        @app.get("/secrets/{name}/")
        @app.get("/secrets/{name}/{version}")
        async def get_secret(name: str, request: Request, version: str = ""):
            if not request.headers.get("authorization", "").startswith("Bearer "):
                return challenge()
            versions = self.secrets.get(name, [])
            found = [v for v in versions if not version or v["version"] == version]
            if not found:
                return error(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this "
                                                    "key vault.")
            return bundle(request, name, found[-1])


class KeyRelease:
    """skr's key release endpoint: `released` maps kid → JWK; any other kid is refused."""

    def __init__(self) -> None:
        self.released: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.app = FastAPI()

        @self.app.post("/key/release")
        async def release(request: Request):
            body = await request.json()
            self.requests.append(body)
            for field in ("maa_endpoint", "akv_endpoint", "kid"):
                if not body.get(field):
                    return JSONResponse({"error": f"missing {field}"}, status_code=400)
            jwk = self.released.get(body["kid"])
            if jwk is None:
                return JSONResponse({"error": "key release failed: Key Vault answered 403 "
                                              "(the release policy does not match the attestation claims)"},
                                    status_code=403)
            return {"key": json.dumps(jwk)}

        @self.app.get("/status")
        async def status():
            return {"status": "ok"}
