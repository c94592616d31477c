"""Publishing a dataset from the page (no root): northwind picks a folder, a store and a mode; the workspace
checks, encrypts and uploads the files (real Azurite, the Key Vault stand-in) while the page's progress bar
moves forward only, then the dataset is listed, accepted, with its schema."""

from __future__ import annotations

import json

import pytest

from tests.integration.governance.test_analytics import analytics_cgs, contract, parties  # noqa: F401 - fixtures
from tests.integration.governance.test_analytics_publish import own_vault, owner, storage  # noqa: F401 - fixtures
from tests.workspacepages.pages import party_page, start_workspace

pytestmark = pytest.mark.slow  # Azurite and the Key Vault stand-in start

ROWS = 200_000  # a few MB: enough for the bar to be seen between 0 and 100

# Every value the progress bar takes, in order, as the page sets it.
RECORD_PROGRESS = """() => {
  window.wsuiProgress = [];
  const bar = document.getElementById('publish-progress');
  new MutationObserver(() => window.wsuiProgress.push(Number(bar.getAttribute('value'))))
    .observe(bar, {attributes: true, attributeFilter: ['value']});
}"""


def test_publish_from_the_page_shows_progress_then_the_accepted_dataset(
        parties, contract, owner, browser, screenshots, tmp_path):  # noqa: F811
    options = dict(zip(owner[::2], owner[1::2], strict=True))
    data = tmp_path / "data"
    (data / "2024-01-01").mkdir(parents=True)
    (data / "2024-01-01" / "part-1.csv").write_text("id,amount\n" + "".join(f"{i},{i}.5\n" for i in range(ROWS)))
    workspace = start_workspace("northwind", tmp_path, "--identity", str(parties["northwind"].identity.directory),
                                *owner)
    try:
        party = party_page(browser, workspace, screenshots)
        page = party.view("datasets")
        page.get_by_label("Collaboration", exact=True).select_option(contract)
        party.wait_ready("datasets")
        page.evaluate(RECORD_PROGRESS)
        page.get_by_label("Dataset name").fill("wsui-input")
        page.get_by_label("Folder with the data").fill(str(data))
        page.get_by_label("Room spec").fill(options["--spec"])
        page.get_by_label("Store (volume name in the spec)").fill("publisher-input")
        page.get_by_label("Container or bucket").fill("publisher-input")
        page.get_by_label("Encryption mode").select_option("CSE")
        page.get_by_label("Data key secret (CGS)").fill("wsui-input-dek")
        page.get_by_label("Key encryption key name").fill("publisher-kek")
        page.get_by_label("Schema").fill("id int\namount double")
        page.get_by_label("Allowed fields").fill("id, amount")
        page.get_by_label("Access mode").select_option("aggregate")
        page.get_by_role("button", name="Encrypt, upload and propose").click()
        page.get_by_role("progressbar").wait_for()
        party.photograph("publish")  # mid-job: the datasets view itself is checked in test_page.py
        row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="wsui-input", exact=True))
        row.wait_for(timeout=120_000)
        assert "Accepted" in row.inner_text()
        progress = page.evaluate("() => window.wsuiProgress")
        assert progress and progress == sorted(progress), progress  # a progress bar never goes back
        assert progress[-1] == 100 and any(0 < value < 100 for value in progress), progress
        assert not party.console_errors, party.console_errors
        shown = workspace.api("GET", f"/collaborations/{contract}/datasets/wsui-input").json()
        assert shown["state"] == "Accepted" and json.dumps(shown["dataset"]["schema"]).count("amount") == 1
        party.context.close()
    finally:
        workspace.stop()
