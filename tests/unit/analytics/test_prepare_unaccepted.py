"""A run of a query the room cannot read as accepted says what that may mean: the room reads accepted
documents only, so a query still waiting for an owner's accept is indistinguishable from none."""

from __future__ import annotations

import pytest

from sidecars.analytics.prepare import RunRefused, prepare
from sidecars.analytics.runs import RunRequest


class AcceptedOnly:
    """The governance sidecar as the room sees it: `memberdocuments/accepted/{id}`, nothing accepted yet."""

    def member_document(self, document_id):
        return None

    def document_consent(self, document_id):
        raise AssertionError("no consent is asked about a query the room cannot read")

    def contract_consent(self):
        raise AssertionError("no consent is asked about a query the room cannot read")


def test_an_unaccepted_query_is_refused_with_both_readings_and_where_to_look(tmp_path):
    with pytest.raises(RunRefused) as refused:
        prepare(AcceptedOnly(), "segment-mix", RunRequest("segment-mix"), {}, tmp_path)
    assert (refused.value.code, refused.value.http_status) == ("UnknownQuery", 404)
    message = str(refused.value)
    assert message.startswith("query 'segment-mix' is not an accepted query of this contract")
    assert "have not all accepted it" in message and "ccr analytics query show" in message
    assert "\n" not in message
