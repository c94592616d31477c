"""The privacy budget end to end on the CGS stand-in: a room (its governance sidecar, attested on the mock
platform) spends ε per run until the budget is gone and is then refused naming what is left; a replayed runId
spends once; `ccr analytics budget show` reads the ledger; a member who does not own the data cannot raise
its budget, the owner can. northwind owns the data, woodgrove proposes the query."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidecars.cli import main

from .conftest import ROOM_HOST_DATA, Cgs, Consortium, register_consortium, start_cgs, unique


@pytest.fixture(scope="module")
def budget_cgs(tmp_path_factory, server_tls, platform_dir) -> Iterator[Cgs]:
    service = start_cgs(tmp_path_factory.mktemp("budget-cgs"), server_tls, platform_dir)
    yield service
    service.proc.stop()


@pytest.fixture(scope="module")
def parties(budget_cgs, local_ca, tmp_path_factory) -> Consortium:
    return register_consortium(budget_cgs, local_ca, tmp_path_factory.mktemp("budget-members"),
                               ("northwind", "woodgrove"))


def dataset(name: str) -> str:
    return json.dumps({"name": name, "owner": "northwind", "store": "nw", "container": "nw", "format": "csv",
                       "schema": [{"name": "person", "type": "string"}, {"name": "city", "type": "string"}],
                       "allowedFields": ["person", "city"], "accessMode": "aggregate",
                       "encryption": {"mode": "SSE"},
                       "privacy": {"epsilonTotal": 1, "perQueryEpsilonMax": 0.5, "contributionBound": 1,
                                   "personKey": "person"}})


def query(name: str) -> str:
    return json.dumps({"inputDatasets": [{"datasetName": name, "viewName": "s"}],
                       "outputDataset": {"datasinkName": "out"},
                       "segments": [{"executionSequence": 1, "sql": "SELECT city, COUNT(*) AS n FROM s GROUP BY city",
                                     "private": True, "epsilon": 0.5, "publicKeys": {"city": ["a", "b"]}}]})


def test_a_room_spends_until_the_budget_is_gone_and_only_the_owner_raises_it(
        parties, budget_cgs, governance, local_ca, capsys):
    northwind, woodgrove = parties["northwind"], parties["woodgrove"]
    contract = unique("budget")
    northwind.put_contract(contract, {"purpose": "private counts"})
    parties.accept(northwind.propose_contract(contract))
    parties.accept(northwind.propose_policy(contract, {"x-ms-sevsnpvm-hostdata": [ROOM_HOST_DATA.hex()],
                                                       "x-ms-sevsnpvm-is-debuggable": False}))
    sales, query_id = unique("sales"), unique("count")
    proposal = northwind.propose_analytics_document(sales, contract, "dataset", dataset(sales))
    northwind.vote(proposal["proposalId"], True)
    proposal = woodgrove.propose_analytics_document(query_id, contract, "query", query(sales))
    northwind.vote(proposal["proposalId"], True)
    room = governance(contract, cgs_url=budget_cgs.url)

    def spend(run_id: str) -> httpx.Response:
        return httpx.post(f"{room}/privacybudget/spend", json={"runId": run_id, "queryId": query_id}, timeout=30)

    assert spend("r1").json()["spends"][0]["epsilonRemaining"] == 0.5
    assert spend("r1").json()["replayed"] is True
    assert spend("r2").json()["spends"][0]["epsilonRemaining"] == 0.0
    refused = spend("r3")
    assert refused.status_code == 409
    assert refused.json()["error"] == {"code": "PrivacyBudgetExhausted", "message":
                                       f"dataset {sales!r}: the run needs epsilon 0.5, 0 of 1 is left"}

    members_dir = Path(northwind.identity.directory).parent

    def ccr(member: str, *argv: str) -> tuple[int, str, str]:
        code = main(["analytics", "budget", *argv, "--contract", contract, "--cgs", budget_cgs.url,
                     "--ca-bundle", str(local_ca.cert_file), "--identity", str(members_dir / member)])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = ccr("woodgrove", "show", sales)
    assert code == 0
    assert f"dataset {sales} (owner northwind): epsilon 0 left of 1 (1 spent by 2 runs" in out
    assert "run r1" in out and "run r2" in out
    code, _, err = ccr("woodgrove", "raise", sales, "5", "--id", unique("more"))
    assert code == 1 and "NotDatasetOwner" in err and err.count("\n") == 1
    code, out, _ = ccr("northwind", "raise", sales, "0.5", "--id", unique("more"))
    assert code == 0 and "Accepted" in out
    assert spend("r3").json()["spends"][0]["epsilonRemaining"] == 0.0
    code, out, _ = ccr("northwind", "show", sales, "--json")
    view = json.loads(out)
    assert (view["epsilonTotal"], view["epsilonSpent"]) == (1.5, 1.5)

    events, _ = northwind.events(contract)
    spent = [e["data"] for e in events if e["id"] == "privacy-budget"]
    assert [(e["action"], e["runId"]) for e in spent] == [
        ("spend_privacy_budget", "r1"), ("spend_privacy_budget", "r2"), ("privacy_budget_refused", "r3"),
        ("spend_privacy_budget", "r3")]
