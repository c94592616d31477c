"""Commit before acknowledge: a write is done only once its transaction is Committed."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sidecars.common import ccftx
from sidecars.common.ccftx import TransactionNotCommitted, wait_committed, wait_committed_async


def _service(statuses: list[str], asked: list[str]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.path}?{request.url.query.decode()}")
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return httpx.Response(200, json={"transaction_id": "2.7", "status": status})
    return httpx.MockTransport(answer)


def _write(txid: str | None) -> httpx.Response:
    return httpx.Response(204, headers={ccftx.TRANSACTION_ID_HEADER: txid} if txid else {})


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch):
    monkeypatch.setattr(ccftx, "POLL_INTERVAL_S", 0.01)


def test_a_write_is_done_once_its_transaction_is_committed():
    asked: list[str] = []
    with httpx.Client(base_url="https://cgs", transport=_service(["Unknown", "Pending", "Committed"], asked)) as c:
        assert wait_committed(c, _write("2.7"), endpoint="/gov/tx") == "2.7"
    assert asked == ["/gov/tx?transaction_id=2.7"] * 3


def test_a_rolled_back_transaction_fails_at_once():
    asked: list[str] = []
    with httpx.Client(base_url="https://cgs", transport=_service(["Invalid"], asked)) as c, \
            pytest.raises(TransactionNotCommitted, match="not committed .status Invalid"):
        wait_committed(c, _write("2.7"))
    assert len(asked) == 1


def test_a_transaction_that_stays_pending_fails_after_the_timeout():
    with httpx.Client(base_url="https://cgs", transport=_service(["Pending"], [])) as c, \
            pytest.raises(TransactionNotCommitted, match="within 0.05 s"):
        wait_committed(c, _write("2.7"), timeout_s=0.05)


def test_a_malformed_transaction_id_is_never_put_into_a_url():
    asked: list[str] = []
    with httpx.Client(base_url="https://cgs", transport=_service(["Committed"], asked)) as c:
        for hostile in ("2.7&transaction_id=1.1", "../gov", "2", "2.7.1", "9" * 30 + ".1"):
            with pytest.raises(TransactionNotCommitted, match="malformed"):
                wait_committed(c, _write(hostile))
    assert asked == []


def test_an_answer_without_a_transaction_id_needs_no_wait():
    asked: list[str] = []
    with httpx.Client(base_url="https://cgs", transport=_service(["Committed"], asked)) as c:
        assert wait_committed(c, _write(None)) is None
    assert asked == []


def test_a_status_query_that_fails_is_not_taken_for_a_commit():
    failing = httpx.MockTransport(lambda request: httpx.Response(500, json={"error": {"code": "X"}}))
    with httpx.Client(base_url="https://cgs", transport=failing) as c, \
            pytest.raises(TransactionNotCommitted, match="answered 500"):
        wait_committed(c, _write("2.7"))


def test_the_async_wait_polls_the_endpoint_it_is_given():
    asked: list[str] = []

    async def run() -> str | None:
        async with httpx.AsyncClient(transport=_service(["Pending", "Committed"], asked)) as c:
            return await wait_committed_async(c, "https://cgs/", _write("2.7"), endpoint="/app/tx")

    assert asyncio.run(run()) == "2.7"
    assert asked == ["/app/tx?transaction_id=2.7"] * 2
