"""A bound on the size of every request body, answered in the service's own error shape.

Without one, a service reads whatever a caller sends into memory (and the CGS stand-in would then write it into
its state on every save). The bound is checked twice: a declared `Content-Length` above it is refused before the
app sees the request, and a body without one (chunked, or a lying client) is counted as it streams, so the app
never holds more than the bound whatever the caller says. The count happens when the app reads the body, so a
service that authenticates before reading still refuses an unauthenticated caller first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BadRequest, CcrError

KIB = 1024
MIB = 1024 * KIB
# For the APIs that take no body at all (status, verify): room for a stray empty JSON document, no more.
NO_BODY_BYTES = 4 * KIB


class PayloadTooLarge(CcrError):
    """The request body is larger than the service accepts (HTTP 413)."""

    code = "PayloadTooLarge"
    http_status = 413


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than this service accepts ({limit} bytes)")


class BodyLimitMiddleware:
    """ASGI middleware: refuses bodies over `max_bytes` with 413 and `error_body(PayloadTooLarge)`.

    A body found too large while the app reads it raises `PayloadTooLarge` from `receive`; the app's `CcrError`
    handler turns it into the service's error, and should the app have none, this middleware answers instead.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, error_body: Callable[[CcrError], dict[str, Any]]):
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.app = app
        self.max_bytes = max_bytes
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isascii() or not declared.isdigit():
                await self._answer(BadRequest("Content-Length: not a byte count"), scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._answer(too_large(self.max_bytes), scope, receive, send)
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except PayloadTooLarge as exc:
            if started:
                raise
            await self._answer(exc, scope, receive, send)

    async def _answer(self, exc: CcrError, scope: Scope, receive: Receive, send: Send) -> None:
        # The rest of the body is not read: the connection closes after the answer rather than stay in step.
        response = JSONResponse(self.error_body(exc), status_code=exc.http_status, headers={"connection": "close"})
        await response(scope, receive, send)
