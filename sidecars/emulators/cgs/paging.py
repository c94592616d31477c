"""Paginated listings, shaped as CCF's and CGS's: `{"value": [...], "nextLink": "<path and query>"}`, the
`nextLink` absent on the last page. A client follows `nextLink` until there is none.

Listings take `$maxpagesize` and `$skiptoken` (`SkipToken`, `MaxPageSize`), as the Azure REST
guidelines name them. A page is read from the database, a range of its primary key after the `$skiptoken`
(the key of the last entry the previous page gave), so a listing costs a page however many entries the
contract has gathered and nothing builds the whole list in memory. The token is opaque to clients
(base64url of that key); one that is not a token the stand-in gave is refused with one line.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query

from ...common.errors import BadRequest
from . import db

#: Entries per page unless the caller asks for fewer (`$maxpagesize`); no caller gets more.
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_MAX_TOKEN_CHARS = 4096


def _token_of(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _key_of(token: str) -> str:
    if len(token) > _MAX_TOKEN_CHARS:
        raise BadRequest("$skiptoken is not one this service gave", code="InvalidSkipToken")
    try:
        key = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not isinstance(json.loads(key), list):
            raise ValueError(key)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("$skiptoken is not one this service gave", code="InvalidSkipToken") from None
    return key


def page_size(requested: int | None) -> int:
    if requested is None:
        return PAGE_SIZE
    if requested < 1:
        raise BadRequest("$maxpagesize must be at least 1", code="InvalidParameter")
    return min(requested, MAX_PAGE_SIZE)


def _records_after(database: db.Database, kind: str, after: str, limit: int) -> list[tuple[str, str]]:
    with database.lock:
        return database.conn.execute(
            "SELECT key, value FROM records WHERE kind = ? AND key > ? ORDER BY key LIMIT ?",
            (kind, after, limit)).fetchall()


def listing(database: db.Database, kind: str, path: str, *, skiptoken: str | None, maxpagesize: int | None,
            view: Callable[[str, Any], dict[str, Any] | None], query: dict[str, str] | None = None
            ) -> dict[str, Any]:
    """One page of the `kind` records (in key order): `view(id, value)` of each, those it answers None for
    left out. A page is at most `maxpagesize` records read, so a filtered page may hold fewer entries (even
    none) and still have a `nextLink`: only its absence says the listing is complete."""
    size = page_size(maxpagesize)
    after = "" if skiptoken is None else _key_of(skiptoken)
    rows = _records_after(database, kind, after, size)
    value = [entry for entry in (view(json.loads(key)[0], json.loads(raw)) for key, raw in rows)
             if entry is not None]
    result: dict[str, Any] = {"value": value}
    if len(rows) == size:
        params = {**(query or {}), "$maxpagesize": str(size), "$skiptoken": _token_of(rows[-1][0])}
        result["nextLink"] = f"{path}?{urlencode(params)}"
    return result



SkipToken = Annotated[str | None, Query(alias="$skiptoken")]
MaxPageSize = Annotated[int | None, Query(alias="$maxpagesize")]
