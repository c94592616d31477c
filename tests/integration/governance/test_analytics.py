"""Analytics documents in the CGS stand-in, through the real member client (COSE Sign1 writes, mutual TLS):
only a dataset's owner publishes it, a query is decided by the owners of the data it reads (others' ballots
count for nothing, either way), owners revoke and re-enable, and a room reads the per-document consent and
the consortium's members through its governance sidecar. Three members: northwind and woodgrove own data,
contoso owns none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidecars.cli import main
from sidecars.common.memberauth import MemberIdentity
from sidecars.governance.member_client import CgsMemberClient, CgsRequestFailed

from .conftest import ROOM_HOST_DATA, Cgs, Consortium, register_consortium, start_cgs, unique

MEMBERS = ("northwind", "woodgrove", "contoso")


def dataset(name: str, owner: str, **changes) -> str:
    document = {"name": name, "owner": owner, "store": f"{owner}-store", "container": f"{owner}-data",
                "format": "csv", "schema": [{"name": "id", "type": "int"}, {"name": "amount", "type": "double"}],
                "allowedFields": ["id", "amount"], "accessMode": "aggregate",
                "encryption": {"mode": "CSE", "dekSecret": f"{owner}-dek", "kekName": f"{owner}-kek"}}
    return json.dumps({**document, **changes})


def query(*datasets: str) -> str:
    return json.dumps({"inputDatasets": [{"datasetName": d, "viewName": f"v{i}"} for i, d in enumerate(datasets)],
                       "segments": [{"executionSequence": 1, "sql": "SELECT COUNT(*) AS n FROM v0"}],
                       "outputDataset": {"datasinkName": "woodgrove-out"}})


@pytest.fixture(scope="module")
def analytics_cgs(tmp_path_factory, server_tls, platform_dir) -> Iterator[Cgs]:
    # Its own stand-in: a third member would make every other test's "all members accept" wait for it.
    service = start_cgs(tmp_path_factory.mktemp("analytics-cgs"), server_tls, platform_dir)
    yield service
    service.proc.stop()


@pytest.fixture(scope="module")
def parties(analytics_cgs, local_ca, tmp_path_factory) -> Consortium:
    return register_consortium(analytics_cgs, local_ca, tmp_path_factory.mktemp("analytics-members"), MEMBERS)


@pytest.fixture
def contract(parties) -> str:
    """An accepted contract (every member accepts it) with a clean-room policy admitting the test room."""
    contract_id = unique("analytics")
    parties["northwind"].put_contract(contract_id, {"purpose": "join sales with ads"})
    parties.accept(parties["northwind"].propose_contract(contract_id))
    parties.accept(parties["northwind"].propose_policy(contract_id, {
        "x-ms-sevsnpvm-hostdata": [ROOM_HOST_DATA.hex()], "x-ms-sevsnpvm-is-debuggable": False}))
    return contract_id


def publish(member: CgsMemberClient, contract_id: str, name: str, owner: str | None = None, **changes) -> dict:
    proposal = member.propose_analytics_document(name, contract_id, "dataset",
                                                 dataset(name, owner or member.identity.name, **changes))
    return member.vote(proposal["proposalId"], True) if proposal["proposalState"] == "Open" else proposal


def refused(call, status: int, code: str) -> str:
    with pytest.raises(CgsRequestFailed) as caught:
        call()
    assert (caught.value.http_status, caught.value.code) == (status, code), caught.value.message
    return caught.value.message


def test_only_the_owner_publishes_a_dataset_and_its_vote_alone_accepts_it(parties, contract):
    northwind, woodgrove = parties["northwind"], parties["woodgrove"]
    name = unique("sales")
    message = refused(lambda: woodgrove.propose_analytics_document(name, contract, "dataset",
                                                                   dataset(name, "northwind")), 403, "NotDatasetOwner")
    assert "woodgrove" in message and name in message
    refused(lambda: woodgrove.propose_analytics_document(name, contract, "dataset", dataset(name, "nobody")),
            400, "NotContractMember")
    refused(lambda: northwind.propose_analytics_document("other-id", contract, "dataset", dataset(name, "northwind")),
            400, "InvalidAnalyticsDocument")
    message = refused(lambda: northwind.propose_analytics_document(
        name, contract, "dataset", dataset(name, "northwind", allowedFields=["id", "secret"])),
        400, "InvalidAnalyticsDocument")
    assert "allowedFields[1]" in message

    accepted = publish(northwind, contract, name)
    assert accepted["proposalState"] == "Accepted"  # the owner's vote alone: woodgrove and contoso never voted
    document = northwind.contract_document(contract, name)
    assert document["state"] == "Accepted" and document["labels"] == {"kind": "dataset"}
    assert document["finalVotes"] == [{"memberId": northwind.identity.member_id, "vote": True}]
    assert json.loads(document["data"])["owner"] == "northwind"


def test_a_query_over_an_unknown_or_not_yet_accepted_dataset_is_refused(parties, contract):
    northwind, woodgrove = parties["northwind"], parties["woodgrove"]
    message = refused(lambda: woodgrove.propose_analytics_document(unique("q"), contract, "query", query("ghost")),
                      400, "UnknownDataset")
    assert "'ghost'" in message
    pending = unique("sales")
    northwind.propose_analytics_document(pending, contract, "dataset", dataset(pending, "northwind"))  # no vote yet
    assert northwind.contract_document(contract, pending)["state"] == "Proposed"
    refused(lambda: woodgrove.propose_analytics_document(unique("q"), contract, "query", query(pending)),
            400, "UnknownDataset")
    refused(lambda: woodgrove.propose_analytics_document("bad id!", contract, "query", query(pending)),
            400, "InvalidAnalyticsDocument")


def test_only_the_owners_of_a_querys_data_decide_it(parties, contract):
    northwind, woodgrove, contoso = parties["northwind"], parties["woodgrove"], parties["contoso"]
    sales, ads = unique("sales"), unique("ads")
    publish(northwind, contract, sales)
    publish(woodgrove, contract, ads)

    # proposed by woodgrove (an owner, which accepts); contoso's reject is recorded but vetoes nothing
    query_id = unique("join")
    proposal = woodgrove.propose_analytics_document(query_id, contract, "query", query(sales, ads))
    proposal = woodgrove.vote(proposal["proposalId"], True)
    assert contoso.vote(proposal["proposalId"], False)["proposalState"] == "Open"
    accepted = northwind.vote(proposal["proposalId"], True)
    assert accepted["proposalState"] == "Accepted"
    document = northwind.contract_document(contract, query_id)
    assert document["labels"] == {"kind": "query"}
    assert {v["memberId"]: v["vote"] for v in document["finalVotes"]} == {
        woodgrove.identity.member_id: True, contoso.identity.member_id: False, northwind.identity.member_id: True}

    # proposed by contoso, which owns nothing: its accept does not accept, an owner's reject rejects
    other = unique("join")
    proposal = contoso.propose_analytics_document(other, contract, "query", query(sales, ads))
    assert contoso.vote(proposal["proposalId"], True)["proposalState"] == "Open"
    assert woodgrove.vote(proposal["proposalId"], True)["proposalState"] == "Open"
    assert northwind.vote(proposal["proposalId"], False)["proposalState"] == "Rejected"
    assert northwind.contract_document(contract, other)["state"] != "Accepted"


def test_owners_revoke_and_re_enable_and_nobody_else_can(parties, contract, governance, room_evidence,
                                                         analytics_cgs, local_ca):
    northwind, woodgrove, contoso = parties["northwind"], parties["woodgrove"], parties["contoso"]
    sales, ads, query_id = unique("sales"), unique("ads"), unique("join")
    publish(northwind, contract, sales)
    publish(woodgrove, contract, ads)
    proposal = woodgrove.propose_analytics_document(query_id, contract, "query", query(sales, ads))
    woodgrove.vote(proposal["proposalId"], True)
    northwind.vote(proposal["proposalId"], True)
    room = governance(contract, cgs_url=analytics_cgs.url)

    def room_status(document_id: str) -> dict:
        answer = httpx.post(f"{room}/memberdocuments/{document_id}/consentcheck/execution", timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert room_status(query_id) == {"status": "enabled"}
    assert room_status(sales) == {"status": "enabled"}

    for document_id in (sales, query_id):
        message = refused(lambda d=document_id: contoso.set_document_execution(contract, d, False),
                          403, "NotDocumentOwner")
        assert "contoso" in message
    refused(lambda: woodgrove.set_document_execution(contract, sales, False), 403, "NotDocumentOwner")
    assert northwind.document_status(contract, query_id)["status"] == "enabled"

    northwind.set_document_execution(contract, sales, False)
    for status in (northwind.document_status(contract, sales), room_status(sales)):
        assert status["status"] == "disabled" and status["reason"]["code"] == "ConsentRevoked"
        assert "northwind" in status["reason"]["message"]
    read_by_query = room_status(query_id)  # a query reading a revoked dataset stops too
    assert read_by_query["status"] == "disabled" and sales in read_by_query["reason"]["message"]
    assert read_by_query["revokedBy"] == ["northwind"]
    northwind.set_document_execution(contract, sales, True)
    assert room_status(query_id) == {"status": "enabled"}

    # either owner of a query's data may revoke the query; enabling clears only the member's own revocation
    northwind.set_document_execution(contract, query_id, False)
    woodgrove.set_document_execution(contract, query_id, False)
    woodgrove.set_document_execution(contract, query_id, True)
    still = room_status(query_id)
    assert still["status"] == "disabled" and still["revokedBy"] == ["northwind"]
    northwind.set_document_execution(contract, query_id, True)
    assert room_status(query_id) == {"status": "enabled"}

    not_accepted = room_status(unique("never-proposed"))
    assert not_accepted["status"] == "disabled" and not_accepted["reason"]["code"] == "DocumentNotAccepted"

    events, _ = northwind.events(contract)
    steps = [(e["data"].get("action"), e["data"].get("member"), e["data"].get("documentId")) for e in events]
    assert ("document_execution_disable", "northwind", sales) in steps
    assert ("document_execution_enable", "northwind", sales) in steps
    assert not any(member == "contoso" and (action or "").startswith("document_execution")
                   for action, member, _ in steps)  # refused attempts change nothing, so record nothing

    listed = httpx.get(f"{room}/members", timeout=30)
    assert listed.status_code == 200
    by_name = {m["memberData"].get("identifier"): m for m in listed.json()["value"]}
    assert set(MEMBERS) <= set(by_name)
    assert by_name["northwind"]["memberId"] == northwind.identity.member_id
    assert by_name["northwind"]["certificate"].strip() == northwind.identity.cert_pem.strip()
    assert by_name["northwind"]["status"] == "Active"


def test_a_second_member_cannot_take_an_owners_name(analytics_cgs, parties, local_ca, tmp_path):
    impostor = MemberIdentity.create(tmp_path / "impostor", "northwind")
    with CgsMemberClient(analytics_cgs.url, analytics_cgs.operator, ca_bundle=str(local_ca.cert_file)) as operator:
        message = refused(lambda: operator.propose_member(impostor.cert_pem, "northwind"), 400,
                          "ProposalFailedToValidate")
    assert "northwind" in message


# -- the commands -------------------------------------------------------------------------------------------
def ccr(capsys, member: CgsMemberClient, analytics_cgs: Cgs, local_ca, members_dir: Path,
        *argv: str) -> tuple[int, str, str]:
    identity = members_dir / member.identity.name
    code = main(["analytics", *argv, "--cgs", analytics_cgs.url, "--ca-bundle", str(local_ca.cert_file),
                 "--identity", str(identity)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_commands_publish_propose_vote_show_and_revoke(parties, contract, analytics_cgs, local_ca, tmp_path,
                                                          capsys):
    members_dir = Path(parties["northwind"].identity.directory).parent

    def run(member: str, *argv: str) -> tuple[int, str, str]:
        return ccr(capsys, parties[member], analytics_cgs, local_ca, members_dir, *argv, "--contract", contract)

    sales, ads, query_id = unique("sales"), unique("ads"), unique("join")
    (tmp_path / "sales.json").write_text(dataset(sales, "northwind"))
    (tmp_path / "ads.json").write_text(dataset(ads, "woodgrove"))
    (tmp_path / "q.json").write_text(query(sales, ads))
    code, out, _ = run("northwind", "dataset", "publish", str(tmp_path / "sales.json"))
    assert code == 0 and f"dataset {sales}: proposal" in out and "Accepted" in out
    assert run("woodgrove", "dataset", "publish", str(tmp_path / "ads.json"))[0] == 0
    code, out, _ = run("contoso", "query", "propose", str(tmp_path / "q.json"), "--id", query_id)
    assert code == 0 and "Open" in out

    code, out, _ = run("contoso", "query", "show", query_id)
    assert code == 0 and "northwind missing; woodgrove missing" in out
    assert "votes not counted (own none of its datasets): contoso" in out
    assert run("northwind", "query", "vote", query_id, "accept")[0] == 0
    code, out, _ = run("woodgrove", "query", "vote", query_id, "accept")
    assert code == 0 and "Accepted" in out
    code, out, _ = run("contoso", "query", "list")
    assert code == 0 and f"{query_id}  Accepted  reads {sales}, {ads}" in out
    code, out, _ = run("contoso", "dataset", "list")
    assert code == 0 and f"{sales}  Accepted  owner northwind" in out

    code, _, err = run("contoso", "dataset", "revoke", sales)
    assert code == 1 and err.count("\n") == 1 and "NotDocumentOwner" in err and "Traceback" not in err
    code, out, _ = run("northwind", "dataset", "revoke", sales)
    assert code == 0 and "execution disabled" in out and "northwind" in out
    code, out, _ = run("woodgrove", "query", "show", query_id)
    assert code == 0 and "northwind revoked; woodgrove accepted" in out and "execution: disabled" in out
    code, out, _ = run("northwind", "dataset", "enable", sales)
    assert code == 0 and "execution enabled" in out
    code, _, err = run("northwind", "dataset", "publish", str(tmp_path / "sales.json"))
    assert code == 1 and "already accepted" in err and err.count("\n") == 1
    code, out, _ = run("contoso", "dataset", "show", sales)
    shown = json.loads(out)
    assert shown["state"] == "Accepted" and shown["dataset"]["owner"] == "northwind"
    assert shown["consent"] == {"status": "enabled"}


@pytest.mark.parametrize("content, expected", [
    ("{not json", "is not JSON"),
    (json.dumps({"name": "x"}), "owner: is required"),
    (json.dumps({"name": "x", "owner": "northwind", "store": "s", "container": "c", "format": "xls",
                 "schema": [{"name": "a", "type": "int"}], "allowedFields": ["a"], "accessMode": "row",
                 "encryption": {"mode": "SSE"}}), "format: must be one of csv, json, parquet"),
])
def test_a_bad_document_is_one_line_and_exit_1_before_cgs_is_asked(content, expected, tmp_path, capsys):
    document = tmp_path / "bad.json"
    document.write_text(content)
    # --cgs names a port nothing listens on: a document refused locally never gets that far
    code = main(["analytics", "dataset", "publish", str(document), "--contract", "c", "--cgs", "https://127.0.0.1:9",
                 "--identity", str(tmp_path / "nobody")])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1 and expected in err and "Traceback" not in err


def test_a_document_file_that_is_missing_or_not_a_query_is_one_line(tmp_path, capsys):
    code = main(["analytics", "query", "propose", str(tmp_path / "absent.json"), "--id", "q", "--contract", "c"])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1 and "absent.json" in err
    (tmp_path / "q.json").write_text(json.dumps({"segments": [], "inputDatasets": [], "outputDataset": {}}))
    code = main(["analytics", "query", "propose", str(tmp_path / "q.json"), "--id", "q", "--contract", "c"])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1 and "segments: must be a non-empty array" in err
