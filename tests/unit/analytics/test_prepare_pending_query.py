"""A run of a query its owners have not all accepted is refused naming whose accept it waits for (the demo's
segment-mix: proposed by northwind, never accepted by woodgrove)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecars.analytics.prepare import RunRefused, prepare
from sidecars.analytics.runs import RunRequest

DOCUMENTS = Path(__file__).resolve().parents[3] / "examples" / "analytics" / "documents"


class PendingQueryGovernance:
    """CGS as the room sees it: both datasets accepted, the query still an open proposal."""

    def __init__(self):
        self.documents = {
            "northwind-sales": {"state": "Accepted", "labels": {"kind": "dataset"},
                                "data": (DOCUMENTS / "northwind-sales.dataset.json").read_text()},
            "woodgrove-customers": {"state": "Accepted", "labels": {"kind": "dataset"},
                                    "data": (DOCUMENTS / "woodgrove-customers.dataset.json").read_text()},
            "segment-mix": {"state": "Proposed", "labels": {"kind": "query"}, "proposalId": "p1",
                            "data": (DOCUMENTS / "segment-mix.query.json").read_text()},
        }

    def member_document(self, document_id):
        return self.documents.get(document_id)

    def document_consent(self, document_id):
        raise AssertionError("consent is not asked about a query that is not accepted")

    def contract_consent(self):
        raise AssertionError("consent is not asked about a query that is not accepted")


def test_a_pending_query_is_refused_naming_the_owners_it_waits_for(tmp_path):
    with pytest.raises(RunRefused) as refused:
        prepare(PendingQueryGovernance(), "segment-mix", RunRequest("segment-mix"), {}, tmp_path)
    assert refused.value.code == "DocumentNotAccepted" and refused.value.http_status == 403
    message = str(refused.value)
    assert "'segment-mix' is not accepted" in message and "northwind, woodgrove" in message
    assert "\n" not in message


def test_a_pending_query_whose_text_is_not_a_query_still_refuses_in_one_line(tmp_path):
    gov = PendingQueryGovernance()
    gov.documents["segment-mix"]["data"] = json.dumps({"segments": "\x1b[2J"})
    with pytest.raises(RunRefused) as refused:
        prepare(gov, "segment-mix", RunRequest("segment-mix"), {}, tmp_path)
    assert str(refused.value) == "query 'segment-mix' is not accepted (state Proposed)"
