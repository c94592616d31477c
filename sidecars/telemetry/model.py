"""Downloaded telemetry as plain Python objects for the viewers: spans arranged into trace trees,
metric data points, log records in time order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from ..common.errors import ConfigError
from .export import OBJECT_SUFFIX
from .signals import Signal


@dataclass
class SpanView:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    start_ns: int
    end_ns: int
    error: str | None
    attributes: dict[str, Any]
    children: list[SpanView] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    def walk(self, depth: int = 0) -> Iterable[tuple[int, SpanView]]:
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass
class TraceView:
    trace_id: str
    roots: list[SpanView]

    @property
    def spans(self) -> list[tuple[int, SpanView]]:
        return [item for root in self.roots for item in root.walk()]

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for _, s in self.spans)

    @property
    def end_ns(self) -> int:
        return max(s.end_ns for _, s in self.spans)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def errors(self) -> int:
        """Failed steps where the failure started: a parent failing because its child did is not counted."""
        return sum(1 for _, s in self.spans if s.error and not any(c.error for c in s.children))

    @property
    def title(self) -> str:
        return self.roots[0].name


@dataclass
class MetricView:
    service: str
    name: str
    kind: str
    unit: str
    value: str
    attributes: dict[str, Any]


@dataclass
class LogView:
    time_ns: int
    service: str
    source: str  # stdout / stderr for the app, the severity for sidecars
    body: str
    is_app: bool
    is_problem: bool


@dataclass
class TelemetryView:
    traces: list[TraceView]
    metrics: list[MetricView]
    logs: list[LogView]


def load_directories(directories: Iterable[str | Path]) -> TelemetryView:
    """Read every decrypted object under the folders (as `ccr telemetry|logs download` wrote them)."""
    files: list[Path] = []
    for directory in directories:
        root = Path(directory)
        if not root.is_dir():
            raise ConfigError(f"{directory}: no such directory (download first: ccr telemetry download -o DIR)")
        found = sorted(root.rglob(f"*{OBJECT_SUFFIX}"))
        if not found:
            raise ConfigError(f"{directory}: no telemetry objects (*{OBJECT_SUFFIX}) found")
        files.extend(found)
    spans: list[SpanView] = []
    metrics: list[MetricView] = []
    logs: list[LogView] = []
    for path in files:
        try:
            signal = Signal.from_folder(path.parent.name)
        except ValueError:
            raise ConfigError(f"{path}: not under a traces/, metrics/, logs/ or applogs/ folder") from None
        message = signal.request_type()
        try:
            message.ParseFromString(path.read_bytes())
        except DecodeError:
            raise ConfigError(f"{path}: not an OTLP {signal.folder} object") from None
        if signal is Signal.TRACES:
            spans.extend(_spans(message))
        elif signal is Signal.METRICS:
            metrics.extend(_metrics(message))
        else:
            logs.extend(_logs(message, is_app=signal is Signal.APP_LOGS))
    logs.sort(key=lambda entry: entry.time_ns)
    return TelemetryView(_trees(spans), metrics, logs)


def _service(resource) -> str:
    return str(_attributes(resource.attributes).get("service.name", "unknown"))


def _spans(request) -> Iterable[SpanView]:
    for resource_spans in request.resource_spans:
        service = _service(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                error = None
                if span.status.code == Status.STATUS_CODE_ERROR:
                    error = span.status.message or _exception_message(span) or "error"
                yield SpanView(span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                               service, span.start_time_unix_nano, span.end_time_unix_nano, error,
                               _attributes(span.attributes))


def _exception_message(span) -> str | None:
    for event in span.events:
        if event.name == "exception":
            attrs = _attributes(event.attributes)
            return f"{attrs.get('exception.type', 'error')}: {attrs.get('exception.message', '')}"
    return None


def _trees(spans: list[SpanView]) -> list[TraceView]:
    by_id = {(s.trace_id, s.span_id): s for s in spans}
    roots: dict[str, list[SpanView]] = {}
    for span in sorted(spans, key=lambda s: s.start_ns):
        parent = by_id.get((span.trace_id, span.parent_id)) if span.parent_id else None
        if parent is not None and parent is not span:
            parent.children.append(span)
        else:  # a root, or a span whose parent was not exported: show it at the top of its trace
            roots.setdefault(span.trace_id, []).append(span)
    traces = [TraceView(trace_id, trace_roots) for trace_id, trace_roots in roots.items()]
    # The biggest trace first: a room's startup is the trace with the most steps.
    traces.sort(key=lambda t: (-len(t.spans), t.start_ns))
    return traces


def _metrics(request) -> Iterable[MetricView]:
    for resource_metrics in request.resource_metrics:
        service = _service(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data") or "none"
                for point in getattr(metric, kind).data_points if kind != "none" else []:
                    yield MetricView(service, metric.name, kind, metric.unit, _point_value(kind, point),
                                     _attributes(point.attributes))


def _point_value(kind: str, point) -> str:
    if kind in ("gauge", "sum"):
        value = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
        return f"{value:g}" if isinstance(value, float) else str(value)
    if kind in ("histogram", "exponential_histogram"):
        mean = point.sum / point.count if point.count else 0.0
        return f"count={point.count} sum={point.sum:g} mean={mean:.3g}"
    return f"count={point.count} sum={point.sum:g}"


def _logs(request, *, is_app: bool) -> Iterable[LogView]:
    for resource_logs in request.resource_logs:
        service = _service(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attrs = _attributes(record.attributes)
                if is_app:
                    source = str(attrs.get("log.iostream", "stdout"))
                    problem = source == "stderr"
                else:
                    source = record.severity_text or f"severity {record.severity_number}"
                    problem = record.severity_number >= 13  # WARN and above
                body = _value(record.body)
                yield LogView(record.time_unix_nano or record.observed_time_unix_nano, service, source,
                              "" if body is None else str(body), is_app, problem)


def _attributes(items: Iterable[KeyValue]) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)
