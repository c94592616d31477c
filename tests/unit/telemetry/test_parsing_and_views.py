"""OTLP/JSON decoding, the app log hand-over format, and the text view built from real SDK spans."""

from __future__ import annotations

import base64
import json
import time

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecars.common.errors import BadRequest
from sidecars.common.otel import step_span
from sidecars.telemetry.applogs import parse_app_lines
from sidecars.telemetry.model import load_directories
from sidecars.telemetry.otlp import JSON, PROTOBUF, decode_request, decompress, media_type
from sidecars.telemetry.textview import render_text


def test_otlp_json_ids_are_hex_and_unknown_fields_ignored():
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "x",
         "startTimeUnixNano": "1544712660000000000", "newField": True}]}]}]}).encode()
    message = decode_request(body, JSON, ExportTraceServiceRequest)
    span = message.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c" and span.span_id.hex() == "eee19b7ec3c1b174"
    assert span.start_time_unix_nano == 1544712660000000000
    # base64 ids (the generic protobuf JSON mapping) are not OTLP/JSON and are refused.
    wrong = body.replace(b"eee19b7ec3c1b174", base64.b64encode(bytes.fromhex("eee19b7ec3c1b174")))
    with pytest.raises(BadRequest):
        decode_request(wrong, JSON, ExportTraceServiceRequest)
    with pytest.raises(BadRequest):
        decode_request(b"\xff\xff", PROTOBUF, ExportTraceServiceRequest)
    assert media_type("application/json; charset=utf-8") == JSON
    with pytest.raises(BadRequest):
        decompress(b"not gzip", "gzip")


def test_app_lines_become_log_records():
    body = b"\n".join([
        json.dumps({"time": "2026-11-24T05:00:00.250Z", "stream": "stdout", "line": "a"}).encode(),
        b"",
        json.dumps({"time": "2026-11-24T06:00:01+01:00", "stream": "stderr", "line": "b"}).encode(),
    ])
    request, count = parse_app_lines(body, "my-app")
    assert count == 2
    records = request.resource_logs[0].scope_logs[0].log_records
    assert records[0].time_unix_nano + 750_000_000 == records[1].time_unix_nano
    assert [r.attributes[0].value.string_value for r in records] == ["stdout", "stderr"]
    assert request.resource_logs[0].resource.attributes[0].value.string_value == "my-app"
    with pytest.raises(BadRequest, match="time zone"):
        parse_app_lines(b'{"time": "2026-11-24T05:00:00", "stream": "stdout", "line": "a"}', "x")


def test_text_view_shows_a_tree_with_durations_and_the_error(tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "launcher"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with pytest.raises(RuntimeError), step_span(tracer, "room.startup"):
        with step_span(tracer, "firewall"):
            time.sleep(0.002)
        with step_span(tracer, "mount"), step_span(tracer, "mount.results"):
            raise RuntimeError("FUSE said no")
    folder = tmp_path / "room" / "traces"
    folder.mkdir(parents=True)
    (folder / "a.binpb").write_bytes(encode_spans(exporter.get_finished_spans()).SerializeToString())

    text = render_text(load_directories([tmp_path]))
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    indent = {name: len(line) - len(line.lstrip()) for name, line in lines.items()}
    assert indent["room.startup"] < indent["firewall"] == indent["mount"] < indent["mount.results"]
    assert lines["mount.results"].endswith("FAILED: FUSE said no")
    assert "FAILED" not in lines["firewall"]
    assert float(lines["firewall"].split()[-2]) >= 2.0
