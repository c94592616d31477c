"""Request telemetry every sidecar built on sidecars/common/http.py gets when OTel is on: a server span that
continues the caller's trace, the duration histogram, and the room's sampler."""

from __future__ import annotations

import bisect

import httpx
import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sidecars.common.errors import ConfigError, RemoteServiceError
from sidecars.common.http import create_app
from sidecars.common.otel import (
    MAX_SERIES,
    RequestDurations,
    RequestTelemetryMiddleware,
    RoomSampler,
    _request_ratio,
    step_span,
)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _app_with(spans: InMemorySpanExporter, reader: InMemoryMetricReader, sampler=None):
    app = create_app("t")

    provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()

    @app.get("/items/{item}")
    def item(item: str) -> dict:
        if item == "broken":
            raise RemoteServiceError("storage", "unreachable")
        if item == "step":
            with step_span(provider.get_tracer("sidecar"), "key-release"):
                pass
        return {"item": item}

    provider.add_span_processor(SimpleSpanProcessor(spans))
    durations = RequestDurations()
    durations.export_with(reader, Resource.create({"service.name": "t"}))  # as setup_telemetry wires its reader
    reader.meter_provider = MeterProvider(metric_readers=[reader])
    app.add_middleware(RequestTelemetryMiddleware, tracer_provider=provider, durations=durations)
    return app, provider


async def _get(app, path: str, headers: dict | None = None) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar") as client:
        return (await client.get(path, headers=headers)).status_code


def _durations(reader: InMemoryMetricReader) -> list[int]:
    return sorted(p.attributes["http.response.status_code"] for rm in reader.get_metrics_data().resource_metrics
                  for sm in rm.scope_metrics for m in sm.metrics if m.name == "http.server.request.duration"
                  for p in m.data.data_points)


@pytest.mark.anyio
async def test_request_spans_continue_the_callers_trace_and_mark_failures():
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    app, _ = _app_with(spans, reader)
    assert await _get(app, "/items/a", {"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}) == 200
    assert await _get(app, "/items/broken") == 502

    ok, failed = spans.get_finished_spans()
    assert ok.name == "GET /items/{item}" and ok.kind is SpanKind.SERVER
    assert format(ok.context.trace_id, "032x") == CALLER_TRACE and ok.parent.span_id == 0x00f067aa0ba902b7
    assert ok.attributes["http.response.status_code"] == 200 and ok.attributes["url.path"] == "/items/a"
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["http.response.status_code"] == 502
    assert format(failed.context.trace_id, "032x") != CALLER_TRACE
    assert _durations(reader) == [200, 502]


@pytest.mark.anyio
async def test_room_sampler_keeps_traced_work_and_samples_untraced_requests():
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    app, provider = _app_with(spans, reader, sampler=RoomSampler(0.0))
    for _ in range(5):  # nobody traced these: no spans at ratio 0, but every request is counted
        assert await _get(app, "/items/a") == 200
    assert spans.get_finished_spans() == ()
    assert _durations(reader) == [200]  # one data point (same attributes) ...
    count = next(p.count for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
                 for m in sm.metrics for p in m.data.data_points)
    assert count == 5  # ... counting all five requests

    # A call that continues a sampled trace is recorded, and so is every step of the room.
    assert await _get(app, "/items/b", {"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}) == 200
    tracer = provider.get_tracer("room")
    with step_span(tracer, "room.startup"), step_span(tracer, "firewall"):
        pass
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["GET /items/{item}", "firewall", "room.startup"]
    # An unsampled caller's choice is respected.
    assert await _get(app, "/items/c", {"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-00"}) == 200
    assert len(spans.get_finished_spans()) == 3
    # A step run by a request nobody traced is recorded although the request's own span is not.
    assert await _get(app, "/items/step") == 200
    assert [s.name for s in spans.get_finished_spans()][3:] == ["key-release"]


@pytest.mark.anyio
async def test_the_sampled_share_of_untraced_requests_is_the_ratio_not_its_square():
    # The middleware draws an untraced request into the share; the sampler must keep what it drew rather than
    # draw again (two draws at 0.5 kept a quarter).
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    app, _ = _app_with(spans, reader, sampler=RoomSampler(0.5))
    requests = 400
    for _ in range(requests):
        assert await _get(app, "/items/a") == 200
    kept = len(spans.get_finished_spans()) / requests
    assert 0.38 <= kept <= 0.62, kept  # 0.5 ± 4.8 standard deviations


def _points(reader: InMemoryMetricReader):
    data = reader.get_metrics_data()  # None: nothing to report
    return [p for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics for m in sm.metrics
            if m.name == "http.server.request.duration" for p in m.data.data_points]


@pytest.mark.anyio
async def test_every_request_is_counted_in_its_bucket_and_made_up_methods_make_no_new_series():
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    app, _ = _app_with(spans, reader, sampler=RoomSampler(0.0))
    for _ in range(3):
        assert await _get(app, "/items/a") == 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar") as client:
        for n in range(50):  # a hostile client's methods: each would otherwise be a series of its own
            await client.request(f"BREW{n}", "/items/a")
    (got, other) = sorted(_points(reader), key=lambda p: p.attributes["http.request.method"])
    assert got.attributes == {"http.request.method": "GET", "http.response.status_code": 200,
                              "http.route": "/items/{item}"}
    assert got.count == 3 == sum(got.bucket_counts) and got.min <= got.sum / 3 <= got.max
    assert got.explicit_bounds[0] == 0.005  # seconds, as the conventions advise
    # each request in the bucket of its duration: all between the fastest's and the slowest's (a loaded box
    # can take longer than the first bound's 5 ms)
    lowest, highest = (bisect.bisect_left(got.explicit_bounds, s) for s in (got.min, got.max))
    assert sum(got.bucket_counts[lowest:highest + 1]) == 3 and got.bucket_counts[lowest] >= 1
    assert other.attributes["http.request.method"] == "_OTHER" and other.count == 50


def test_series_are_bounded_and_delta_readers_get_each_interval_once():
    durations = RequestDurations()
    for n in range(MAX_SERIES + 500):
        durations.record(0.02, "GET", 200, f"/route/{n}")
    points = durations.metric().data.data_points
    assert len(points) == MAX_SERIES + 1
    assert sum(p.count for p in points if p.attributes == {"otel.metric.overflow": True}) == 500

    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    delta = RequestDurations()
    delta.export_with(reader, Resource.create({}))
    reader.meter_provider = MeterProvider(metric_readers=[reader])
    delta.record(0.3, "POST", 201, "/x")
    assert [p.count for p in _points(reader)] == [1]
    assert _points(reader) == []  # nothing new since
    delta.record(0.3, "POST", 201, "/x")
    assert [(p.count, p.bucket_counts[7]) for p in _points(reader)] == [(1, 1)]  # 0.25 < 0.3 <= 0.5


def test_request_ratio_is_validated():
    assert _request_ratio({}) == 0.01
    assert _request_ratio({"CCR_OTEL_REQUEST_SAMPLE_RATIO": "0.5"}) == 0.5
    for bad in ("2", "-0.1", "half"):
        with pytest.raises(ConfigError, match="CCR_OTEL_REQUEST_SAMPLE_RATIO"):
            _request_ratio({"CCR_OTEL_REQUEST_SAMPLE_RATIO": bad})


@pytest.fixture
def anyio_backend():
    return "asyncio"
