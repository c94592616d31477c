"""What the routes share: the party (on `app.state.party`) and checks of the ids in paths."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request

from .errors import FieldError
from .models import CONTRACT_ID, DOCUMENT_ID, RUN_ID
from .party import Party


def party_of(request: Request) -> Party:
    return request.app.state.party


PartyDep = Annotated[Party, Depends(party_of)]


def checked(value: str, pattern: re.Pattern[str], field: str) -> str:
    """A path id: the plain name CGS and the room key things by, nothing else (no '/', '..', '?')."""
    if not pattern.fullmatch(value):
        raise FieldError.one(field, f"{value[:64]!r} is not a plain name ({pattern.pattern})", http_status=404)
    return value


def contract_id(collaboration_id: str) -> str:
    return checked(collaboration_id, CONTRACT_ID, "collaborationId")


def document_id(value: str, field: str) -> str:
    return checked(value, DOCUMENT_ID, field)


def run_id(value: str) -> str:
    return checked(value, RUN_ID, "runId")
