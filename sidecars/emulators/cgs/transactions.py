"""Transaction ids, as CCF gives them: every write the stand-in commits answers `x-ms-ccf-transaction-id:
2.N`, and `GET /app/tx` / `GET /gov/tx?transaction_id=2.N` say whether that transaction is committed.

N is the database's seqno (see `db.Database.transaction`): bumped inside each write's own SQLite
transaction, so an id is handed out only for a write that is on disk, ids only grow, and a restarted
stand-in never hands out an id twice. The stand-in is one node that never changes view, so its view is
always 2 (a CCF service's first view after its genesis transaction). What the status query answers follows
CCF's `evaluate_tx_status` for such a node: an id at or below the committed seqno is `Committed` in view 2
and `Invalid` in any other view (that seqno was committed in view 2, so the other view's transaction was
not); an id beyond it is `Unknown` (not reached yet), or `Invalid` in a view older than 2. `Pending` never
happens: a write is answered only once committed. The status is readable without credentials, as on CCF
(the room, which has none, polls `/app/tx`); `/gov/tx` is CCF's legacy common endpoint and, like it, needs
no `api-version`.

A request learns its write's seqno through a per-request recorder that an ASGI middleware puts in a context
variable before the app runs: the database's commit callback writes into whichever recorder is current.
The recorder is a mutable object, so a write made in a worker thread (whose context is a copy) still
reaches it. A request that commits more than one transaction (a room's signature record, then its event)
answers with the last, which covers all of them.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...common.ccftx import TRANSACTION_ID_HEADER
from ...common.errors import BadRequest
from .db import Database

#: The stand-in's one view (see above).
VIEW = 2
_TRANSACTION_ID = re.compile(r"([0-9]{1,19})\.([0-9]{1,19})")
_ECHOED_CHARS = 40

router = APIRouter()


@dataclass
class _Recorder:
    seqno: int | None = None


_current: ContextVar[_Recorder | None] = ContextVar("ccr_cgs_transaction", default=None)


def transaction_id(seqno: int) -> str:
    return f"{VIEW}.{seqno}"


def _record(seqno: int) -> None:
    recorder = _current.get()
    if recorder is not None:
        recorder.seqno = seqno


def track_commits(database: Database) -> None:
    """Make `database`'s commits name the transaction of the request that made them."""
    database.on_commit(_record)


class TransactionIdMiddleware:
    """Adds `x-ms-ccf-transaction-id` to the answer of every request during which a write committed."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recorder = _Recorder()
        token = _current.set(recorder)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start" and recorder.seqno is not None:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != TRANSACTION_ID_HEADER.encode()]
                headers.append((TRANSACTION_ID_HEADER.encode(), transaction_id(recorder.seqno).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)


def status_of(view: int, seqno: int, committed_seqno: int) -> str:
    if seqno <= committed_seqno:
        return "Committed" if view == VIEW else "Invalid"
    return "Unknown" if view >= VIEW else "Invalid"


def _parse(value: str | None) -> tuple[int, int]:
    # CCF's answers to a missing or malformed id (common endpoints' txid_from_query_string).
    if value is None:
        raise BadRequest("Query string must contain a 'transaction_id' parameter", code="InvalidQueryParameterValue")
    match = _TRANSACTION_ID.fullmatch(value)
    if match is None:
        raise BadRequest(f"The value '{value[:_ECHOED_CHARS]}' passed as 'transaction_id' could not be converted "
                         "to a valid Tx ID.", code="InvalidQueryParameterValue")
    return int(match[1]), int(match[2])


def _status(request: Request, transaction_id: str | None) -> dict[str, Any]:
    view, seqno = _parse(transaction_id)
    database: Database = request.app.state.cgs.store.db
    return {"transaction_id": f"{view}.{seqno}", "status": status_of(view, seqno, database.committed_seqno)}


@router.get("/app/tx", response_model=None)
async def app_tx(request: Request, transaction_id: str | None = None) -> dict[str, Any]:
    return _status(request, transaction_id)


@router.get("/gov/tx", response_model=None)
async def gov_tx(request: Request, transaction_id: str | None = None) -> dict[str, Any]:
    return _status(request, transaction_id)
