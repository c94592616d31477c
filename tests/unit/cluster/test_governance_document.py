"""The executor policy document the driver room reads from CGS, attacked: only an accepted document of this
contract, labelled as the executor policy and holding an executor policy, names the HOST_DATA to admit."""

from __future__ import annotations

import json

import pytest

from sidecars.cluster.admission import ExecutorPolicyUnavailable
from sidecars.cluster.governance import EXECUTOR_POLICY_LABELS, accepted_host_data, canonical, host_data_of

POLICY = {"role": "executor", "image": "localhost/ccr-analytics@sha256:" + "5e" * 32, "memory_mb": 512}


def _document(**changes) -> dict:
    return {"contractId": "c1", "data": canonical(POLICY), "labels": dict(EXECUTOR_POLICY_LABELS),
            "state": "Accepted", **changes}


def test_the_accepted_policy_names_its_host_data():
    assert accepted_host_data(_document(), "c1") == host_data_of(POLICY)
    # the same policy written with other spacing or key order measures the same
    assert accepted_host_data(_document(data=json.dumps(POLICY, indent=2)), "c1") == host_data_of(POLICY)


@pytest.mark.parametrize(("document", "message"), [
    (None, "not an object"),
    (["x"], "not an object"),
    (_document(contractId="c2"), "not of contract c1"),
    (_document(labels={}), "not labelled"),
    (_document(labels={"kind": "query"}), "not labelled"),
    (_document(labels="cluster"), "not labelled"),
    (_document(data=""), "JSON text"),
    (_document(data="x" * 20_000), "JSON text"),
    (_document(data={"role": "executor"}), "JSON text"),
    (_document(data="{not json"), "not JSON"),
    (_document(data="[" * 5000), "not JSON"),
    (_document(data='{"role": "driver"}'), "role: executor"),
    (_document(data='"executor"'), "role: executor"),
])
def test_anything_else_refuses_every_executor(document, message):
    with pytest.raises(ExecutorPolicyUnavailable, match=message):
        accepted_host_data(document, "c1")
