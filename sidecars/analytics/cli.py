"""`ccr analytics ...`: a member's side of an analytics clean room (issue 17): datasets and queries in CGS, runs
through the room's API, and the app's own server (`serve`, what the analytics image runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cliargs import Subcommands, add_command, add_var_option, noun
from ..governance.cli import add_connection

_COMMANDS = "sidecars.analytics.commands"
_RUNS = "sidecars.analytics.runcommands"

DESCRIPTION = """\
An analytics clean room runs Spark SQL over several parties' encrypted datasets. Each party describes its
data in a dataset document and each computation is a query document; both live in CGS as member documents
of the contract (labelled kind dataset or query).

The approval rule: the owners of the data decide, nobody else.
  - a dataset is proposed by its owner alone and accepted by the owner's own vote;
  - a query is accepted once the owner of every dataset it reads voted accept; one of them voting
    reject rejects it; other members' votes are recorded but neither accept nor veto;
  - afterwards any owner can revoke (`dataset revoke`, `query revoke`): queries reading a revoked
    dataset, running or not, stop; `enable` undoes the member's own revocation.

The flow:
  1. each owner: ccr analytics dataset publish sales.json --data DIR --spec SPEC --contract C
     (checks the files against the schema, encrypts and uploads them to the spec's datasource named
     by the document's store, then proposes the document and accepts it);
  2. a member:   ccr analytics query propose q.json --id Q --contract C
  3. each owner of its inputs: ccr analytics query vote Q accept --contract C
     (`query show Q` says whose accept is still missing);
  4. a member:   ccr analytics run Q --url https://ROOM --contract-ca ca.pem --identity DIR --wait
     (the room checks the approvals and every owner's consent before Spark starts);
  5. the sink's owner downloads the result: ccr data download ...

Every command acts as the member identity (`--identity DIR`, or CCR_MEMBER_DIR) against CGS (`--cgs URL`,
CCR_CGS_ENDPOINT, or `--endpoints FILE`).
"""

TARGETS = {"name": "the dataset's name (its document id)", "id": "the query's document id"}


def register(subparsers: Subcommands) -> None:
    noun(subparsers, "analytics", "analytics clean rooms: datasets and queries approved by the data's owners, runs",
         DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter, verbs=_analytics)


def _analytics(sub: Subcommands) -> None:
    noun(sub, "dataset", "publish, show, list, revoke or re-enable datasets",
         "A dataset document names a party's data: its owner, where it is stored (a datasource of the spec), "
         "its format and schema, the fields a query may read, whether only aggregates may leave, the "
         "aggregation threshold and the encryption. Only its owner proposes it, and its owner alone accepts it.",
         verbs=_dataset)
    noun(sub, "query", "propose, vote on, show, list, revoke or re-enable queries",
         "A query document is the SQL (segments run in order), the datasets it reads (as views) and the "
         "datasink its result goes to. It is accepted once the owner of every dataset it reads accepted it; "
         "other members' votes do not count.", verbs=_query)
    noun(sub, "budget", "show or raise a dataset's privacy budget",
         "A dataset whose document has a privacy policy admits private queries only, and each run spends its "
         "epsilon from the dataset's budget in CGS's ledger before the room releases anything. Only the dataset's "
         "owner raises the budget (a budget document it proposes and alone decides).", verbs=_budget)
    run = add_command(sub, "run", f"{_RUNS}:cmd_run", "run an accepted query in the room (its run API)",
                      "Ask the room to run QUERY: the room checks the caller, the approvals and the consent of the "
                      "query and of every dataset it reads, then runs it and writes the result to the query's "
                      "datasink. Exit 0 only when the run succeeded (or, with --dry-run, validated).")
    run.add_argument("query", metavar="QUERY", help="the query's document id")
    run.add_argument("--run-id", metavar="ID", help="the run's id (the same id again is the same run)")
    run.add_argument("--dry-run", action="store_true", help="check everything, run nothing")
    run.add_argument("--start-date", metavar="YYYY-MM-DD", help="read only dated folders from this day")
    run.add_argument("--end-date", metavar="YYYY-MM-DD", help="read only dated folders up to this day")
    run.add_argument("--wait", action="store_true", help="follow the run until it ends, printing its status")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits (default %(default)s)")
    _add_room(run)
    runs = add_command(sub, "runs", f"{_RUNS}:cmd_runs", "list a query's runs, or show one run",
                       "Show the runs of --query, or the run --run: status, timings, rows written, failure reason.")
    runs.add_argument("--query", metavar="ID", help="the query whose runs to list")
    runs.add_argument("--run", metavar="RUN_ID", help="the run to show")
    _add_room(runs)
    serve = add_command(sub, "serve", "sidecars.analytics.service:cmd_serve",
                        "the analytics app's run API (what the ccr-analytics image runs inside the room)")
    serve.add_argument("--port", type=int, default=8080, help="default %(default)s")
    serve.add_argument("--host", default="0.0.0.0", help="listen address (default %(default)s)")
    serve.add_argument("--mount-root", type=Path, default=Path("/mnt/remote"), metavar="DIR",
                       help="where the room mounts the datasets and datasinks (default %(default)s)")
    serve.add_argument("--scratch", type=Path, default=Path("/tmp/ccr-analytics"), metavar="DIR",
                       help="Spark's scratch space and the runs' database (default %(default)s)")
    serve.add_argument("--governance-url",
                       help="the governance sidecar (default: from the app's environment)")


def _add_room(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, metavar="URL", help="the room's analytics API (behind its proxy)")
    parser.add_argument("--contract-ca", required=True, type=Path, metavar="PEM",
                        help="the contract CA certificate the room's TLS certificate must chain to")
    parser.add_argument("--identity", required=True, metavar="DIR", help="member identity directory (signs the "
                        "requests)")


def _command(sub: Subcommands, name: str, handler: str, help_text: str, target: str | None = None,
             **defaults) -> argparse.ArgumentParser:
    parser = add_command(sub, name, f"{_COMMANDS}:{handler}", help_text)
    if target:
        parser.add_argument(target, metavar=target.upper(), help=TARGETS[target])
    parser.add_argument("--contract", required=True, help="the contract the documents belong to")
    add_connection(parser)
    parser.set_defaults(**defaults)
    return parser


def _dataset(sub: Subcommands) -> None:
    publish = _command(sub, "publish", "dataset_publish", "check a dataset document (and its files), upload the "
                       "files encrypted, propose and accept the document")
    publish.add_argument("document", metavar="DOC", type=Path, help="the dataset document (JSON)")
    publish.add_argument("--data", help="a directory of the dataset's files: checked against the document's schema, "
                                        "then encrypted and uploaded as `ccr data publish` does")
    publish.add_argument("--spec", metavar="SPEC", help="with --data: the spec whose datasource (the document's "
                                                         "store) receives the files")
    publish.add_argument("--dek-file", metavar="FILE", type=Path,
                         help="with --data: the owner's local copy of the DEK (as `ccr data publish`)")
    publish.add_argument("--kek", metavar="JWK|PEM|URL", help="with --data: the KEK (default: the spec's kek_name "
                                                                "in its vault)")
    add_var_option(publish)
    publish.add_argument("--no-vote", action="store_true", help="propose without voting accept")
    _command(sub, "show", "dataset_show", "show a dataset document and its state", "name")
    _command(sub, "list", "dataset_list", "list the contract's dataset documents")
    _command(sub, "revoke", "document_consent", "revoke consent for your dataset: queries reading it stop", "name",
             kind="dataset", enable=False)
    _command(sub, "enable", "document_consent", "undo your revocation of a dataset", "name", kind="dataset",
             enable=True)


def _budget(sub: Subcommands) -> None:
    show = _command(sub, "show", "budget_show", "the epsilon left, spent and granted, and each run that spent it",
                    "name")
    show.add_argument("--json", action="store_true", help="print CGS's answer as JSON")
    grant = _command(sub, "raise", "budget_raise", "raise your dataset's privacy budget (proposes and accepts a "
                     "budget document)", "name")
    grant.add_argument("epsilon", type=float, help="the epsilon to add")
    grant.add_argument("--id", required=True, help="the budget document's id (each raise is a new document)")
    grant.add_argument("--no-vote", action="store_true", help="propose without voting accept")


def _query(sub: Subcommands) -> None:
    propose = _command(sub, "propose", "query_propose", "check a query document and propose it (the owners of its "
                       "datasets decide)")
    propose.add_argument("document", metavar="DOC", type=Path, help="the query document (JSON)")
    propose.add_argument("--id", required=True, help="the query's document id")
    propose.add_argument("--no-vote", action="store_true", help="propose without voting accept")
    vote = _command(sub, "vote", "query_vote", "vote on a proposed query (counts only from an owner of its "
                    "datasets)", "id")
    vote.add_argument("ballot", choices=("accept", "reject"), help="accept or reject")
    _command(sub, "show", "query_show", "show a query, its state and each owner's approval", "id")
    _command(sub, "list", "query_list", "list the contract's query documents")
    _command(sub, "revoke", "document_consent", "revoke consent for a query reading your data: its runs stop", "id",
             kind="query", enable=False)
    _command(sub, "enable", "document_consent", "undo your revocation of a query", "id", kind="query",
             enable=True)
