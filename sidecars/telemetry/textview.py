"""`ccr telemetry show DIR` in the terminal: span trees with durations and errors, a metrics table, the
logs in time order.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .model import LogView, MetricView, TelemetryView, TraceView


def format_time(ns: int) -> str:
    moment = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def render_text(view: TelemetryView) -> str:
    parts = [_traces(view.traces), _metrics(view.metrics), _logs(view.logs)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _traces(traces: list[TraceView]) -> str:
    if not traces:
        return "Traces: none"
    lines = [f"Traces ({len(traces)})"]
    for trace in traces:
        errors = f", {trace.errors} failed" if trace.errors else ""
        lines.append(f"\ntrace {trace.trace_id[:16]}  {trace.title}  {trace.duration_ms:.1f} ms, "
                     f"{len(trace.spans)} spans{errors}  (started {format_time(trace.start_ns)})")
        rows = [("  " * depth + span.name, span.service, span.duration_ms, span.error)
                for depth, span in trace.spans]
        width = max(len(r[0]) for r in rows)
        service_width = max(len(r[1]) for r in rows)
        for label, service, duration, error in rows:
            mark = f"  FAILED: {error}" if error else ""
            lines.append(f"  {label:<{width}}  {service:<{service_width}}  {duration:>9.1f} ms{mark}")
    return "\n".join(lines)


def _metrics(metrics: list[MetricView]) -> str:
    if not metrics:
        return "Metrics: none"
    header = ("SERVICE", "METRIC", "KIND", "VALUE", "UNIT", "ATTRIBUTES")
    rows = [(m.service, m.name, m.kind, m.value, m.unit,
             " ".join(f"{k}={v}" for k, v in sorted(m.attributes.items()))) for m in metrics]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"Metrics ({len(metrics)} data points)"]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _logs(logs: list[LogView]) -> str:
    if not logs:
        return "Logs: none"
    lines = [f"Logs ({len(logs)} records, in time order)"]
    width = max(len(f"{e.service}/{e.source}") for e in logs)
    for entry in logs:
        origin = f"{entry.service}/{entry.source}"
        lines.append(f"  {format_time(entry.time_ns)}  {origin:<{width}}  {entry.body}")
    return "\n".join(lines)
