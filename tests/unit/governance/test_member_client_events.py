"""The member client reads events as cgs-client does: CGS answers 202 with `retry-after` while it fetches a range
from its ledger, and the client waits that long and asks again (within a bound), following nextLink."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sidecars.common.memberauth import MemberIdentity
from sidecars.governance import member_client
from sidecars.governance.member_client import CgsMemberClient, CgsRequestFailed


class _LedgerFetchingCgs:
    """Answers each events path `pending` times with 202 (retry-after `delay`) before the page itself."""

    def __init__(self, pages: dict[str, dict], *, pending: int, delay: str):
        self.requests: list[tuple[float, str]] = []
        outer = self
        remaining = {path: pending for path in pages}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append((time.monotonic(), self.path))
                if remaining.get(self.path, 0) > 0:
                    remaining[self.path] -= 1
                    self.send_response(202)
                    self.send_header("retry-after", delay)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = json.dumps(pages[self.path]).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


FIRST = "/app/contracts/c1/events?from_seqno=1&max_seqno_per_page=2000&chain=true"
SECOND = "/app/contracts/c1/events?from_seqno=3&to_seqno=3"


def test_202_is_waited_for_as_retry_after_says_and_pages_are_followed(tmp_path):
    cgs = _LedgerFetchingCgs({FIRST: {"value": [{"seqno": 1}, {"seqno": 2}], "nextLink": SECOND},
                              SECOND: {"value": [{"seqno": 3}], "head": {"seqno": 3, "hash": "h"}}},
                             pending=2, delay="0.2")
    with CgsMemberClient(cgs.url, MemberIdentity.create(tmp_path / "m", "m")) as client:
        events, head = client.events("c1")
    assert [e["seqno"] for e in events] == [1, 2, 3] and head == {"seqno": 3, "hash": "h"}
    times = [t for t, path in cgs.requests if path == FIRST]
    assert len(times) == 3 and all(later - earlier >= 0.18 for earlier, later in zip(times, times[1:], strict=False))
    cgs.server.shutdown()


def test_a_ledger_that_never_answers_ends_in_one_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(member_client, "RETRY_AFTER_TOTAL_S", 0.5)
    # a hostile retry-after (a year, not a number) is bounded: the wait is at most 5 s per answer, 1 s for junk
    cgs = _LedgerFetchingCgs({FIRST: {"value": []}}, pending=100, delay="nan")
    started = time.monotonic()
    with CgsMemberClient(cgs.url, MemberIdentity.create(tmp_path / "m", "m")) as client, \
            pytest.raises(CgsRequestFailed, match="still fetching events"):
        client.events("c1")
    assert time.monotonic() - started < 2
    cgs.server.shutdown()


@pytest.mark.parametrize("value, seconds", [("2", 2.0), ("0.5", 0.5), ("31536000", 5.0), ("-3", 0.0), ("nan", 1.0),
                                            ("inf", 1.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0), ("", 1.0)])
def test_retry_after_is_bounded(value, seconds):
    assert member_client._retry_after_seconds(value) == seconds
