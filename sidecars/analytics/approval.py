"""The approval rule of an analytics query: the owners of the data it reads decide, nobody else.

A query is approved when every owner of every input dataset has accepted it and none has rejected it or
revoked an earlier accept. A member that owns none of its inputs has no say: its ballot is ignored (and
listed as such, so an audit shows it was seen and why it did not count). An owner's latest ballot is the
one passed in: revoking is a ballot of its own, so an accept followed by a revoke is not an accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .documents import Dataset, Query

Ballot = Literal["accept", "reject", "revoke"]


@dataclass(frozen=True)
class Decision:
    approved: bool
    #: the members whose accept the query needs, sorted
    owners: tuple[str, ...]
    #: owners that have not accepted (no ballot yet)
    missing: tuple[str, ...]
    #: owners that rejected or revoked
    refusing: tuple[str, ...]
    #: members that voted but own none of the inputs: their ballots do not count
    ignored: tuple[str, ...]

    def reason(self) -> str:
        if self.approved:
            return f"approved by every owner of its inputs ({', '.join(self.owners)})"
        parts = []
        if self.refusing:
            parts.append(f"rejected or revoked by {', '.join(self.refusing)}")
        if self.missing:
            parts.append(f"not yet accepted by {', '.join(self.missing)}")
        return "not approved: " + "; ".join(parts)


def decide(query: Query, datasets: Mapping[str, Dataset], ballots: Mapping[str, Ballot]) -> Decision:
    """The decision over `query` given the datasets by name and each member's latest ballot.

    A query naming a dataset that does not exist is refused (BadRequest naming it): its owner is unknown, so
    no set of ballots could approve it.
    """
    owners = tuple(sorted({ds.owner for ds in query.datasets_by_view(datasets).values()}))
    missing = tuple(owner for owner in owners if owner not in ballots)
    refusing = tuple(owner for owner in owners if ballots.get(owner) in ("reject", "revoke"))
    ignored = tuple(sorted(member for member in ballots if member not in owners))
    unknown = [owner for owner in owners if owner in ballots and ballots[owner] not in ("accept", "reject", "revoke")]
    # an unrecognised ballot is not an accept: counting it as one would approve on a typo
    refusing = tuple(sorted({*refusing, *unknown}))
    approved = not missing and not refusing
    return Decision(approved, owners, missing, refusing, ignored)
