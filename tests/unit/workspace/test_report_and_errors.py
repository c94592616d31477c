"""The workspace's pure parts, attacked: an audit event that carries markup cannot script the exported report;
a tampered chain is reported as such; a run's output names cannot read outside the download; a document's
problems land on their fields."""

from __future__ import annotations

import pytest

from sidecars.analytics.documents import AnalyticsDocumentError, parse_dataset
from sidecars.common.auditchain import GENESIS, event_hash, verify_chain
from sidecars.workspace.audit import REPORT_POLICY, event_view, render_html
from sidecars.workspace.errors import document_problems
from sidecars.workspace.pdf import PdfUnavailable, html_to_pdf
from sidecars.workspace.runs import table


def chain(*datas: dict) -> list[dict]:
    events, prev = [], GENESIS
    for seqno, data in enumerate(datas, start=1):
        stamp = str(1764900000000 + seqno)
        digest = event_hash(prev, seqno, stamp, "cgs", "governance", data)
        events.append({"seqno": seqno, "timestamp": stamp, "scope": "cgs", "id": "governance", "data": data,
                       "prev_hash": prev, "hash": digest})
        prev = digest
    return events


def report(events: list[dict]) -> dict:
    problems = verify_chain(events)
    return {"collaboration": {"id": "c<1>", "state": "Accepted", "members": ["a", "<b>"]},
            "chain": {"verified": not problems, "events": len(events), "problems": problems},
            "events": [event_view(e) for e in events], "generatedAt": "2026-12-05T00:00:00+00:00",
            "attestation": {"verified": False, "lines": ["NOT VERIFIED: <img src=x onerror=alert(1)>"],
                            "claims": None, "problem": "x"}}


def test_markup_in_events_cannot_script_the_exported_report():
    events = chain({"action": "propose", "member": "<script>alert(1)</script>"},
                   {"action": "vote\"><iframe src=//evil>", "member": "northwind"})
    page = render_html(report(events))
    assert "<script" not in page and "<iframe" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "Hash chain verified: 2 events" in page


def test_a_tampered_event_is_reported_not_verified():
    events = chain({"action": "propose", "member": "northwind"}, {"action": "vote", "member": "woodgrove"})
    events[0]["data"]["member"] = "mallory"
    page = render_html(report(events))
    assert "Hash chain NOT verified" in page and "seqno 1: content does not match its hash" in page


def test_event_views_name_party_kind_and_run():
    [view] = [event_view(e) for e in chain({"action": "run", "runId": "r1", "member": "woodgrove"})]
    assert (view["party"], view["kind"], view["run"]) == ("woodgrove", "run", "r1")
    assert view["timestamp"].startswith("2025-12-05T")


def test_run_outputs_cannot_name_files_outside_the_download(tmp_path):
    root = tmp_path / "download"
    root.mkdir()
    (root / "part-0.csv").write_text("country,n\nDE,12\nFR,7\n")
    (tmp_path / "secret.csv").write_text("password\nhunter2\n")
    result = table(root, ["../secret.csv", "/etc/passwd", "part-0.csv"])
    assert result["columns"] == ["country", "n"] and result["rows"] == [["DE", 12], ["FR", 7]]
    assert result["series"] == {"x": "country", "y": ["n"]}


def test_document_problems_land_on_their_fields():
    text = ('{"name": "s", "owner": "n", "store": "st", "container": "c", "format": "csv", '
            '"schema": [{"name": "a", "type": "blob"}], "allowedFields": ["zz"], "accessMode": "row", '
            '"encryption": {"mode": "SSE"}}')
    with pytest.raises(AnalyticsDocumentError) as refused:
        parse_dataset(text)
    fields = {p["field"] for p in document_problems(refused.value, "document")}
    assert {"document.schema[0].type", "document.allowedFields[0]"} <= fields


def test_without_chromium_the_pdf_export_says_so_in_one_line(monkeypatch):
    monkeypatch.setenv("CCR_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PdfUnavailable) as refused:
        html_to_pdf(render_html(report(chain({"action": "propose", "member": "northwind"}))))
    assert refused.value.http_status == 503 and "needs Chromium" in refused.value.message
    assert "\n" not in refused.value.message


def test_the_exported_report_carries_its_own_policy_against_scripts_and_fetches():
    page = render_html(report(chain({"action": "propose", "member": "northwind"})))
    assert f'<meta http-equiv="Content-Security-Policy" content="{REPORT_POLICY}">' in page
    assert REPORT_POLICY.startswith("default-src 'none';")
