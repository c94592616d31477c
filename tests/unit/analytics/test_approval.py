"""The approval rule: the owners of a query's inputs decide; nobody else's ballot counts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecars.analytics.approval import decide
from sidecars.analytics.documents import parse_dataset, parse_query
from sidecars.common.errors import BadRequest

from .test_documents import dataset_doc, query_doc

DATASETS = {
    "nw-sales": parse_dataset(json.dumps(dataset_doc(name="nw-sales", owner="northwind"))),
    "nw-stores": parse_dataset(json.dumps(dataset_doc(name="nw-stores", owner="northwind"))),
    "wg-spend": parse_dataset(json.dumps(dataset_doc(name="wg-spend", owner="woodgrove"))),
}
JOIN = parse_query(json.dumps(query_doc(inputDatasets=[
    {"datasetName": "nw-sales", "viewName": "nw"}, {"datasetName": "nw-stores", "viewName": "t"},
    {"datasetName": "wg-spend", "viewName": "w"}])))


def test_approved_when_every_owner_accepts():
    decision = decide(JOIN, DATASETS, {"northwind": "accept", "woodgrove": "accept"})
    assert decision.approved and decision.owners == ("northwind", "woodgrove")


def test_a_missing_owner_is_named_and_other_members_cannot_stand_in():
    decision = decide(JOIN, DATASETS, {"northwind": "accept", "contoso": "accept", "fabrikam": "accept"})
    assert not decision.approved
    assert decision.missing == ("woodgrove",)
    assert decision.ignored == ("contoso", "fabrikam")
    assert decision.reason() == "not approved: not yet accepted by woodgrove"


def test_a_non_owner_cannot_veto_either():
    decision = decide(JOIN, DATASETS, {"northwind": "accept", "woodgrove": "accept", "contoso": "reject"})
    assert decision.approved and decision.ignored == ("contoso",)


@pytest.mark.parametrize("ballot", ["reject", "revoke", "Accept", "yes", ""])
def test_an_owner_that_rejects_revokes_or_votes_garbage_blocks_it(ballot):
    decision = decide(JOIN, DATASETS, {"northwind": "accept", "woodgrove": ballot})
    assert not decision.approved and decision.refusing == ("woodgrove",)


def test_a_query_over_an_unknown_dataset_is_refused_naming_it():
    query = parse_query(json.dumps(query_doc(inputDatasets=[{"datasetName": "ghost", "viewName": "nw"}])))
    with pytest.raises(BadRequest, match="'ghost'"):
        decide(query, DATASETS, {"northwind": "accept"})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["northwind", "woodgrove", "contoso", "fabrikam"]),
                       st.sampled_from(["accept", "reject", "revoke", "maybe"])))
def test_approved_exactly_when_both_owners_accept(ballots):
    decision = decide(JOIN, DATASETS, ballots)
    assert decision.approved == (ballots.get("northwind") == "accept" and ballots.get("woodgrove") == "accept")
