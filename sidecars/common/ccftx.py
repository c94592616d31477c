"""Commit before acknowledge: CCF answers a write once it is executed, not once it is committed.

A write's answer names its transaction in `x-ms-ccf-transaction-id` (`VIEW.SEQNO`). Like the Azure clean
room's governance sidecar and cgs-client, our clients treat the write as done only when
`GET /app/tx?transaction_id=` (or `/gov/tx` for governance writes) says `Committed`: a write that is only
executed may still be rolled back by an election, and an audit record that is not committed is not
recorded. `Unknown` and `Pending` are asked again every half second for at most `timeout_s`; `Invalid`
(rolled back) or anything else fails at once. An answer without the header (an older CGS, a read) needs
no wait.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from .errors import CcrError

TRANSACTION_ID_HEADER = "x-ms-ccf-transaction-id"
#: The reference waits five seconds, polling every 500 ms.
COMMIT_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.5
_TRANSACTION_ID = re.compile(r"^\d{1,20}\.\d{1,20}$")
_WAITING = ("Unknown", "Pending")


class TransactionNotCommitted(CcrError):
    """The service executed a write but did not commit it (rolled back, or not within the timeout)."""

    code = "TransactionNotCommitted"
    http_status = 502


def transaction_id(response: httpx.Response) -> str | None:
    """The transaction a write answer names, checked to be `VIEW.SEQNO` (it is put into a URL)."""
    value = response.headers.get(TRANSACTION_ID_HEADER)
    if value is None:
        return None
    if not _TRANSACTION_ID.match(value):
        raise TransactionNotCommitted(f"the service named a malformed transaction id {value[:40]!r}")
    return value


def _status(answer: httpx.Response, txid: str) -> str:
    if answer.status_code != 200:
        raise TransactionNotCommitted(f"transaction {txid}: the status query answered {answer.status_code}")
    try:
        status = answer.json()["status"]
    except (ValueError, KeyError, TypeError):
        raise TransactionNotCommitted(f"transaction {txid}: the status answer has no status") from None
    return str(status)


def _failed(txid: str, status: str, timeout_s: float) -> TransactionNotCommitted:
    if status in _WAITING:
        return TransactionNotCommitted(f"transaction {txid} was not committed within {timeout_s:g} s "
                                       f"(status {status})")
    return TransactionNotCommitted(f"transaction {txid} was not committed (status {status[:40]})")


def wait_committed(client: httpx.Client, response: httpx.Response, *, endpoint: str = "/app/tx",
                   timeout_s: float = COMMIT_TIMEOUT_S) -> str | None:
    """Block until the write `response` answered is committed; its transaction id (None: nothing to wait for).
    `client` must have the service as its base URL."""
    txid = transaction_id(response)
    if txid is None:
        return None
    deadline = time.monotonic() + timeout_s
    while True:
        status = _status(client.get(endpoint, params={"transaction_id": txid}), txid)
        if status == "Committed":
            return txid
        if status not in _WAITING or time.monotonic() > deadline:
            raise _failed(txid, status, timeout_s)
        time.sleep(POLL_INTERVAL_S)


async def wait_committed_async(client: httpx.AsyncClient, base_url: str, response: httpx.Response, *,
                               endpoint: str = "/app/tx", timeout_s: float = COMMIT_TIMEOUT_S) -> str | None:
    """`wait_committed` for an async client; `base_url` is the service's root (`https://host:port`)."""
    txid = transaction_id(response)
    if txid is None:
        return None
    url = base_url.rstrip("/") + endpoint
    deadline = time.monotonic() + timeout_s
    while True:
        status = _status(await client.get(url, params={"transaction_id": txid}), txid)
        if status == "Committed":
            return txid
        if status not in _WAITING or time.monotonic() > deadline:
            raise _failed(txid, status, timeout_s)
        await asyncio.sleep(POLL_INTERVAL_S)
