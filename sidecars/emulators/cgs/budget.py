"""The privacy budget ledger of analytics datasets: every private run spends ε from the budget of
each dataset it reads, here, before the room releases anything.

- `POST /app/contracts/{id}/privacybudget/spend` (a room: signed, attested, with execution consent)
  `{runId, queryId}` → wrapped to the room's key: `{acknowledged, runId, queryId, replayed, spends:
  [{dataset, epsilon, epsilonRemaining}]}`. CGS computes the charge itself from the accepted query and
  dataset documents (`privacy_spend`), so a room cannot under-report it. Each spend is a row of the ledger
  and an event of the contract's hash-chained audit log, committed in one SQLite transaction (`BEGIN
  IMMEDIATE`, under the database's lock): two runs cannot both read "enough left" and both spend. A spend
  that does not fit every budget is refused whole (409 `PrivacyBudgetExhausted`, naming the dataset and
  what is left), and the refusal is audited too. The same runId again spends nothing and answers the first
  spend (`replayed`); under another query it is a 409 `RunIdConflict`.
- `GET /app/contracts/{id}/privacybudget/{dataset}` (a member) → `{dataset, owner, epsilonTotal,
  epsilonSpent, epsilonRemaining, delta, spends: [{runId, queryId, epsilon, seqno, timestamp}]}`.

The budget is the dataset document's `privacy.epsilonTotal` plus the raises in accepted budget documents
(label `kind: budget`, data `{dataset, epsilon}`): only the dataset's owner proposes and decides either, so
only the owner's vote raises a budget (accepted documents never change, so a budget is never lowered: an
owner stops all use of its data by revoking its consent). Nothing is ever refunded (see
docs/analytics.md: a run's failure can depend on the data, so it is an answer too).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter

from ...analytics.documents import (
    EPSILON_UNITS,
    BudgetGrant,
    Dataset,
    PrivacyRefused,
    Query,
    format_epsilon,
    privacy_spend,
)
from ...common.errors import BadRequest, Conflict, NotFound
from . import schemas
from .analytics import DOCUMENT_ID, accepted_dataset, kind_of, parsed
from .deps import Cgs, CgsState, MemberAuth, SignedReleaseRoomAuth

router = APIRouter()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS privacy_spends (
    contract TEXT NOT NULL,
    run_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    query_id TEXT NOT NULL,
    epsilon INTEGER NOT NULL,
    seqno INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (contract, run_id, dataset)
);
CREATE INDEX IF NOT EXISTS privacy_spends_by_dataset ON privacy_spends (contract, dataset);
"""
EVENT_ID = "privacy-budget"


class PrivacyBudgetExhausted(Conflict):
    code = "PrivacyBudgetExhausted"


def _ensure_ledger(cgs: CgsState) -> None:
    # executescript commits: run it outside any transaction, once per database object
    database = cgs.store.db
    if getattr(database, "privacy_ledger_ready", False):
        return
    with database.lock:
        database.conn.executescript(_SCHEMA)
        database.privacy_ledger_ready = True  # type: ignore[attr-defined]


def _epsilon(units: int) -> float:
    return units / EPSILON_UNITS


def _accepted_query(cgs: CgsState, contract_id: str, query_id: str) -> Query:
    document = cgs.store.state.documents.get(query_id)
    if (document is None or document.get("contractId") != contract_id or document.get("state") != "Accepted"
            or kind_of(document) != "query"):
        raise NotFound(f"query {query_id!r} is not an accepted query of contract {contract_id!r}",
                       code="UnknownQuery")
    query = parsed(document, "query")
    assert isinstance(query, Query)
    return query


def budget_total(cgs: CgsState, contract_id: str, dataset: Dataset) -> int:
    """The dataset document's `epsilonTotal` plus every raise its owner accepted (budget documents): accepted
    documents never change, so each raise is a document of its own, and only the owner decides one."""
    assert dataset.privacy is not None
    total = dataset.privacy.epsilon_total
    for document in list(cgs.store.state.documents.values()):
        if (kind_of(document) == "budget" and document.get("state") == "Accepted"
                and document.get("contractId") == contract_id):
            grant = parsed(document, "budget")
            if isinstance(grant, BudgetGrant) and grant.dataset == dataset.name:
                total += grant.epsilon
    return total


def _spent(conn: Any, contract_id: str, dataset: str) -> int:
    return conn.execute("SELECT COALESCE(SUM(epsilon), 0) FROM privacy_spends WHERE contract = ? AND dataset = ?",
                        (contract_id, dataset)).fetchone()[0]


def spend(cgs: CgsState, contract_id: str, run_id: str, query_id: str) -> dict[str, Any]:
    """Record the run's spend (or answer the one already recorded under its runId); PrivacyBudgetExhausted
    if any budget lacks room, with nothing spent."""
    _ensure_ledger(cgs)
    refused: PrivacyBudgetExhausted | None = None
    with cgs.change():
        conn = cgs.store.db.conn
        before = conn.execute("SELECT dataset, query_id, epsilon FROM privacy_spends WHERE contract = ? AND "
                              "run_id = ? ORDER BY dataset", (contract_id, run_id)).fetchall()
        if before:
            if any(row[1] != query_id for row in before):
                raise Conflict(f"runId {run_id!r} already spent for another query", code="RunIdConflict")
            return _ack(cgs, contract_id, run_id, query_id, {row[0]: row[2] for row in before}, replayed=True)
        query = _accepted_query(cgs, contract_id, query_id)
        datasets: dict[str, Dataset] = {source.dataset_name: accepted_dataset(cgs.store, contract_id,
                                                                               source.dataset_name)
                                        for source in query.input_datasets}
        try:
            charges = privacy_spend(query, datasets)
        except PrivacyRefused as exc:
            raise BadRequest(exc.message, code=exc.code) from None
        if not charges:
            raise BadRequest(f"query {query_id!r} reads no dataset with a privacy policy: it spends nothing",
                             code="NotPrivate")
        for name, epsilon in sorted(charges.items()):
            total = budget_total(cgs, contract_id, datasets[name])
            left = max(total - _spent(conn, contract_id, name), 0)
            if epsilon > left:
                refused = PrivacyBudgetExhausted(
                    f"dataset {name!r}: the run needs epsilon {format_epsilon(epsilon)}, "
                    f"{format_epsilon(left)} of {format_epsilon(total)} is left")
                break
        if refused is not None:
            # the refusal is on record as well: an owner sees every attempt on its data, also those that did
            # not run (committed as this transaction ends; the exception is raised after)
            cgs.audit.append(contract_id, "cgs", EVENT_ID, {"action": "privacy_budget_refused", "runId": run_id,
                                                            "queryId": query_id, "reason": refused.message})
        else:
            event = cgs.audit.append(contract_id, "cgs", EVENT_ID, {
                "action": "spend_privacy_budget", "runId": run_id, "queryId": query_id,
                "spends": [{"dataset": name, "epsilon": _epsilon(units)} for name, units in sorted(charges.items())]})
            conn.executemany("INSERT INTO privacy_spends VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [(contract_id, run_id, name, query_id, units, event["seqno"], event["timestamp"])
                              for name, units in charges.items()])
            return _ack(cgs, contract_id, run_id, query_id, charges, replayed=False)
    raise refused


def _ack(cgs: CgsState, contract_id: str, run_id: str, query_id: str, charges: dict[str, int], *,
         replayed: bool) -> dict[str, Any]:
    spends = []
    for name, units in sorted(charges.items()):
        # a replay answers today's remaining budget: the total is the dataset document's as accepted now
        dataset = accepted_dataset(cgs.store, contract_id, name)
        total = budget_total(cgs, contract_id, dataset) if dataset.privacy else 0
        left = max(total - _spent(cgs.store.db.conn, contract_id, name), 0)
        spends.append({"dataset": name, "epsilon": _epsilon(units), "epsilonRemaining": _epsilon(left)})
    return {"acknowledged": True, "runId": run_id, "queryId": query_id, "replayed": replayed, "spends": spends}


@router.post("/app/contracts/{contract_id}/privacybudget/spend", response_model=None, openapi_extra=schemas.ROOM)
def spend_budget(contract_id: str, cgs: Cgs, room: SignedReleaseRoomAuth) -> dict[str, str]:
    # A plain `def`: FastAPI runs it in a worker thread, so concurrent spends really race for the ledger's
    # transaction (the serialisation point), as they would across CGS nodes.
    data = room.data
    if not isinstance(data, dict):
        raise BadRequest("data: expected {runId, queryId}")
    run_id, query_id = data.get("runId"), data.get("queryId")
    if not isinstance(run_id, str) or not DOCUMENT_ID.fullmatch(run_id):
        raise BadRequest("data.runId: a plain name is required")
    if not isinstance(query_id, str) or not DOCUMENT_ID.fullmatch(query_id):
        raise BadRequest("data.queryId: a plain name is required")
    return room.wrapped(json.dumps(spend(cgs, contract_id, run_id, query_id)).encode())


def budget_view(cgs: CgsState, contract_id: str, dataset_name: str) -> dict[str, Any]:
    _ensure_ledger(cgs)
    dataset = accepted_dataset(cgs.store, contract_id, dataset_name)
    if dataset.privacy is None:
        raise NotFound(f"dataset {dataset_name!r} has no privacy policy: it has no budget", code="NoPrivacyBudget")
    with cgs.store.db.lock:
        rows = cgs.store.db.conn.execute(
            "SELECT run_id, query_id, epsilon, seqno, timestamp FROM privacy_spends WHERE contract = ? AND "
            "dataset = ? ORDER BY seqno", (contract_id, dataset_name)).fetchall()
    spent = sum(row[2] for row in rows)
    total = budget_total(cgs, contract_id, dataset)
    return {"dataset": dataset_name, "owner": dataset.owner, "epsilonTotal": _epsilon(total),
            "epsilonSpent": _epsilon(spent), "epsilonRemaining": _epsilon(max(total - spent, 0)),
            "delta": dataset.privacy.delta, "perQueryEpsilonMax": _epsilon(dataset.privacy.per_query_epsilon_max),
            "spends": [{"runId": r[0], "queryId": r[1], "epsilon": _epsilon(r[2]), "seqno": r[3],
                        "timestamp": r[4]} for r in rows]}


@router.get("/app/contracts/{contract_id}/privacybudget/{dataset_name}", response_model=None)
async def get_budget(contract_id: str, dataset_name: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    cgs.store.contract(contract_id)
    return budget_view(cgs, contract_id, dataset_name)
