"""OTLP/HTTP bodies: protobuf or JSON, optionally gzip-compressed, as the OTLP specification defines them.

OTLP/JSON differs from the protobuf JSON mapping in one way that matters: trace and span ids are hex
strings, not base64. Receivers must ignore unknown fields.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from ..common.bodylimit import MIB, PayloadTooLarge
from ..common.errors import BadRequest, CcrError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})
# What one export may decode to: the gRPC receiver's message limit.
MAX_DECODED_BYTES = 16 * MIB
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class UnsupportedMediaType(CcrError):
    code = "UnsupportedMediaType"
    http_status = 415


def media_type(content_type: str | None) -> str:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise UnsupportedMediaType(f"Content-Type must be {PROTOBUF} or {JSON}, not {kind or 'missing'!r}")
    return kind


def decompress(body: bytes, content_encoding: str | None, max_bytes: int = MAX_DECODED_BYTES) -> bytes:
    """The body without its Content-Encoding. The decoded size is bounded too: a few KB of gzip can inflate to
    gigabytes, so the request's body limit alone does not bound what a compressed body costs."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in _WBITS:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        decoded = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from None
    if len(decoded) > max_bytes:
        raise PayloadTooLarge(f"the {encoding} body inflates to more than {max_bytes} bytes")
    if not inflater.eof or inflater.unused_data:
        raise BadRequest(f"body is not valid {encoding}: truncated, or data after its end")
    return decoded


def decode_request(body: bytes, kind: str, message_type: type[Message]) -> Message:
    message = message_type()
    try:
        if kind == PROTOBUF:
            message.ParseFromString(body)
        else:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=True)
    # protobuf's JSON parser raises TypeError/AttributeError for some wrong types, and deep nesting exhausts
    # the parsers' recursion: all of it is a malformed request.
    except (DecodeError, ValueError, TypeError, AttributeError, RecursionError, json_format.ParseError) as exc:
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
