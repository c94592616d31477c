"""The OPA-Envoy input document, so a policy written for OPA-Envoy runs here unchanged.

OPA-Envoy builds `input` from Envoy's CheckRequest: `attributes.request.http` carries method, path (with
its query), host, scheme, protocol, headers (lower-case names) and the body as a string; beside it,
`parsed_path` (the URL-decoded path without its query, leading slashes trimmed, split on `/`),
`parsed_query` (name → list of values) and `parsed_body` (JSON, or form fields, by content type).
A path with a malformed percent escape or a JSON body that does not parse is an error, which the
caller turns into a denial (OPA-Envoy fails the check in both cases).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..common.errors import BadRequest

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class InputError(BadRequest):
    """The request cannot be turned into a policy input (OPA-Envoy rejects it as well)."""


def parse_path(path: str) -> tuple[list[str], dict[str, list[str]]]:
    """`parsed_path` and `parsed_query` exactly as OPA-Envoy computes them (Go's url.Parse)."""
    if _BAD_ESCAPE.search(path):
        raise InputError(f"the request path has a malformed percent escape: {path!r}")
    parts = urlsplit(path)
    parsed_path = unquote(parts.path, errors="strict").lstrip("/").split("/")
    parsed_query = parse_qs(parts.query, keep_blank_values=True) if parts.query else {}
    return parsed_path, parsed_query


def parse_body(headers: Mapping[str, str], body: bytes) -> Any:
    content_type = headers.get("content-type", "")
    if "application/json" in content_type:
        if not body:
            return None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"the request body is not valid JSON: {exc}") from None
    if "application/x-www-form-urlencoded" in content_type:
        return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {}


def build_input(*, method: str, path: str, headers: Mapping[str, str], body: bytes = b"",
                scheme: str = "https", protocol: str = "HTTP/1.1",
                context_extensions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `input` document for one request; `headers` must have lower-case names."""
    parsed_path, parsed_query = parse_path(path)
    http: dict[str, Any] = {
        "id": headers.get("x-request-id", ""),
        "method": method,
        "path": path,
        "host": headers.get("host", headers.get(":authority", "")),
        "scheme": scheme,
        "protocol": protocol,
        "headers": dict(headers),
        "size": len(body),
    }
    try:
        http["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        http["body"] = ""
        http["raw_body"] = base64.b64encode(body).decode()
    return {
        "attributes": {
            "request": {"http": http},
            "context_extensions": dict(context_extensions or {}),
        },
        "parsed_path": parsed_path,
        "parsed_query": parsed_query,
        "parsed_body": parse_body(headers, body),
        "truncated_body": False,
        "version": {"encoding": "protojson", "ext_authz": "v3"},
    }
