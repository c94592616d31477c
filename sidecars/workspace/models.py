"""The request bodies of the workspace API. Documents (dataset, query) are checked by the CLI's own models
(`sidecars.analytics.documents`), the same the room checks them with; these models only shape the requests
around them."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

#: a collaboration (contract) id: what CGS takes, bounded
CONTRACT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: a dataset's or query's document id, and a member name: names as CGS keys them (documents.py's _NAME)
DOCUMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Deliberately plain: an address the Entra stand-in can sign in; no quoting, no comments, no IP literals.
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
INVITATION_ID = re.compile(r"[A-Za-z0-9_-]{22}")
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

DocumentId = Annotated[str, StringConstraints(pattern=f"^{DOCUMENT_ID.pattern}$")]
Email = Annotated[str, StringConstraints(pattern=f"^{EMAIL.pattern}$", max_length=254)]
MemberName = Annotated[str, StringConstraints(pattern=f"^{MEMBER_NAME.pattern}$")]
RunId = Annotated[str, StringConstraints(pattern=f"^{RUN_ID.pattern}$")]
LocalPath = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentRequest(Body):
    enabled: bool


class InvitationRequest(Body):
    email: Email
    name: MemberName
    #: the OIDC issuer the invitee signs in with (default: this workspace's --entra)
    issuer: Annotated[str, StringConstraints(pattern=r"^https://[^\s?#]{1,500}$")] | None = None
    clientId: Annotated[str, StringConstraints(pattern=f"^{CLIENT_ID.pattern}$")] | None = None


class PublishData(Body):
    folder: LocalPath
    spec: LocalPath | None = None


class DatasetPublishRequest(Body):
    document: dict[str, Any]
    vote: bool = True
    data: PublishData | None = None


class QueryCheckRequest(Body):
    document: dict[str, Any]


class QueryProposeRequest(Body):
    id: DocumentId
    document: dict[str, Any]
    vote: bool = True


class VoteRequest(Body):
    ballot: Literal["accept", "reject"]


class RunRequest(Body):
    runId: RunId | None = None
    dryRun: bool = False
    startDate: dt.date | None = None
    endDate: dt.date | None = None


