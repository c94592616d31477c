"""The audit report: the collaboration's audit events as a timeline, the hash chain verified here (with the
same `auditchain` the CLI uses), the room's attestation verified here, and the whole as one self-contained
HTML file (inline style, no script, nothing fetched), or that file printed as a PDF (pdf.py)."""

from __future__ import annotations

import datetime as dt
import html
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from ..common.auditchain import verify_chain
from .attestation import verify_room
from .collaborations import get_collaboration, require_collaboration
from .deps import PartyDep
from .errors import FieldError, one_line
from .party import Party
from .pdf import html_to_pdf

router = APIRouter(prefix="/api/collaborations/{collaboration_id}", tags=["audit"])
MAX_FILTER_CHARS = 64
#: the exported report runs nothing and loads nothing: inline style only
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


def _timestamp(value: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC).isoformat(timespec="milliseconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)[:40]


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    fields = data if isinstance(data, dict) else {}
    scope = str(event.get("scope") or "")
    party = fields.get("member") or ("cgs" if scope == "cgs" else "room")
    kind = fields.get("action") or fields.get("event") or fields.get("outcome") or event.get("id") or scope
    run = fields.get("runId") or fields.get("run")
    summary = ", ".join(f"{k}={v}" for k, v in fields.items() if isinstance(v, (str, int, float, bool)))
    return {"seqno": event.get("seqno"), "timestamp": _timestamp(event.get("timestamp")), "party": str(party),
            "kind": str(kind), "run": str(run) if run else None, "summary": one_line(summary or str(data)),
            "data": data}


def audit(party: Party, contract_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    events, head = party.client().events(contract_id)
    problems = verify_chain(events, head)
    return [event_view(e) for e in events], {"verified": not problems, "events": len(events), "problems": problems}


def _filter(value: str | None, field: str) -> str | None:
    if value is not None and len(value) > MAX_FILTER_CHARS:
        raise FieldError.one(field, f"is longer than {MAX_FILTER_CHARS} characters")
    return value or None


@router.get("/auditevents")
def audit_events(collaboration_id: str, party: PartyDep,
                 party_name: Annotated[str | None, Query(alias="party")] = None, kind: str | None = None,
                 run: str | None = None) -> dict[str, Any]:
    cid, _members, _me = require_collaboration(party, collaboration_id)
    wanted = {"party": _filter(party_name, "party"), "kind": _filter(kind, "kind"), "run": _filter(run, "run")}
    events, chain = audit(party, cid)
    shown = [e for e in events if all(v is None or e[k] == v for k, v in wanted.items())]
    return {"value": shown, "chain": chain}


def report(party: Party, collaboration_id: str) -> dict[str, Any]:
    cid, _members, _me = require_collaboration(party, collaboration_id)
    events, chain = audit(party, cid)
    return {"collaboration": get_collaboration(cid, party), "chain": chain, "events": events,
            "attestation": verify_room(party.room_evidence, party.client(), cid),
            "generatedAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


@router.get("/report")
def get_report(collaboration_id: str, party: PartyDep) -> dict[str, Any]:
    return report(party, collaboration_id)


@router.get("/report.html", response_class=HTMLResponse)
def get_report_html(collaboration_id: str, party: PartyDep) -> HTMLResponse:
    answer = report(party, collaboration_id)
    cid = answer["collaboration"]["id"]
    return HTMLResponse(render_html(answer), headers={
        "content-disposition": f'attachment; filename="audit-report-{cid}.html"',
        # the file is opened from disk later; as served, it may run nothing and load nothing
        "content-security-policy": REPORT_POLICY})


@router.get("/report.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}, "description": "the report as a PDF"}})
def get_report_pdf(collaboration_id: str, party: PartyDep) -> Response:
    answer = report(party, collaboration_id)
    pdf = html_to_pdf(render_html(answer))
    return Response(pdf, media_type="application/pdf", headers={
        "content-disposition": f'attachment; filename="audit-report-{answer["collaboration"]["id"]}.pdf"'})


_STYLE = """body{font-family:system-ui,sans-serif;margin:2rem;color:#111}table{border-collapse:collapse;width:100%}
th,td{border:1px solid #bbb;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
td:last-child{width:50%;overflow-wrap:anywhere}
.ok{color:#0a5d1e;font-weight:bold}.bad{color:#a00;font-weight:bold}code{word-break:break-all}"""


def render_html(answer: dict[str, Any]) -> str:
    e = html.escape
    collaboration, chain, attestation = answer["collaboration"], answer["chain"], answer["attestation"]
    chain_line = (f'<p class="ok">Hash chain verified: {chain["events"]} events, each linked to the one before.</p>'
                  if chain["verified"] else '<p class="bad">Hash chain NOT verified:</p><ul>'
                  + "".join(f"<li>{e(p)}</li>" for p in chain["problems"]) + "</ul>")
    attest = (f'<p class="{"ok" if attestation["verified"] else "bad"}">Room attestation '
              f'{"verified" if attestation["verified"] else "NOT verified"}.</p><ul>'
              + "".join(f"<li>{e(line)}</li>" for line in attestation["lines"]) + "</ul>")
    rows = "".join(f"<tr><td>{e(str(ev['seqno']))}</td><td>{e(ev['timestamp'])}</td><td>{e(ev['party'])}</td>"
                   f"<td>{e(ev['kind'])}</td><td>{e(ev['run'] or '')}</td><td>{e(ev['summary'])}</td></tr>"
                   for ev in answer["events"])
    # the policy travels in the file: opened from disk (or printed), it may still run nothing and load nothing
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{REPORT_POLICY}\">"
            f"<title>Audit report: {e(collaboration['id'])}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Audit report: collaboration {e(collaboration['id'])}</h1>"
            f"<p>State {e(str(collaboration['state']))}; members {e(', '.join(collaboration['members']))}; "
            f"generated {e(answer['generatedAt'])} by this party's own workspace.</p>"
            f"<h2>Audit chain</h2>{chain_line}<h2>Room attestation</h2>{attest}"
            f"<h2>Timeline</h2><table><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Time (UTC)</th>"
            f"<th scope=\"col\">Party</th><th scope=\"col\">Kind</th><th scope=\"col\">Run</th>"
            f"<th scope=\"col\">Details</th></tr></thead><tbody>{rows}</tbody></table></body></html>")
