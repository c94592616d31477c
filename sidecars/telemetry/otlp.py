"""OTLP/HTTP bodies: protobuf or JSON, optionally gzip-compressed, as the OTLP specification defines them.

OTLP/JSON differs from the protobuf JSON mapping in one way that matters: trace and span ids are hex
strings, not base64. Receivers must ignore unknown fields.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from ..common.errors import BadRequest, CcrError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


class UnsupportedMediaType(CcrError):
    code = "UnsupportedMediaType"
    http_status = 415


def media_type(content_type: str | None) -> str:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise UnsupportedMediaType(f"Content-Type must be {PROTOBUF} or {JSON}, not {kind or 'missing'!r}")
    return kind


def decompress(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error, EOFError) as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from None
    if encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    return body


def decode_request(body: bytes, kind: str, message_type: type[Message]) -> Message:
    message = message_type()
    try:
        if kind == PROTOBUF:
            message.ParseFromString(body)
        else:
            data = json.loads(body)
            json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=True)
    except (DecodeError, ValueError, json_format.ParseError) as exc:
        raise BadRequest(f"not a valid OTLP {message_type.__name__}: {exc}") from None
    return message


def encode_response(message: Message, kind: str) -> bytes:
    if kind == PROTOBUF:
        return message.SerializeToString()
    return json.dumps(json_format.MessageToDict(message)).encode()


def _hex_ids_to_base64(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (_hex_to_base64(v, k) if k in _ID_FIELDS else _hex_ids_to_base64(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_hex_ids_to_base64(v) for v in value]
    return value


def _hex_to_base64(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{field} {value!r} is not hex") from None
    return base64.b64encode(raw).decode()
