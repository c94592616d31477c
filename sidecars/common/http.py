"""The HTTP app factory and server runner every sidecar and stand-in uses.

Each service keeps the error shape of the real service it stands for (skr: `{"error": "..."}`, Azure
services: `{"error": {"code", "message"}}`), so the factory takes an `error_body` function. Malformed
requests are 400 with the failing field named (FastAPI's default is 422 with a nested list); an unknown path or
method answers 404/405 in the same shape (Starlette's default is `{"detail"}`); a body over the service's
`max_body_bytes` answers 413 (see `bodylimit`).

A listener may ask TLS clients for a certificate (`serve(..., client_certs=...)`), as CCF does for its
`member_cert` endpoints: the certificate a connection presented reaches the app in the ASGI TLS extension
(`scope["extensions"]["tls"]["client_cert_chain"]`, read with `client_certificate`), which uvicorn does not
provide by itself. The TLS layer only checks that the client holds the key of a certificate from the
listener's current list; which caller that certificate is, and what it may do, the app decides.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .bodies import describe_errors
from .bodylimit import MIB, BodyLimitMiddleware
from .errors import CcrError
from .otel import RequestTelemetryMiddleware, telemetry_enabled
from .process import write_ready_file

ErrorBody = Callable[[CcrError], dict[str, Any]]
log = logging.getLogger(__name__)
DEFAULT_MAX_BODY_BYTES = MIB
# Codes for the answers Starlette's router gives by itself.
_HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 400: "BadRequest", 413: "PayloadTooLarge"}


def azure_error_body(exc: CcrError) -> dict[str, Any]:
    """Azure REST error shape: `{"error": {"code": ..., "message": ...}}`."""
    return {"error": {"code": exc.code, "message": exc.message}}


def plain_error_body(exc: CcrError) -> dict[str, Any]:
    """The confidential-sidecar-containers shape: `{"error": "..."}`."""
    return {"error": exc.message}


def describe_validation_error(exc: RequestValidationError) -> str:
    """One line naming each failing field, e.g. `body.runtime_data: Field required`."""
    return describe_errors(list(exc.errors()))


def create_app(title: str, *, error_body: ErrorBody = azure_error_body, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               **fastapi_kwargs) -> FastAPI:
    """A FastAPI app answering errors with `error_body` and refusing bodies over `max_body_bytes`."""
    # Requests are traced by our lean middleware (see RequestTelemetryMiddleware), not FastAPI's own, and
    # only when an OTLP endpoint is configured: without one a request pays nothing for telemetry.
    fastapi_kwargs.setdefault("telemetry", {"tracing": False, "metrics": False, "logs": False})
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None, **fastapi_kwargs)
    if telemetry_enabled():
        app.add_middleware(RequestTelemetryMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, error_body=error_body)

    @app.exception_handler(CcrError)
    async def _ccr_error(_request: Request, exc: CcrError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        else:
            log.info("refused (%s): %s", exc.http_status, exc.message)
        return JSONResponse(error_body(exc), status_code=exc.http_status, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = CcrError(describe_validation_error(exc), code="BadRequest", http_status=400)
        return JSONResponse(error_body(err), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = CcrError(str(exc.detail), code=_HTTP_CODES.get(exc.status_code, "Error"), http_status=exc.status_code)
        return JSONResponse(error_body(err), status_code=exc.status_code, headers=exc.headers)

    return app


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate chain and key (PEM files) for an HTTPS listener."""

    cert_file: str
    key_file: str


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving so that port 0 gets a real port we can report, with no race."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP, and without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


#: The PEM certificates a listener currently lets TLS clients present (asked again at every handshake).
ClientCertificates = Callable[[], Iterable[str]]
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def client_certificate(scope: Scope) -> x509.Certificate | None:
    """The certificate the request's TLS client presented (None: none, or not over such a listener)."""
    chain = ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain") or ()
    for pem in chain:
        return x509.load_pem_x509_certificate(pem.encode())
    return None


def _tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The ASGI TLS extension of a connection (https://asgi.readthedocs.io/en/latest/specs/tls.html). Python's
    ssl gives only the peer's own certificate, so the chain holds just that one."""
    der = ssl_object.getpeercert(binary_form=True)
    return {"server_cert": None, "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None, "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""), "cipher_suite": None}


class _WithTlsExtension:
    """The app as one connection sees it: each request's scope carries that connection's TLS extension."""

    def __init__(self, app: ASGIApp, tls: dict[str, Any]):
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": self.tls}}
        await self.app(scope, receive, send)


class _TlsScopeProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol, telling the app what the TLS handshake established. asyncio calls
    `connection_made` once the handshake completed, so the peer's certificate is known by then."""

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.app = _WithTlsExtension(self.app, _tls_extension(ssl_object))


class _ClientCertTrust:
    """Keeps a server context's verify store in step with `certificates`, from the SNI callback: OpenSSL calls
    it (with or without a server name) on the ClientHello, before the client's certificate arrives.

    Python's ssl cannot accept an arbitrary client certificate (it has no verify callback), so the listener
    trusts exactly the certificates it was given, each as its own anchor. Certificates are only ever added
    (a context's store cannot drop one): whether a certificate still stands for a caller is the app's to say."""

    def __init__(self, certificates: ClientCertificates):
        self.certificates = certificates
        self._seen: set[str] = set()

    def __call__(self, _ssl_object: ssl.SSLObject, _server_name: str | None, context: ssl.SSLContext) -> None:
        for pem in self.certificates():
            if pem in self._seen:
                continue
            self._seen.add(pem)  # an unusable one is reported once, and must not stop the others
            try:
                context.load_verify_locations(cadata=pem)
            except (ssl.SSLError, ValueError) as exc:
                log.warning("cannot let clients present a certificate: %s", exc)


def serve(app: FastAPI, host: str, port: int, *, tls: TlsFiles | None = None,
          on_ready: Callable[[int], None] | None = None, ready_file: str | Path | None = None,
          log_level: str = "warning", client_certs: ClientCertificates | None = None) -> None:
    """Serve `app` until SIGTERM/SIGINT. Once the socket accepts connections, `on_ready(port)` runs and
    `ready_file` gets `{"port", "url"}` (port 0 picks a free port: the file says which).

    With `client_certs` (and `tls`) the listener asks clients for a certificate, optionally: a client that
    presents one must hold its key and present one of `client_certs()`; the app reads it with
    `client_certificate(request.scope)`."""
    if client_certs is not None and tls is None:
        raise ValueError("client certificates need a TLS listener")
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    if ready_file is not None:
        url = f"{'https' if tls else 'http'}://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound_port}"
        announce = on_ready

        def on_ready(bound: int) -> None:
            if announce is not None:
                announce(bound)
            write_ready_file(ready_file, bound, url)
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="on",
        ssl_certfile=tls.cert_file if tls else None, ssl_keyfile=tls.key_file if tls else None,
        ssl_version=ssl.PROTOCOL_TLS_SERVER, timeout_graceful_shutdown=5,
        **(_client_cert_options(client_certs) if client_certs is not None else {}),
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        if server.started and on_ready is not None:
            on_ready(bound_port)
        await task

    asyncio.run(run())


def _client_cert_options(certificates: ClientCertificates) -> dict[str, Any]:
    trust = _ClientCertTrust(certificates)

    def context(_config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        ctx = default()
        ctx.sni_callback = trust
        return ctx

    return {"ssl_cert_reqs": ssl.CERT_OPTIONAL, "ssl_context_factory": context, "http": _TlsScopeProtocol}
