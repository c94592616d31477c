"""The app's stdout/stderr, handed over by the launcher, as OTLP log records.

`POST /logs/app?app=NAME` with an NDJSON body (`application/x-ndjson`), one object per output line:

    {"time": "2026-11-24T05:13:20.123456Z", "stream": "stdout", "line": "listening on :8080"}

`time` is RFC 3339 (UTC or with an offset) or integer nanoseconds since the epoch; `stream` is `stdout`
or `stderr`; `line` is the text without its newline. Each becomes a log record with the OTel semantic
convention attribute `log.iostream`, under a resource whose `service.name` is the app's name. The whole
body is refused (400, naming the line) if any line is malformed, so the launcher can resend it.
"""

from __future__ import annotations

import json
from datetime import datetime

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from ..common.errors import BadRequest

STREAMS = ("stdout", "stderr")


def parse_app_lines(body: bytes, app: str) -> tuple[ExportLogsServiceRequest, int]:
    """The request holding one log record per NDJSON line, and the number of lines."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(_attribute("service.name", app))
    resource_logs.resource.attributes.append(_attribute("ccr.source", "app"))
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "ccr.launcher"
    count = 0
    for number, raw in enumerate(body.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"line {number}: not JSON ({exc.msg})") from None
        except (ValueError, RecursionError):
            raise BadRequest(f"line {number}: not JSON") from None
        if not isinstance(item, dict):
            raise BadRequest(f"line {number}: expected an object with time, stream and line")
        record = scope_logs.log_records.add()
        record.time_unix_nano = _time_ns(item.get("time"), number)
        record.observed_time_unix_nano = record.time_unix_nano
        stream = item.get("stream")
        if stream not in STREAMS:
            raise BadRequest(f"line {number}: stream must be stdout or stderr, not {stream!r}")
        line = item.get("line")
        if not isinstance(line, str):
            raise BadRequest(f"line {number}: line must be a string")
        record.body.string_value = line
        record.attributes.append(_attribute("log.iostream", stream))
        count += 1
    return request, count


def _time_ns(value: object, number: int) -> int:
    # The record's time is a fixed64: before 1970 or past 2554 it cannot be stored.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            nanoseconds = int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000
            if 0 <= nanoseconds < 2**64:
                return nanoseconds
    raise BadRequest(f"line {number}: time must be RFC 3339 with a time zone or integer nanoseconds")


def _attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))
