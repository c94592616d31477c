"""The northwind/woodgrove analytics story through two workspaces in a real browser (root: the room).

Northwind and woodgrove each run `ccr workspace` with their own member identity; each party's page is its
own Chromium context. Through the pages alone: both see the collaboration and its members; woodgrove
writes a query in the editor, the room's checks refuse a column northwind does not allow as it is typed,
and northwind approves the fixed query; woodgrove runs it; a query woodgrove never approved is refused, and
once northwind revokes its dataset's consent with the keyboard a run over it is refused naming northwind;
northwind's audit report verifies the chain and the room's attestation (fresh evidence the room's ingress
serves beside its API; nothing else of skr is reachable from outside) and exports itself as one HTML file.
Last, woodgrove's result: refused next to its button while the room is up (its sink's manifest is signed
when the room stops), then, after `ccr room down`, read decrypted as a table and a chart, and the run list
still there, each run finished or failed. Every view passes
the accessibility checks and is photographed. Hostile input: markup in a query's SQL stays text in the other
party's page, and a bad form shows its one line next to the field.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidecars.attestation import Evidence
from sidecars.attestation.maa_client import report_data_for
from sidecars.attestation.report import SnpReport
from sidecars.common.roomevidence import PUBLIC_EVIDENCE_PATH, runtime_data_for_nonce
from tests.system.analytics.conftest import EXAMPLE
from tests.workspacepages.pages import PartyPage, party_page, shown_errors, start_workspace
from tests.workspacepages.pdftext import page_count, pdf_text

pytestmark = [pytest.mark.root, pytest.mark.slow]

RUN_TIMEOUT_MS = 600_000
#: typed into the SQL editor: email is in northwind's schema but not in its allowedFields
DISALLOWED_SQL = ("SELECT w.segment, n.email, COUNT(*) AS purchases FROM northwind n JOIN woodgrove w "
                  "ON n.customer_id = w.customer_id GROUP BY w.segment, n.email")
ALLOWED_SQL = ("SELECT w.segment, COUNT(*) AS purchases FROM northwind n JOIN woodgrove w "
               "ON n.customer_id = w.customer_id GROUP BY w.segment")
#: markup in a string literal: the other party's page must show it as text, never run it
FINAL = re.compile("^(succeeded|validated|refused|failed|revoked)$")
MARKUP = "<img src=x onerror=window.wsuiOwned=1>"


@pytest.fixture(scope="module")
def parties(analytics_room, browser, screenshots, tmp_path_factory) -> Iterator[dict[str, PartyPage]]:
    room = analytics_room.room
    logs = tmp_path_factory.mktemp("wsui-workspaces")
    started = []
    try:
        # woodgrove's own key store holds its datasink's data key (the demo kept it beside its identity)
        woodgrove_home = logs / "woodgrove-home"
        (woodgrove_home / "deks").mkdir(parents=True)
        shutil.copy(Path(room.members) / "woodgrove-output-dek.json",
                    woodgrove_home / "deks" / "devstoreaccount1-woodgrove-output.json")
        # the room runs on the stand-ins' mock SEV-SNP platform: each party says it trusts it
        platform = json.loads(Path(room.endpoints).read_text())["mock_platform_dir"]
        for name in ("northwind", "woodgrove"):
            started.append(start_workspace(
                name, logs, "--identity", room.identity(name), "--endpoints", room.endpoints,
                "--room", analytics_room.url, "--contract-ca", str(analytics_room.ca), "--spec", str(room.spec),
                "--trust-mock-platform", platform,
                env={"CCR_HOME": str(woodgrove_home)} if name == "woodgrove" else None))
        pages = {workspace.name: party_page(browser, workspace, screenshots) for workspace in started}
        yield pages
        for party in pages.values():
            assert not party.console_errors, f"{party.name}'s page threw: {party.console_errors}"
            party.context.close()
    finally:
        for workspace in started:
            workspace.stop()


def select_collaboration(party: PartyPage, contract: str) -> None:
    party.page.get_by_label("Collaboration", exact=True).select_option(contract)


def test_both_parties_see_the_collaboration_and_its_members(parties, analytics_room):
    contract = analytics_room.room.contract
    for name, party in parties.items():
        page = party.view("collaborations")
        select_collaboration(party, contract)
        party.wait_ready("collaborations")
        members = page.get_by_role("table", name=f"Members of {contract}")
        assert members.get_by_text(f"{name} (you)").count() == 1
        other = "woodgrove" if name == "northwind" else "northwind"
        assert members.get_by_role("cell", name=other, exact=True).count() == 1
        consent = page.get_by_role("switch", name=f"Execution consent for {contract}")
        assert consent.get_attribute("aria-checked") == "true"
    parties["northwind"].check_and_photograph("collaborations")
    # the keyboard alone moves between views: Enter on a link of the navigation opens its view
    page = parties["northwind"].page
    page.get_by_role("navigation", name="Views").get_by_role("link", name="Datasets").focus()
    page.keyboard.press("Enter")
    parties["northwind"].wait_ready("datasets")
    assert page.evaluate("() => document.activeElement.tagName") == "H1"  # focus on the new view's heading


def test_a_publish_from_a_folder_that_is_not_there_is_refused_next_to_the_field(parties):
    page = parties["northwind"].view("datasets")
    page.get_by_label("Dataset name").fill("wsui-missing")
    page.get_by_label("Folder with the data").fill("/nonexistent/wsui-folder")
    page.get_by_label("Room spec").fill("/nonexistent/spec.yaml")
    page.get_by_label("Store (volume name in the spec)").fill("northwind-input")
    page.get_by_label("Container or bucket").fill("northwind-input")
    page.get_by_label("Schema").fill("customer_id string\namount int")
    page.get_by_label("Allowed fields").fill("customer_id, amount")
    page.get_by_label("Data key secret (CGS)").fill("northwind-input-dek")
    page.get_by_label("Key encryption key name").fill("northwind-kek")
    page.get_by_role("button", name="Encrypt, upload and propose").click()
    errors = shown_errors(page)
    assert list(errors) == ["data.folder"], errors
    assert "/nonexistent/wsui-folder" in errors["data.folder"] and "\n" not in errors["data.folder"]
    assert page.evaluate("() => document.activeElement.name") == "data.folder"
    assert page.get_by_role("cell", name="wsui-missing").count() == 0


def test_an_invitation_with_a_bad_address_is_refused_next_to_the_field(parties):
    page = parties["northwind"].view("collaborations")
    page.get_by_label("E-mail address").fill("not an address")
    page.get_by_label("Member name").fill("contoso")
    page.get_by_role("button", name="Send invitation").click()
    errors = shown_errors(page)
    assert list(errors) == ["email"], errors
    assert "\n" not in errors["email"] and "Traceback" not in errors["email"]
    assert page.get_by_label("E-mail address").get_attribute("aria-invalid") == "true"


def test_datasets_show_schema_and_owner_policy_and_never_anothers_unpublished_one(parties, analytics_room):
    contract = analytics_room.room.contract
    # northwind proposes a dataset it has not accepted yet: a draft, for northwind's eyes only
    draft = {**json.loads((EXAMPLE / "documents" / "northwind-sales.dataset.json").read_text()), "name": "wsui-draft"}
    answer = parties["northwind"].workspace.api("POST", f"/collaborations/{contract}/datasets",
                                                {"document": draft, "vote": False})
    assert answer.status_code == 201, answer.text
    assert parties["northwind"].view("datasets").get_by_role("cell", name="wsui-draft", exact=True).count() == 1
    page = parties["woodgrove"].view("datasets")
    assert page.get_by_text("wsui-draft").count() == 0
    datasets = page.get_by_role("table", name=re.compile("^Datasets of "))
    assert datasets.get_by_role("cell", name="northwind-sales", exact=True).count() == 1
    page.get_by_text("northwind-sales: schema and owner policy").click()
    schema = page.get_by_role("table", name="Schema of northwind-sales")
    email_row = schema.get_by_role("row").filter(has=page.get_by_role("cell", name="email", exact=True))
    assert email_row.get_by_role("cell", name="no", exact=True).count() == 1  # not in allowedFields
    # woodgrove cannot switch northwind's consent: it sees the state, not a switch
    assert page.get_by_role("switch", name="Consent for northwind-sales").count() == 0
    parties["woodgrove"].check_and_photograph("datasets")


def test_the_editor_runs_the_rooms_checks_as_you_type_and_the_owner_approves(parties):
    woodgrove, northwind = parties["woodgrove"], parties["northwind"]
    page = woodgrove.view("queries")
    page.get_by_label("Query id").fill("wsui-segments")
    page.get_by_label("Input datasets").fill("northwind-sales as northwind\nwoodgrove-customers as woodgrove")
    page.get_by_label("Output datasink").fill("woodgrove-output")
    sql = page.get_by_label("SQL", exact=True)
    sql.fill(DISALLOWED_SQL)
    problem = page.locator("#guard-checks li.problem")
    problem.first.wait_for()
    assert "email" in problem.first.inner_text()
    beside = page.locator("[data-field='document.segments'] .field-error")
    assert "email" in beside.inner_text() and "\n" not in beside.inner_text()
    sql.fill(ALLOWED_SQL.replace("COUNT(*) AS purchases", f"COUNT(*) AS purchases, '{MARKUP}' AS note"))
    page.locator("#guard-checks li.ok").wait_for()
    woodgrove.check_and_photograph("queries")
    page.get_by_role("button", name="Propose and vote for it").click()
    page.get_by_role("cell", name="wsui-segments", exact=True).wait_for()
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="wsui-segments", exact=True))
    assert "pending" in row.locator("li", has_text="northwind").inner_text()

    page = northwind.view("queries")
    page.get_by_text("wsui-segments: SQL, inputs and your vote").click()
    # woodgrove's markup is text in northwind's page: shown, never run
    assert page.get_by_text(MARKUP, exact=False).count() >= 1
    assert page.evaluate("() => window.wsuiOwned") is None
    page.get_by_role("button", name="Accept wsui-segments").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="wsui-segments", exact=True))
    row.locator("li", has_text="northwind").filter(has_text=re.compile("accepted")).wait_for()


def run_in_page(party: PartyPage, query: str, run_id: str) -> tuple[str, str]:
    """Start `query` from the runs view; (its final status, the one line the page shows for a refusal). A run
    refused before it starts is answered on the start form itself: ("refused", that line)."""
    page = party.view("runs")
    page.get_by_label("Query", exact=True).select_option(query)
    page.get_by_label("Run id (optional)").fill(run_id)
    page.get_by_role("button", name="Start run").click()
    final = page.locator("main p[aria-live] .pill").filter(has_text=FINAL)
    refused_at_start = page.locator("form .form-error:not([hidden]), form .field-error:not([hidden])")
    final.or_(refused_at_start).first.wait_for(timeout=RUN_TIMEOUT_MS)
    if refused_at_start.count():
        return "refused", refused_at_start.first.inner_text()
    alert = page.locator("main .form-error[role=alert]")
    return final.inner_text(), alert.inner_text() if alert.count() else ""


def test_woodgrove_runs_the_approved_query_and_follows_it_live(parties):
    woodgrove = parties["woodgrove"]
    assert run_in_page(woodgrove, "wsui-segments", "wsui-story-1")[0] == "succeeded"
    assert woodgrove.page.get_by_role("table", name="Timings").count() == 1
    woodgrove.check_and_photograph("runs")


def test_a_query_woodgrove_never_approved_is_refused_in_the_page(parties):
    woodgrove = parties["woodgrove"]
    status, message = run_in_page(woodgrove, "segment-mix", "wsui-refused-1")
    # refused before the room runs anything: not an accepted query, woodgrove's accept is missing
    assert status == "refused" and "segment-mix" in message and "accept" in message, (status, message)
    assert "\n" not in message and "Traceback" not in message
    assert woodgrove.page.get_by_role("button", name="Download and decrypt the result").count() == 0


def test_northwind_revokes_consent_with_the_keyboard_and_the_next_run_is_refused(parties):
    northwind, woodgrove = parties["northwind"], parties["woodgrove"]
    page = northwind.view("datasets")
    switch = page.get_by_role("switch", name="Consent for northwind-revocable")
    assert switch.get_attribute("aria-checked") == "true"
    switch.focus()
    page.keyboard.press("Space")
    page.wait_for_function("() => document.activeElement.getAttribute('aria-checked') === 'false'")
    northwind.check_and_photograph("consent-revoked")
    status, message = run_in_page(woodgrove, "over-revocable", "wsui-revoked-1")
    assert status in ("refused", "revoked") and "northwind" in message, (status, message)


def test_northwinds_audit_report_verifies_itself_and_exports(parties, analytics_room, tmp_path):
    northwind = parties["northwind"]
    page = northwind.view("audit")
    chain = page.locator("section[aria-labelledby='chain-heading']")
    assert "verified" in chain.locator(".pill").inner_text() and "not" not in chain.locator(".pill").inner_text()
    attestation = page.locator("section[aria-labelledby='attestation-heading']")
    attestation.locator(".pill").wait_for()
    # the real room's evidence, fetched through its ingress with the workspace's own nonce
    assert attestation.locator(".pill").inner_text() == "verified", attestation.inner_text()
    assert "own fresh nonce" in attestation.inner_text() and "HOST_DATA" in attestation.inner_text()
    page.get_by_label("Run").fill("wsui-story-1")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.timeline li')].every((li) => li.textContent.includes('wsui-story-1'))")
    assert page.locator(".timeline li").count() >= 1
    northwind.check_and_photograph("audit")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export the report (self-contained HTML)").click()
    exported = tmp_path / "report.html"
    download.value.save_as(exported)
    html = exported.read_text()
    assert "wsui-story-1" in html and "Room attestation verified." in html
    with page.expect_download(timeout=180_000) as download:
        page.get_by_role("button", name="Export the report as PDF").click()
    pdf = tmp_path / "report.pdf"
    download.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF-") and page_count(pdf.read_bytes()) >= 1
    # one line, and an id the PDF broke after a hyphen at a line's end joined again
    text = " ".join(pdf_text(pdf.read_bytes()).split()).replace("- ", "-")
    assert f"collaboration {analytics_room.room.contract}" in text and "Room attestation verified." in text, text[:600]
    assert "own fresh nonce" in text and "wsui-story-1" in text, text[:1500]
    assert "<script" not in html.lower() and not re.search(r"(src|href)=['\"]?https?:", html), "not self-contained"


SKR_PATHS = ("/key/release", "/attest/combined", "/attest/raw", "/attest/maa", "/attest/nonce", "/status")


def test_outside_the_room_its_ingress_serves_fresh_evidence_and_nothing_else_of_skr(analytics_room):
    contract_ca = ssl.create_default_context(cafile=str(analytics_room.ca))
    with httpx.Client(base_url=analytics_room.url, verify=contract_ca, timeout=60.0) as room:
        nonce = secrets.token_hex(32)
        answer = room.post(PUBLIC_EVIDENCE_PATH, json={"nonce": nonce})
        assert answer.status_code == 200, answer.text
        report = SnpReport.parse(Evidence.from_combined(answer.json()).report)
        assert report.report_data == report_data_for(runtime_data_for_nonce(nonce)).ljust(64, b"\0")
        # the caller chooses the nonce, nothing else: runtime data of its own (a key to release to) is refused
        for body in ({"nonce": nonce, "runtime_data": "eyJrZXlzIjpbXX0="}, {"runtime_data": "eyJrZXlzIjpbXX0="},
                     {"nonce": "not hex"}):
            refused = room.post(PUBLIC_EVIDENCE_PATH, json=body)
            assert refused.status_code == 400 and "\n" not in refused.text, (body, refused.text)  # skr's one line
        oversized = room.post(PUBLIC_EVIDENCE_PATH, content=b'{"nonce": "' + b"a" * 100_000 + b'"}',
                              headers={"content-type": "application/json"})
        assert oversized.status_code == 413, oversized.text
        # skr's other routes (key release above all) are the app's paths here: its policy refuses them
        for path in SKR_PATHS:
            for method in ("GET", "POST"):
                other = room.request(method, path, json={"nonce": nonce, "kid": "woodgrove-output-kek",
                                                         "maa_endpoint": "x", "akv_endpoint": "x",
                                                         "runtime_data": "eyJrZXlzIjpbXX0="})
                assert other.status_code in (401, 403, 404, 405), (method, path, other.status_code, other.text)
                assert '"key"' not in other.text and '"evidence"' not in other.text, (method, path, other.text)
        # only POST reaches the evidence: a GET of its path is the app's, as is any path beside it
        for method, path in (("GET", PUBLIC_EVIDENCE_PATH), ("POST", PUBLIC_EVIDENCE_PATH + "/../../key/release"),
                             ("POST", PUBLIC_EVIDENCE_PATH + "x")):
            other = room.request(method, path, json={"nonce": nonce})
            assert other.status_code != 200 and '"evidence"' not in other.text, (method, path, other.text)


def test_woodgrove_reads_the_result_once_the_room_has_stopped_and_signed_its_sink(parties, analytics_room):
    """Last in this module: it takes the room down. While the room is up its sink has no signed manifest, and
    the download is refused next to its button in one line naming the datasink; after `ccr room down` (as
    the demo's step 9) the same button downloads, checks and decrypts the result: a table and an SVG chart."""
    woodgrove = parties["woodgrove"]
    page = woodgrove.view("runs/wsui-story-1")
    button = page.get_by_role("button", name="Download and decrypt the result")
    button.click()
    beside = page.locator("main .field-error:not([hidden])")
    beside.wait_for(timeout=120_000)
    line = beside.inner_text()
    assert "when the room stops" in line and "'woodgrove-output'" in line, line
    assert "\n" not in line and "Traceback" not in line
    assert page.get_by_role("table", name="Result").count() == 0

    analytics_room.where.down()  # the room stops and signs its sinks' manifests (leave_nothing_behind copes)
    button.click()
    answered = "table:has(caption:text-is('Result')), main .field-error:not([hidden])"
    page.locator(answered).first.wait_for(timeout=120_000)
    assert not beside.count(), beside.inner_text()
    result = page.get_by_role("table", name="Result")
    assert result.get_by_role("columnheader", name="segment").count() == 1
    assert result.get_by_role("row").count() >= 3  # header + at least two segments
    assert page.get_by_role("img", name="purchases by segment").count() == 1  # the SVG chart
    woodgrove.check_and_photograph("result")

    # a page opened after the room stopped finds the run in the audit trail the room wrote, and its result
    page = woodgrove.view("runs/wsui-story-1")
    page.locator("main p[aria-live] .pill").filter(has_text="succeeded").wait_for()
    page.get_by_role("button", name="Download and decrypt the result").click()
    page.locator(answered).first.wait_for(timeout=120_000)
    assert page.get_by_role("table", name="Result").get_by_role("columnheader", name="purchases").count() == 1

    # the run list outlives the room: from the audit trail governance holds, each run finished or failed
    contract = analytics_room.room.contract
    for query in ("", "?query=wsui-segments"):
        listed = woodgrove.workspace.api("GET", f"/collaborations/{contract}/runs{query}")
        assert listed.status_code == 200, listed.text
        runs = {run["runId"]: run for run in listed.json()["value"]}
        assert runs["wsui-story-1"]["state"] == "finished" and runs["wsui-story-1"]["status"] == "succeeded"
        assert all(run["state"] in ("finished", "failed") for run in runs.values()), runs
    page = woodgrove.view("runs")
    table = page.get_by_role("table", name=f"Runs in {contract}")
    table.get_by_role("link", name="wsui-story-1", exact=True).wait_for()
    row = table.get_by_role("row").filter(has=page.get_by_role("link", name="wsui-story-1", exact=True))
    assert row.locator(".pill").all_inner_texts() == ["finished", "succeeded"]
