"""OpenTelemetry setup honouring the standard `OTEL_*` variables.

Without an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or a per-signal `..._TRACES_ENDPOINT` etc.), or
with `OTEL_SDK_DISABLED=true`, nothing is installed and the OTel API stays a no-op: a sidecar run by hand
pays nothing for telemetry. With an endpoint, traces, metrics and logs are exported over OTLP
(`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default as in the OTel spec, `http/json` is not
offered by the Python exporters, or `grpc`).

A room's startup is one trace across processes: a parent passes its span context to a child process in
the `TRACEPARENT` environment variable (W3C trace-context format) and the child continues it.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .errors import ConfigError

_SIGNALS = ("TRACES", "METRICS", "LOGS")


def _endpoint_configured(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return True
    return any(env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") for signal in _SIGNALS)


def telemetry_enabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return _endpoint_configured(env)


@dataclass
class Telemetry:
    """What `setup_telemetry` installed; `shutdown()` flushes and stops the exporters."""

    service_name: str
    enabled: bool
    _shutdown: list = field(default_factory=list)

    @property
    def tracer(self) -> trace.Tracer:
        return trace.get_tracer(self.service_name)

    @property
    def meter(self) -> metrics.Meter:
        return metrics.get_meter(self.service_name)

    def shutdown(self) -> None:
        for stop in reversed(self._shutdown):
            stop()
        self._shutdown.clear()


_installed: Telemetry | None = None


def setup_telemetry(service_name: str, env: Mapping[str, str] | None = None) -> Telemetry:
    """Install OTLP exporters for traces, metrics and logs if an endpoint is configured. Idempotent."""
    global _installed
    if _installed is not None:
        return _installed
    env = os.environ if env is None else env
    service_name = env.get("OTEL_SERVICE_NAME", service_name)
    if not telemetry_enabled(env):
        _installed = Telemetry(service_name, enabled=False)
        return _installed

    # lazy: the SDK (~100 ms with the exporters) loads only where an OTLP endpoint is configured
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    span_exporter, metric_exporter, log_exporter = _exporters(env)
    resource = Resource.create({"service.name": service_name})

    # The standard OTEL_TRACES_SAMPLER wins when set; otherwise the room's sampler (see RoomSampler).
    sampler = None if env.get("OTEL_TRACES_SAMPLER") else RoomSampler(_request_ratio(env))
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)

    reader = PeriodicExportingMetricReader(metric_exporter)
    REQUEST_DURATIONS.export_with(reader, resource)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    set_logger_provider(logger_provider)
    otel_handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
    logging.getLogger().addHandler(otel_handler)

    def stop_logs() -> None:
        logging.getLogger().removeHandler(otel_handler)
        logger_provider.shutdown()

    _installed = Telemetry(service_name, enabled=True,
                           _shutdown=[tracer_provider.shutdown, meter_provider.shutdown, stop_logs])
    return _installed


REQUEST_RATIO_ENV = "CCR_OTEL_REQUEST_SAMPLE_RATIO"
DEFAULT_REQUEST_RATIO = 0.01


def _request_ratio(env: Mapping[str, str]) -> float:
    text = env.get(REQUEST_RATIO_ENV)
    if text is None:
        return DEFAULT_REQUEST_RATIO
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"{REQUEST_RATIO_ENV}={text!r}: expected a number from 0 to 1")
    return ratio


# Set in the parent context of a request span by RequestTelemetryMiddleware once it has drawn the request
# into the sampled share: the sampler keeps that span rather than drawing again (two independent draws kept
# ratio² of the requests: 1 in 10,000 instead of 1 in 100).
_REQUEST_DRAWN = otel_context.create_key("ccr.request_drawn")


class RoomSampler(Sampler):
    """Every step of the room; every request a caller traced; a sample of the requests nobody traced.

    Steps (startup, key release, export, ...) are always recorded, also when they run inside a request
    whose own span was sampled out (they then appear without their parent). A request continuing a
    caller's `traceparent` follows the caller's decision. A request arriving without a trace (the
    launcher's log hand-over, OTLP ingestion, health checks) gets a span for `request_ratio` of requests
    only: at thousands of requests per second one span each would cost a sidecar more than its own work,
    and the request duration histogram counts every request anyway.
    """

    def __init__(self, request_ratio: float = DEFAULT_REQUEST_RATIO):
        self.request_ratio = request_ratio
        self._requests = TraceIdRatioBased(request_ratio)
        self._callers = ParentBased(ALWAYS_ON)

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid:
            drawn = kind is trace.SpanKind.SERVER and otel_context.get_value(_REQUEST_DRAWN, parent_context)
            sampler = self._requests if kind is trace.SpanKind.SERVER and not drawn else ALWAYS_ON
        elif parent.is_remote:
            sampler = self._callers
        else:
            sampler = ALWAYS_ON
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"RoomSampler{{untraced requests: {self.request_ratio:g}}}"


def _exporters(env: Mapping[str, str]):
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol == "grpc":
        # lazy: only the configured protocol's exporters load (the gRPC ones bring grpc, 56 ms)
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        # lazy: only the configured protocol's exporters load (the HTTP ones, 67 ms)
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use grpc or http/protobuf")
    # The exporters read their endpoint, headers and timeouts from the same OTEL_* variables themselves.
    return OTLPSpanExporter(), OTLPMetricExporter(), OTLPLogExporter()


def traceparent_env() -> dict[str, str]:
    """The current span context as environment variables for a child process (empty if no span)."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return {"TRACEPARENT": carrier["traceparent"]} if "traceparent" in carrier else {}


def attach_parent_from_env(env: Mapping[str, str] | None = None) -> None:
    """Continue the trace a parent process passed in `TRACEPARENT`, if any."""
    env = os.environ if env is None else env
    if "TRACEPARENT" in env:
        ctx = TraceContextTextMapPropagator().extract({"traceparent": env["TRACEPARENT"]})
        otel_context.attach(ctx)


@contextmanager
def step_span(tracer: trace.Tracer, name: str, **attributes) -> Iterator[trace.Span]:
    """A span for one step of the room; an exception marks it failed with the error and re-raises."""
    with tracer.start_as_current_span(name, attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        else:
            span.set_status(Status(StatusCode.OK))


_TRACE_HEADERS = (b"traceparent", b"tracestate")


class RequestTelemetryMiddleware:
    """ASGI middleware: a SERVER span per HTTP request, continuing the caller's `traceparent` header (so a
    call from one sidecar to another stays in one trace), and the `http.server.request.duration`
    histogram, with the OTel HTTP semantic convention names.

    `create_app` uses it instead of FastAPI's built-in instrumentation, which computes some twenty
    attributes per request even for spans the sampler drops and costs a light endpoint half its
    throughput (bench/telemetry.py measures this). Under the RoomSampler, a request without a trace that
    falls outside the sampled share gets no span object at all (it would be dropped anyway). Durations go to
    `RequestDurations`, not an SDK histogram (see there).
    """

    def __init__(self, app, *, tracer_provider=None, durations: RequestDurations | None = None):
        self.app = app
        self._propagator = TraceContextTextMapPropagator()
        self._tracer_provider = tracer_provider
        self._durations = REQUEST_DURATIONS if durations is None else durations
        self._tracer: trace.Tracer | None = None
        self._untraced_ratio = 1.0

    def _resolve(self) -> None:
        """On first use: setup_telemetry may run after create_app."""
        provider = self._tracer_provider or trace.get_tracer_provider()
        self._tracer = trace.get_tracer("ccr.http", tracer_provider=provider)
        sampler = getattr(provider, "sampler", None)
        self._untraced_ratio = sampler.request_ratio if isinstance(sampler, RoomSampler) else 1.0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._tracer is None:
            self._resolve()
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in _TRACE_HEADERS}
        status = 500  # what the histogram counts when the app ends without starting a response

        async def send_noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            if carrier:
                parent = self._propagator.extract(carrier)
            elif random.random() < self._untraced_ratio:
                parent = otel_context.set_value(_REQUEST_DRAWN, True)
            else:
                await self.app(scope, receive, send_noting_status)
                return
            with self._tracer.start_as_current_span(
                    scope["method"], context=parent,
                    kind=trace.SpanKind.SERVER, record_exception=False, set_status_on_exception=False) as span:
                try:
                    await self.app(scope, receive, send_noting_status)
                except BaseException as exc:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                    raise
                finally:
                    self._describe(span, scope, status)
        finally:
            self._durations.record(time.perf_counter() - started, scope["method"], status,
                                   getattr(scope.get("route"), "path", None))

    @staticmethod
    def _describe(span: trace.Span, scope, code: int) -> None:
        if not span.is_recording():
            return
        method, route = scope["method"], getattr(scope.get("route"), "path", None)
        span.update_name(f"{method} {route}" if route else method)
        span.set_attributes({"http.request.method": method, "url.path": scope["path"],
                             "http.response.status_code": code, **({"http.route": route} if route else {})})
        if code >= 500:
            span.set_status(Status(StatusCode.ERROR))


# The OTel semantic conventions' advised boundaries for `http.server.request.duration`, in seconds.
DURATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# The methods the conventions name; any other a client sends is counted as `_OTHER`, so a client cannot make
# a series per made-up method.
KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
# As the SDK's default cardinality limit: beyond it, measurements go to one overflow series.
MAX_SERIES = 2000
_OVERFLOW = ("_OVERFLOW", 0, None)


class _Series:
    __slots__ = ("buckets", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(DURATION_BOUNDS) + 1)
        self.count, self.sum, self.min, self.max = 0, 0.0, math.inf, -math.inf


class RequestDurations:
    """The `http.server.request.duration` histogram of every request, aggregated here rather than by the
    OTel SDK's `Histogram.record`.

    The SDK validates, copies and hashes the attributes of every measurement and offers it to the exemplar
    reservoir: on the telemetry sidecar's `POST /logs/app` that was 20-25 µs of a ~120 µs request, most of the
    telemetry overhead (bench/telemetry.py). Here a request costs a lock, a dict lookup and a bisect. The
    series go out through the SDK's own metric pipeline: `export_with(reader)` makes the reader's collection
    (the periodic OTLP export) include them as a regular histogram, cumulative or delta as the reader prefers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, int, str | None], _Series] = {}
        self._start_ns = time.time_ns()

    def record(self, seconds: float, method: str, status: int, route: str | None) -> None:
        key = (method if method in KNOWN_METHODS else "_OTHER", status, route)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= MAX_SERIES:
                    key = _OVERFLOW
                series = self._series.setdefault(key, _Series())
            series.buckets[bisect.bisect_left(DURATION_BOUNDS, seconds)] += 1
            series.count += 1
            series.sum += seconds
            if seconds < series.min:  # comparisons, not min()/max(): two calls fewer on every request
                series.min = seconds
            if seconds > series.max:
                series.max = seconds

    def metric(self, *, delta: bool = False):
        """The series as the SDK's `Metric` (None when no request was served); with `delta`, since the last
        delta collection, which starts a new interval."""
        # lazy: the SDK (~100 ms with the exporters) loads only where telemetry is on, as in setup_telemetry
        from opentelemetry.sdk.metrics.export import AggregationTemporality, Histogram, HistogramDataPoint, Metric

        now = time.time_ns()
        with self._lock:
            series, start = list(self._series.items()), self._start_ns
            if delta:
                self._series, self._start_ns = {}, now
            points = [HistogramDataPoint(
                attributes=_attributes(key), start_time_unix_nano=start, time_unix_nano=now, count=s.count,
                sum=s.sum, bucket_counts=list(s.buckets), explicit_bounds=DURATION_BOUNDS, min=s.min, max=s.max)
                for key, s in series]
        if not points:
            return None
        temporality = AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE
        return Metric(name="http.server.request.duration", description="duration of HTTP server requests",
                      unit="s", data=Histogram(data_points=points, aggregation_temporality=temporality))

    def export_with(self, reader, resource) -> None:
        """Have `reader` (an SDK MetricReader, before it is given to a MeterProvider) collect these series with
        the SDK's metrics, under the instrumentation scope `ccr.http`."""
        # lazy: the SDK (~100 ms with the exporters) loads only where telemetry is on, as in setup_telemetry
        from opentelemetry.sdk.metrics import Histogram as SdkHistogram
        from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricsData, ResourceMetrics, ScopeMetrics
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        durations = self
        # (the reader keeps its preference keyed by the SDK's own instrument classes, Histogram's among them)
        delta = any(issubclass(kind, SdkHistogram) and temporality is AggregationTemporality.DELTA
                    for kind, temporality in reader._instrument_class_temporality.items())
        set_callback = reader._set_collect_callback

        def with_durations(collect):
            if collect is None:  # the provider shutting down
                set_callback(None)
                return

            def collect_all(metric_reader, timeout_millis: float = 10_000):
                data = collect(metric_reader, timeout_millis=timeout_millis)
                metric = durations.metric(delta=delta)
                if metric is None:
                    return data
                scope = ScopeMetrics(scope=InstrumentationScope("ccr.http"), metrics=[metric], schema_url="")
                if data is None or not data.resource_metrics:
                    return MetricsData([ResourceMetrics(resource=resource, scope_metrics=[scope], schema_url="")])
                first, *rest = data.resource_metrics
                merged = ResourceMetrics(resource=first.resource, scope_metrics=[*first.scope_metrics, scope],
                                         schema_url=first.schema_url)
                return MetricsData([merged, *rest])
            set_callback(collect_all)

        reader._set_collect_callback = with_durations


def _attributes(key: tuple[str, int, str | None]) -> dict[str, Any]:
    if key is _OVERFLOW:
        return {"otel.metric.overflow": True}
    method, status, route = key
    return {"http.request.method": method, "http.response.status_code": status,
            **({"http.route": route} if route else {})}


#: The process's request durations, exported by setup_telemetry's metric reader.
REQUEST_DURATIONS = RequestDurations()
