"""The telemetry sidecar's HTTP API (its `http` port): OTLP/HTTP, the app log hand-over, export and status.

- `POST /v1/traces`, `/v1/metrics`, `/v1/logs`: OTLP/HTTP (protobuf or JSON, gzip allowed).
- `POST /logs/app?app=NAME`: the launcher hands over the app's stdout/stderr lines (NDJSON, see applogs).
- `POST /gov/exportTelemetry`, `POST /gov/exportLogs`: export now (the launcher proxies the reference's
  paths here); 200 `{status: exported|nothing-new, sink, objects, records}`, 403 when governance has
  not enabled the option, 404 when no such sink is configured, 502 when governance or storage failed.
- `GET /status`: `{status: "ok", records: N}`.
"""

from __future__ import annotations

from fastapi import FastAPI, Query, Request

from ..common.http import azure_error_body, create_app
from .applogs import parse_app_lines
from .buffer import EncryptedBuffer
from .export import Exporter
from .receiver import MAX_MESSAGE_BYTES, add_http_routes
from .signals import Signal, SinkKind


def build_app(buffer: EncryptedBuffer, exporter: Exporter) -> FastAPI:
    app = create_app("ccr telemetry", error_body=azure_error_body, max_body_bytes=MAX_MESSAGE_BYTES)
    add_http_routes(app, buffer)

    @app.post("/logs/app")
    async def app_logs(request: Request, app_name: str = Query("app", alias="app", min_length=1)) -> dict:
        message, count = parse_app_lines(await request.body(), app_name)
        if count:
            buffer.append(Signal.APP_LOGS, message.SerializeToString())
        return {"accepted": count}

    # Plain `def`: exports block on governance and storage, so they run in the thread pool.
    @app.post("/gov/exportTelemetry")
    def export_telemetry() -> dict:
        return exporter.export(SinkKind.TELEMETRY).to_json()

    @app.post("/gov/exportLogs")
    def export_logs() -> dict:
        return exporter.export(SinkKind.LOGS).to_json()

    @app.get("/status")
    def status() -> dict:
        return {"status": "ok", "records": len(buffer)}

    return app
