"""OTLP receivers: gRPC (TraceService, MetricsService, LogsService) and HTTP (`/v1/{traces,metrics,logs}`,
protobuf or JSON). Each accepted request is stored as one encrypted buffer record, normalized to protobuf.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from ..common.errors import ConfigError
from .buffer import EncryptedBuffer
from .otlp import MAX_DECODED_BYTES, decode_request, decompress, encode_response, media_type
from .signals import Signal

MAX_MESSAGE_BYTES = MAX_DECODED_BYTES
_RESPONSES = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
}


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, buffer: EncryptedBuffer):
        self.buffer = buffer

    def Export(self, request, context):  # noqa: N802 - the gRPC method name
        self.buffer.append(Signal.TRACES, request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, buffer: EncryptedBuffer):
        self.buffer = buffer

    def Export(self, request, context):  # noqa: N802
        self.buffer.append(Signal.METRICS, request.SerializeToString())
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, buffer: EncryptedBuffer):
        self.buffer = buffer

    def Export(self, request, context):  # noqa: N802
        self.buffer.append(Signal.LOGS, request.SerializeToString())
        return logs_service_pb2.ExportLogsServiceResponse()


def start_grpc(buffer: EncryptedBuffer, host: str, port: int) -> tuple[grpc.Server, int]:
    """Start the OTLP/gRPC server; returns it and the bound port (port 0 picks a free one)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-grpc"),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(buffer), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(buffer), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(buffer), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise ConfigError(f"cannot listen for OTLP/gRPC on {host}:{port}")
    server.start()
    return server, bound


def add_http_routes(app: FastAPI, buffer: EncryptedBuffer) -> None:
    for signal, path in ((Signal.TRACES, "/v1/traces"), (Signal.METRICS, "/v1/metrics"), (Signal.LOGS, "/v1/logs")):
        app.add_api_route(path, _http_handler(buffer, signal), methods=["POST"], name=f"otlp_{signal.folder}")


def _http_handler(buffer: EncryptedBuffer, signal: Signal):
    async def receive(request: Request) -> Response:
        kind = media_type(request.headers.get("content-type"))
        body = decompress(await request.body(), request.headers.get("content-encoding"))
        message = decode_request(body, kind, signal.request_type)
        buffer.append(signal, message.SerializeToString())
        return Response(encode_response(_RESPONSES[signal](), kind), media_type=kind)

    return receive
