"""The four kinds of records the telemetry sidecar keeps, and which sink (and consent) each belongs to.

Infrastructure telemetry (the sidecars' traces, metrics and their own log records) goes to the
telemetry sink under the `telemetry` consent; the app's stdout/stderr goes to the log sink under the
`logging` consent, as in the reference, where "logs" means the application's output.
"""

from __future__ import annotations

from enum import Enum

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class Signal(Enum):
    TRACES = 1
    METRICS = 2
    LOGS = 3
    APP_LOGS = 4

    @property
    def request_type(self) -> type[Message]:
        return {Signal.TRACES: ExportTraceServiceRequest, Signal.METRICS: ExportMetricsServiceRequest,
                Signal.LOGS: ExportLogsServiceRequest, Signal.APP_LOGS: ExportLogsServiceRequest}[self]

    @property
    def folder(self) -> str:
        """The name used for this signal's exported objects and downloaded files."""
        return self.name.lower().replace("_", "")

    @classmethod
    def from_folder(cls, folder: str) -> Signal:
        for signal in cls:
            if signal.folder == folder:
                return signal
        raise ValueError(folder)


class SinkKind(Enum):
    """An export destination; its value is the governance consent option that gates it."""

    TELEMETRY = "telemetry"
    LOGS = "logging"

    @property
    def signals(self) -> tuple[Signal, ...]:
        if self is SinkKind.TELEMETRY:
            return (Signal.TRACES, Signal.METRICS, Signal.LOGS)
        return (Signal.APP_LOGS,)
