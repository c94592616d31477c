"""`ccr telemetry show DIR -o FILE`: one self-contained page (inline CSS, no script, no external
resource) with a waterfall of the startup trace, the other traces, the logs and the metrics.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from html import escape

from .model import LogView, MetricView, TelemetryView, TraceView
from .textview import format_time

_PALETTE = ("#4f7cff", "#13a89e", "#9b59d0", "#e08a1e", "#2f9e44", "#d6336c", "#1c7ed6", "#7950f2",
            "#0ca678", "#f08c00")
_CSS = """
:root { --bg:#f5f6fa; --card:#fff; --ink:#1d2330; --muted:#6b7385; --line:#e3e6ee; --err:#d9363e; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
header { background:linear-gradient(120deg,#1f2a48,#2d3f74); color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header p { margin:0; color:#c4cbe0; font-size:13px; }
main { padding:20px 32px 40px; max-width:1400px; }
.cards { display:flex; gap:12px; flex-wrap:wrap; margin:-34px 0 20px; }
.card { background:var(--card); border-radius:10px; padding:12px 18px; min-width:150px;
  box-shadow:0 1px 3px rgba(20,30,60,.12); }
.card b { display:block; font-size:22px; font-weight:600; }
.card span { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card.bad b { color:var(--err); }
section { background:var(--card); border-radius:10px; padding:16px 20px 18px; margin-bottom:18px;
  box-shadow:0 1px 3px rgba(20,30,60,.10); }
h2 { font-size:16px; margin:0 0 12px; font-weight:600; }
h2 small { color:var(--muted); font-weight:400; margin-left:8px; }
.wf { display:grid; grid-template-columns:minmax(260px,32%) 1fr; }
.wf .axis { grid-column:2; position:relative; height:20px; border-bottom:1px solid var(--line);
  color:var(--muted); font-size:11px; }
.wf .axis i { position:absolute; top:2px; transform:translateX(-50%); font-style:normal; white-space:nowrap; }
.wf .axis i:first-child { transform:none; }
.wf .axis i:last-child { transform:translateX(-100%); }
.wf .name { padding:5px 8px 5px 0; border-bottom:1px solid var(--line); white-space:nowrap; overflow:hidden;
  text-overflow:ellipsis; }
.wf .name .svc { display:inline-block; font-size:11px; color:#fff; border-radius:4px; padding:0 5px;
  margin-left:6px; vertical-align:1px; }
.wf .name .err { display:block; color:var(--err); font-size:12px; white-space:normal; }
.wf .track { position:relative; border-bottom:1px solid var(--line); min-height:30px;
  background:repeating-linear-gradient(90deg,transparent 0,transparent calc(25% - 1px),var(--line) calc(25% - 1px),
  var(--line) 25%); }
.wf .bar { position:absolute; top:7px; height:16px; border-radius:3px; min-width:2px; }
.wf .bar.failed { background:repeating-linear-gradient(45deg,var(--err),var(--err) 6px,#ef6b72 6px,#ef6b72 12px)
  !important; }
.wf .dur { position:absolute; top:6px; font-size:12px; color:var(--muted); white-space:nowrap;
  padding-left:6px; }
.wf .dur.inside { color:#fff; padding:0 6px 0 0; transform:translateX(-100%); }
.wf .dur.before { padding:0 6px 0 0; transform:translateX(-100%); }
.wf .logs i { position:absolute; top:8px; width:2px; height:14px; background:#8a93a8; border-radius:1px; }
.wf .logs i.problem { background:var(--err); width:3px; }
.wf .logs-label { color:var(--muted); font-style:italic; }
.tree { color:#aab1c2; }
details { margin-top:10px; } summary { cursor:pointer; color:#2d3f74; font-weight:500; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th { text-align:left; color:var(--muted); font-weight:500; font-size:12px; text-transform:uppercase;
  letter-spacing:.03em; border-bottom:2px solid var(--line); padding:6px 10px 6px 0; }
td { border-bottom:1px solid var(--line); padding:5px 10px 5px 0; vertical-align:top; }
td.mono, .mono { font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace; font-size:12.5px; }
td.when { white-space:nowrap; color:var(--muted); }
.badge { display:inline-block; border-radius:10px; padding:0 8px; font-size:11.5px; background:#e7ebf5;
  color:#34405e; white-space:nowrap; }
.badge.stderr, .badge.problem { background:#fde2e4; color:#b4232b; }
.badge.stdout { background:#e3f4ea; color:#1f7a44; }
tr.problem td.body { color:#b4232b; }
.empty { color:var(--muted); font-style:italic; }
"""


def render_html(view: TelemetryView, *, title: str = "Clean room telemetry") -> str:
    startup = view.traces[0] if view.traces else None
    failed = sum(t.errors for t in view.traces)
    cards = [
        (f"{startup.duration_ms:,.0f} ms" if startup else "–", "startup trace", False),
        (str(sum(len(t.spans) for t in view.traces)), "spans", False),
        (str(failed), "failed steps", failed > 0),
        (str(len(view.logs)), "log records", False),
        (str(len(view.metrics)), "metric points", False),
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<header><h1>{escape(title)}</h1><p>Decrypted and verified telemetry · generated {generated}</p>"
        "</header><main>",
        '<div class="cards">' + "".join(
            f'<div class="card{" bad" if bad else ""}"><b>{escape(value)}</b><span>{escape(label)}</span></div>'
            for value, label, bad in cards) + "</div>",
    ]
    if startup:
        body.append(_trace_section(startup, heading="Startup trace", logs=view.logs))
    if len(view.traces) > 1:
        others = "".join(f"<details><summary>{escape(t.title)} · {t.duration_ms:,.1f} ms · {len(t.spans)} spans"
                         f"{' · ' + str(t.errors) + ' failed' if t.errors else ''}</summary>{_waterfall(t)}"
                         "</details>" for t in view.traces[1:])
        body.append(f"<section><h2>Other traces<small>{len(view.traces) - 1}</small></h2>{others}</section>")
    body.append(_logs_section(view.logs, startup))
    body.append(_metrics_section(view.metrics))
    body.append("</main>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def _colour(service: str) -> str:
    return _PALETTE[int(hashlib.sha256(service.encode()).hexdigest(), 16) % len(_PALETTE)]


def _trace_section(trace: TraceView, *, heading: str, logs: list[LogView]) -> str:
    state = f" · {trace.errors} failed" if trace.errors else ""
    return (f"<section><h2>{escape(heading)}: {escape(trace.title)}<small>{trace.duration_ms:,.1f} ms · "
            f"{len(trace.spans)} spans{state} · started {format_time(trace.start_ns)} · trace "
            f"{trace.trace_id[:16]}</small></h2>{_waterfall(trace, logs)}</section>")


def _waterfall(trace: TraceView, logs: list[LogView] = ()) -> str:
    total = max(trace.end_ns - trace.start_ns, 1)
    ticks = "".join(f'<i style="left:{p}%">{total * p / 100 / 1e6:,.0f} ms</i>' for p in (0, 25, 50, 75, 100))
    rows = [f'<div class="axis">{ticks}</div>']
    for depth, span in trace.spans:
        left = (span.start_ns - trace.start_ns) / total * 100
        width = max(span.end_ns - span.start_ns, 0) / total * 100
        colour = _colour(span.service)
        indent = '<span class="tree">' + "&nbsp;&nbsp;&nbsp;" * (depth - 1) + "└&nbsp;</span>" if depth else ""
        error = f'<span class="err">✗ {escape(span.error)}</span>' if span.error else ""
        hint = escape(f"{span.name} ({span.service}): {span.duration_ms:.2f} ms"
                      + (f" — failed: {span.error}" if span.error else ""), quote=True)
        # The duration sits inside a wide bar, after a narrow one, or before one that ends at the right edge.
        if width > 12:
            label_class, label_at = "dur inside", left + width
        elif left + width < 85:
            label_class, label_at = "dur", left + width
        else:
            label_class, label_at = "dur before", left
        rows.append(
            f'<div class="name" title="{hint}" style="padding-left:{4 + depth * 4}px">{indent}'
            f'{escape(span.name)}<span class="svc" style="background:{colour}">{escape(span.service)}</span>'
            f"{error}</div>"
            f'<div class="track" title="{hint}"><div class="bar{" failed" if span.error else ""}" '
            f'style="left:{left:.3f}%;width:{width:.3f}%;background:{colour}"></div>'
            f'<span class="{label_class}" style="left:{label_at:.3f}%">'
            f"{span.duration_ms:,.1f} ms</span></div>")
    during = [e for e in logs if trace.start_ns <= e.time_ns <= trace.end_ns]
    if during:  # where in the startup each log record was written
        ticks = "".join(_log_tick(e, trace.start_ns, total) for e in during)
        rows.append(f'<div class="name logs-label">log records<span class="svc" style="background:#8a93a8">'
                    f'{len(during)}</span></div><div class="track logs">{ticks}</div>')
    return f'<div class="wf">{"".join(rows)}</div>'


def _log_tick(entry: LogView, start_ns: int, total_ns: int) -> str:
    hint = escape(f"{format_time(entry.time_ns)} {entry.service}/{entry.source}: {entry.body}", quote=True)
    return (f'<i class="{"problem" if entry.is_problem else ""}" '
            f'style="left:{(entry.time_ns - start_ns) / total_ns * 100:.3f}%" title="{hint}"></i>')


def _logs_section(logs: list[LogView], startup: TraceView | None) -> str:
    if not logs:
        return '<section><h2>Logs</h2><p class="empty">No log records.</p></section>'
    rows = []
    for entry in logs:
        offset = _offset(entry.time_ns - startup.start_ns) if startup is not None else ""
        badge = "stderr" if entry.is_app and entry.source == "stderr" else (
            "stdout" if entry.is_app else ("problem" if entry.is_problem else ""))
        rows.append(f'<tr class="{"problem" if entry.is_problem else ""}"><td class="when mono">'
                    f"{format_time(entry.time_ns)}<br>{offset}</td><td>{escape(entry.service)}</td>"
                    f'<td><span class="badge {badge}">{escape(entry.source)}</span></td>'
                    f'<td class="body mono">{escape(entry.body)}</td></tr>')
    app_lines = sum(1 for e in logs if e.is_app)
    return (f"<section><h2>Logs<small>{len(logs)} records · {app_lines} from the app · in time order</small></h2>"
            "<table><thead><tr><th>time</th><th>source</th><th>stream / level</th><th>message</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def _offset(ns: int) -> str:
    """Time relative to the start of the startup trace, in the unit a person reads best."""
    sign = "+" if ns >= 0 else "−"
    ms = abs(ns) / 1e6
    if ms < 10_000:
        return f"{sign}{ms:,.1f} ms"
    seconds = ms / 1000
    if seconds < 600:
        return f"{sign}{seconds:,.1f} s"
    return f"{sign}{int(seconds // 60)} min {int(seconds % 60)} s"


def _metrics_section(metrics: list[MetricView]) -> str:
    if not metrics:
        return '<section><h2>Metrics</h2><p class="empty">No metrics.</p></section>'
    rows = "".join(
        f"<tr><td>{escape(m.service)}</td><td class=\"mono\">{escape(m.name)}</td><td>{escape(m.kind)}</td>"
        f"<td class=\"mono\">{escape(m.value)}</td><td>{escape(m.unit)}</td><td class=\"mono\">"
        f"{escape(' '.join(f'{k}={v}' for k, v in sorted(m.attributes.items())))}</td></tr>" for m in metrics)
    return (f"<section><h2>Metrics<small>{len(metrics)} data points</small></h2><table><thead><tr><th>service</th>"
            "<th>metric</th><th>kind</th><th>value</th><th>unit</th><th>attributes</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")
