"""The workspace's one error shape: `{"errors": [{"field": NAME | null, "message": ONE LINE}]}`.

The page shows each message next to its field, so every refusal names the request field it is about when
it is about one; a problem line of the CLI's document models ("schema[1].type: must be ...") splits into
the field before its first ": " and the message after it."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..analytics.documents import AnalyticsDocumentError
from ..common.errors import CcrError

log = logging.getLogger("ccr.workspace")
MAX_MESSAGE_CHARS = 300
# "schema[1].type: must be ..." and "allowedFields[0]: ..." name a field; "document: ..." names none.
_FIELD_LINE = re.compile(r"([A-Za-z][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[A-Za-z][A-Za-z0-9_]*(?:\[\d+\])?)*): (.+)")


def one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 1] + "…"


def problem(field: str | None, message: str) -> dict[str, Any]:
    return {"field": field, "message": one_line(message)}


def body(*problems: dict[str, Any]) -> dict[str, Any]:
    return {"errors": list(problems)}


class FieldError(CcrError):
    """A refusal about named request fields (400 unless said otherwise)."""

    http_status = 400
    code = "InvalidField"

    def __init__(self, problems: list[dict[str, Any]], *, http_status: int | None = None):
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems), http_status=http_status)

    @classmethod
    def one(cls, field: str | None, message: str, *, http_status: int | None = None) -> FieldError:
        return cls([problem(field, message)], http_status=http_status)


def document_problems(exc: AnalyticsDocumentError, prefix: str) -> list[dict[str, Any]]:
    """A dataset or query document's problems, each under `prefix.FIELD` (the request field holding it)."""
    found = []
    for line in exc.problems:
        match = _FIELD_LINE.fullmatch(line)
        if match and match.group(1) != "document":
            found.append(problem(f"{prefix}.{match.group(1)}", match.group(2)))
        else:
            found.append(problem(prefix, line.removeprefix("document: ")))
    return found


def _validation_field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path") else [str(p) for p in loc]
    return ".".join(parts) or None


def install(app: FastAPI) -> None:
    @app.exception_handler(FieldError)
    async def _fields(_request: Request, exc: FieldError) -> JSONResponse:
        log.info("refused (%s): %s", exc.http_status, exc.message)
        return JSONResponse(body(*exc.problems), status_code=exc.http_status)

    @app.exception_handler(CcrError)
    async def _ccr(_request: Request, exc: CcrError) -> JSONResponse:
        status = exc.http_status if 400 <= exc.http_status < 600 else 500
        (log.error if status >= 500 else log.info)("refused (%s): %s", status, exc.message)
        return JSONResponse(body(problem(None, exc.message)), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        found = []
        for error in exc.errors():
            message = error.get("msg", "is not valid")
            if error.get("type") == "json_invalid":
                message = "the body is not JSON"
            found.append(problem(_validation_field(tuple(error.get("loc", ()))), message))
        return JSONResponse(body(*found[:50]), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(body(problem(None, str(exc.detail))), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        # A bug: the log keeps the traceback, the caller gets one line that says nothing about the internals.
        log.exception("unexpected error")
        return JSONResponse(body(problem(None, "the workspace failed unexpectedly; its log says why")),
                            status_code=500)
