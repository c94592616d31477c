"""The handlers of `ccr analytics dataset|query ...` (registered in cli.py): analytics documents in CGS, as a
member acts on them. `run`, `runs` and `serve` are the app's (runcommands.py, service.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..cliargs import spec_variables
from ..common.errors import BadRequest, ConfigError
from ..common.untrusted import UntrustedInputError, read_bounded
from ..governance.member_client import CgsMemberClient, CgsRequestFailed
from ..governance.memberargs import member_client
from ..spec import load_spec
from ..volumes import commands as data_commands
from ..volumes.owner import files_to_publish
from . import approval
from .datafiles import check_files
from .documents import (
    DOCUMENT_LIMITS,
    AnalyticsDocumentError,
    Dataset,
    Query,
    parse_budget_grant,
    parse_dataset,
    parse_query,
)

BALLOTS: dict[bool, approval.Ballot] = {True: "accept", False: "reject"}
OWNER_STATES = {"accept": "accepted", "reject": "rejected", "revoke": "revoked"}


def _read_document(path: Path, kind: str) -> tuple[str, Dataset | Query]:
    """The document file's text (what goes to CGS, byte for byte) and what it parses to."""
    try:
        text = read_bounded(path, DOCUMENT_LIMITS)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except UntrustedInputError as exc:
        raise ConfigError(f"{path}: the file {exc}") from None
    try:
        return text, parse_dataset(text) if kind == "dataset" else parse_query(text)
    except AnalyticsDocumentError as exc:
        raise BadRequest(f"{path}: {exc.message}", code=exc.code) from None


def _print_proposal(proposal: dict[str, Any], what: str) -> None:
    print(f"{what}: proposal {proposal['proposalId']} {proposal['proposalState']}")


def _propose(args: argparse.Namespace, client: CgsMemberClient, document_id: str, kind: str, text: str) -> None:
    current = _existing(client, args.contract, document_id)
    if current in ("Accepted", "Proposed"):
        # CGS would reject the new proposal at once (one document, one open proposal; accepted ones never change)
        raise ConfigError(f"{kind} {document_id!r} is already {current.lower()} in contract {args.contract!r}; "
                          "an accepted document never changes: publish it under a new name")
    proposal = client.propose_analytics_document(document_id, args.contract, kind, text)
    if not args.no_vote and proposal["proposalState"] == "Open":
        proposal = client.vote(proposal["proposalId"], True)
    _print_proposal(proposal, f"{kind} {document_id}")


def _existing(client: CgsMemberClient, contract_id: str, document_id: str) -> str | None:
    """The state of the contract's document `document_id`, None when there is none."""
    try:
        return client.contract_document(contract_id, document_id).get("state")
    except CgsRequestFailed as exc:
        if exc.code == "DocumentNotFound":
            return None
        raise


def _analytics_document(client: CgsMemberClient, contract_id: str, document_id: str, kind: str) -> dict[str, Any]:
    """The contract's document `document_id`, which must be labelled `kind`."""
    document = client.contract_document(contract_id, document_id)
    if (document.get("labels") or {}).get("kind") != kind:
        raise ConfigError(f"document {document_id!r} of contract {contract_id!r} is not a {kind} document")
    return document


def _data_of(document: dict[str, Any], kind: str) -> Dataset | Query:
    try:
        text = document.get("data")
        return parse_dataset(text) if kind == "dataset" else parse_query(text)  # type: ignore[arg-type]
    except AnalyticsDocumentError as exc:
        raise BadRequest(f"document {document.get('id')!r} in CGS: {exc.message}", code=exc.code) from None


def _publish_files(args: argparse.Namespace, dataset: Dataset) -> None:
    """Check the files against the schema, then encrypt and upload them with `ccr data publish`'s machinery into
    the spec's datasource named by the document's store."""
    if not args.spec:
        raise ConfigError("--data needs --spec SPEC (its datasource named by the document's store receives them)")
    root = Path(args.data)
    files = files_to_publish(root)
    check_files(dataset, files, root)
    print(f"{len(files)} file(s) match the schema of dataset {dataset.name}" +
          (" (Parquet columns are checked by the room's engine)" if dataset.format == "parquet" else ""))
    spec = load_spec(args.spec, variables=spec_variables(args))
    try:
        volume = spec.volume(dataset.store)
    except KeyError:
        raise ConfigError(f"{args.spec} has no datasource {dataset.store!r} (the dataset's store)") from None
    # A dataset's `container` is its store's container (Azure Blob) or bucket (S3).
    where, held_in = ("bucket", volume.store.bucket) if volume.store.kind == "s3" else ("container",
                                                                                         volume.store.container)
    if held_in != dataset.container:
        raise ConfigError(f"dataset {dataset.name!r} says container {dataset.container!r}, the spec's datasource "
                          f"{dataset.store!r} is {where} {held_in!r}")
    if volume.encryption.mode.value != dataset.encryption.mode:
        raise ConfigError(f"dataset {dataset.name!r} says encryption {dataset.encryption.mode}, the spec's "
                          f"datasource {dataset.store!r} {volume.encryption.mode.value}")
    data_commands.publish(argparse.Namespace(
        dir=root, spec=args.spec, volume=dataset.store, container=None, storage_url=None, vault_url=None,
        secret=None, mode=None, dek_file=args.dek_file, ca_bundle=args.ca_bundle, account_key=None,
        endpoints=args.endpoints, var=args.var, kek=args.kek, parallel=4, pin=None, data_only=False,
        key_only=False))


# -- datasets ---------------------------------------------------------------------------------------------
def dataset_publish(args: argparse.Namespace) -> int:
    text, dataset = _read_document(args.document, "dataset")
    assert isinstance(dataset, Dataset)
    if args.data:
        _publish_files(args, dataset)
    with member_client(args) as client:
        _propose(args, client, dataset.name, "dataset", text)
    return 0


def dataset_show(args: argparse.Namespace) -> int:
    with member_client(args) as client:
        document = _analytics_document(client, args.contract, args.name, "dataset")
        print(json.dumps(_view(client, args.contract, document, "dataset"), indent=2))
    return 0


def _view(client: CgsMemberClient, contract_id: str, document: dict[str, Any], kind: str) -> dict[str, Any]:
    view = {key: document.get(key) for key in ("id", "state", "proposalId", "version", "labels", "finalVotes")
            if key in document}
    view[kind] = json.loads(document["data"]) if isinstance(document.get("data"), str) else document.get("data")
    if document.get("state") == "Accepted":
        view["consent"] = client.document_status(contract_id, document["id"])
    return view


def _listing(args: argparse.Namespace, kind: str) -> int:
    with member_client(args) as client:
        shown = 0
        for document_id in client.contract_documents(args.contract):
            document = client.contract_document(args.contract, document_id)
            if (document.get("labels") or {}).get("kind") != kind:
                continue
            content = _data_of(document, kind)
            detail = (f"owner {content.owner}, {content.format} in {content.store}" if isinstance(content, Dataset)
                      else "reads " + ", ".join(i.dataset_name for i in content.input_datasets))
            print(f"{document_id}  {document.get('state')}  {detail}")
            shown += 1
        if not shown:
            print(f"no {kind} documents in contract {args.contract}")
    return 0


def dataset_list(args: argparse.Namespace) -> int:
    return _listing(args, "dataset")


def document_consent(args: argparse.Namespace) -> int:
    """`dataset|query revoke|enable`: the member's per-document execution consent, then the status."""
    document_id = args.name if args.kind == "dataset" else args.id
    with member_client(args) as client:
        _analytics_document(client, args.contract, document_id, args.kind)
        client.set_document_execution(args.contract, document_id, args.enable)
        status = client.document_status(args.contract, document_id)
    reason = (status.get("reason") or {}).get("message", "")
    print(f"{args.kind} {document_id}: execution {status.get('status')}" + (f" ({reason})" if reason else ""))
    return 0


# -- queries ----------------------------------------------------------------------------------------------
def query_propose(args: argparse.Namespace) -> int:
    text, _query = _read_document(args.document, "query")
    with member_client(args) as client:
        _propose(args, client, args.id, "query", text)
    return 0


def query_vote(args: argparse.Namespace) -> int:
    with member_client(args) as client:
        document = _analytics_document(client, args.contract, args.id, "query")
        if document.get("state") != "Proposed":
            raise ConfigError(f"query {args.id!r} is {document.get('state')}: there is no open proposal to vote on")
        proposal = client.vote(document["proposalId"], args.ballot == "accept")
    _print_proposal(proposal, f"query {args.id}")
    return 0


def query_show(args: argparse.Namespace) -> int:
    with member_client(args) as client:
        document = _analytics_document(client, args.contract, args.id, "query")
        query = _data_of(document, "query")
        assert isinstance(query, Query)
        names = {m["memberId"]: (m.get("memberData") or {}).get("identifier") or m["memberId"][:12]
                 for m in client.members()}
        datasets = _accepted_datasets(client, args.contract, query)
        ballots = _ballots(client, document, names)
        consent = client.document_status(args.contract, args.id) if document.get("state") == "Accepted" else None
        for member in (consent or {}).get("revokedBy", []):
            ballots[member] = "revoke"
        print(f"query {args.id} (contract {args.contract}): {document.get('state')}"
              + (f", proposal {document['proposalId']}" if document.get("proposalId") else ""))
        print("  reads: " + ", ".join(
            f"{i.dataset_name} as {i.view_name}"
            + (f" (owner {datasets[i.dataset_name].owner})" if i.dataset_name in datasets else " (not an accepted "
               "dataset)") for i in query.input_datasets))
        print(f"  writes: datasink {query.output_datasink}")
        try:
            decision = approval.decide(query, datasets, ballots)
        except BadRequest as exc:
            print(f"  approval: impossible: {exc.message}")
        else:
            print("  owners: " + "; ".join(f"{owner} {OWNER_STATES.get(ballots.get(owner, ''), 'missing')}"
                                          for owner in decision.owners))
            if decision.ignored:
                print(f"  votes not counted (own none of its datasets): {', '.join(decision.ignored)}")
            print(f"  approval: {decision.reason()}")
        if consent is not None:
            reason = (consent.get("reason") or {}).get("message", "")
            print(f"  execution: {consent.get('status')}" + (f" ({reason})" if reason else ""))
        print(json.dumps(json.loads(document["data"]), indent=2))
    return 0


def _accepted_datasets(client: CgsMemberClient, contract_id: str, query: Query) -> dict[str, Dataset]:
    datasets: dict[str, Dataset] = {}
    for source in query.input_datasets:
        try:
            document = _analytics_document(client, contract_id, source.dataset_name, "dataset")
        except (CgsRequestFailed, ConfigError):
            continue
        if document.get("state") == "Accepted":
            dataset = _data_of(document, "dataset")
            assert isinstance(dataset, Dataset)
            datasets[source.dataset_name] = dataset
    return datasets


def _ballots(client: CgsMemberClient, document: dict[str, Any], names: dict[str, str]) -> dict[str, approval.Ballot]:
    """Each member's ballot by name: the accepted document's finalVotes, or the open proposal's so far."""
    if document.get("state") == "Accepted":
        votes = {v["memberId"]: v["vote"] for v in document.get("finalVotes") or []}
    elif document.get("state") == "Proposed":
        votes = client.proposal(document["proposalId"]).get("finalVotes") or {}
    else:
        votes = {}
    return {names.get(member, member[:12]): BALLOTS[bool(vote)] for member, vote in votes.items()}


def query_list(args: argparse.Namespace) -> int:
    return _listing(args, "query")


# -- privacy budgets ---------------------------------------------------------------------------------------
def budget_show(args: argparse.Namespace) -> int:
    """`budget show DATASET`: the dataset's ε budget as CGS's ledger holds it, and every run that spent from it."""
    with member_client(args) as client:
        view = client.request("GET", f"/app/contracts/{quote(args.contract)}/privacybudget/{quote(args.name)}")
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"dataset {view['dataset']} (owner {view['owner']}): epsilon {view['epsilonRemaining']:g} left of "
          f"{view['epsilonTotal']:g} ({view['epsilonSpent']:g} spent by {len(view['spends'])} runs; at most "
          f"{view['perQueryEpsilonMax']:g} per run, delta {view['delta']:g})")
    for spend in view["spends"]:
        print(f"  run {spend['runId']}  query {spend['queryId']}  epsilon {spend['epsilon']:g}  seqno {spend['seqno']}")
    return 0


def budget_raise(args: argparse.Namespace) -> int:
    """`budget raise DATASET EPSILON --id ID`: the owner proposes (and accepts) a budget document adding ε.
    Accepted documents never change, so each raise is a document of its own; only the owner decides it."""
    text = json.dumps({"dataset": args.name, "epsilon": args.epsilon})
    try:
        parse_budget_grant(text)
    except AnalyticsDocumentError as exc:
        raise BadRequest(exc.message, code=exc.code) from None
    with member_client(args) as client:
        _propose(args, client, args.id, "budget", text)
    return 0
