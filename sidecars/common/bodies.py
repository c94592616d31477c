"""JSON request bodies read after the caller is authenticated.

FastAPI reads and JSON-decodes a body parameter before any dependency runs, so a route with a pydantic body
parameter answers a malformed body (400) to a caller it has not yet authenticated. `json_body(Model)` is a
dependency instead: listed after the authenticating dependency, it reads and validates the body only once the
caller is known. `json_body_openapi(Model)` puts the model's schema back into the OpenAPI document (a
dependency does not), so the API stays described for clients and for the fuzz tests.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from .errors import BadRequest

M = TypeVar("M", bound=BaseModel)


def describe_errors(errors: list[Any]) -> str:
    """One line naming each failing field, e.g. `body.runtime_data: Field required` -> `runtime_data: ...`."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def json_value(raw: bytes, *, what: str = "body", code: str = "BadRequest") -> Any:
    """Any JSON document; not JSON (or nested deeper than the parser goes, a RecursionError) is a BadRequest."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest(f"{what}: not a JSON document", code=code) from None


def parse_json_body(model: type[M], raw: bytes, *, code: str = "BadRequest") -> M:
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        raise BadRequest(describe_errors(exc.errors(include_input=False)), code=code) from None


def json_body(model: type[M], *, code: str = "BadRequest") -> Any:
    """A dependency giving the request's body as a `model`; a malformed body is `BadRequest(code=code)`."""

    async def read(request: Request) -> M:
        return parse_json_body(model, await request.body(), code=code)

    return Depends(read)


def json_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` describing a required JSON body of `model` (its schema inlined: OpenAPI resolves `$ref`
    against the whole document, not against the model's own `$defs`)."""
    schema = model.model_json_schema(by_alias=True)
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline(schema, schema.get("$defs", {}))}}}}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node
