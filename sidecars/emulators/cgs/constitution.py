"""The stand-in's constitution: when a proposal is accepted, rejected or stays open.

The rules are those of azure-cleanroom's CGS constitution (`ccf-app/js/constitution/resolve.js`, with CCF's
operator rules from `ccf-provider-common/constitution/operator_resolve.js`), written out in Python because the
stand-in runs no JavaScript. A real CCF runs whatever constitution its members voted in; this one is fixed.

- An operator (member_data `isOperator`) proposing only operator changes (adding or removing an operator) is
  accepted at once.
- A proposal with an action any member may veto (a contract, a clean-room policy, a deployment spec, enabling
  logging or telemetry, a member document) is rejected by one vote against.
- A proposal that only disables logging or telemetry is accepted at once: switching an export off never needs
  consent.
- Otherwise every active member that is not an operator must vote for it; a contract also waits for members
  that were accepted but have not yet acknowledged (become active).
- The stand-in's additions: a deployment spec is decided by the contract's own members; an analytics
  document (a member document labelled `kind: dataset|query`) by the owners of the data it describes or reads
  (see `store`). Only their ballots count, for and against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

VETO_ACTIONS = frozenset({"set_contract", "set_clean_room_policy", "set_deployment_spec", "set_deployment_info",
                          "set_contract_runtime_options_enable_logging",
                          "set_contract_runtime_options_enable_telemetry", "set_member_document"})
AUTO_ACCEPT_ACTIONS = frozenset({"set_contract_runtime_options_disable_telemetry",
                                 "set_contract_runtime_options_disable_logging"})
NEEDS_ACCEPTED_MEMBERS = frozenset({"set_contract"})

Member = dict[str, Any]


def is_operator(member: Member | None) -> bool:
    """Operators of any kind run the service; their votes never count towards a member decision."""
    data = (member or {}).get("member_data") or {}
    roles = data.get("cgsRoles") or {}
    return bool(data.get("isOperator") or data.get("isRecoveryOperator")
                or roles.get("cgsOperator") == "true" or roles.get("contractOperator") == "true")


def _operator_can_pass(action: dict[str, Any], members: dict[str, Member], member_id_of_cert:
                       Callable[[str], str | None]) -> bool:
    """CCF operator_resolve's `canOperatorPass`, for the actions the stand-in knows: operators add or retire
    operators."""
    args = action.get("args") or {}
    if action["name"] == "set_member":
        return bool((args.get("member_data") or {}).get("isOperator"))
    if action["name"] == "remove_member":
        member_id = member_id_of_cert(str(args.get("cert", "")))
        return member_id is not None and bool(((members.get(member_id) or {}).get("member_data") or {})
                                              .get("isOperator"))
    return False


def resolve(proposal: dict[str, Any], members: dict[str, Member], *, already_claimed: Callable[[str, str], bool],
            member_id_of_cert: Callable[[str], str | None],
            deciders: Iterable[str] | None = None) -> str:
    """The proposal's state after its latest ballot: Accepted, Rejected or Open.

    `already_claimed(kind, id)` says whether a contract or document id is accepted already or named by another
    open proposal. `deciders`, when given, are the only members whose votes decide (a deployment spec, an
    analytics document): anyone else's ballot is kept on the proposal but neither accepts nor vetoes."""
    actions, votes = proposal["actions"], proposal["ballots"]
    if deciders is not None:
        needed = set(deciders)
        votes = {member: vote for member, vote in votes.items() if member in needed}
    proposer = members.get(proposal["proposerId"])
    if all(_operator_can_pass(a, members, member_id_of_cert) for a in actions) \
            and bool(((proposer or {}).get("member_data") or {}).get("isOperator")):
        return "Accepted"
    if any(a["name"] in VETO_ACTIONS for a in actions) and not all(votes.values()):
        return "Rejected"
    contracts = [a["args"].get("contractId") for a in actions if a["name"] == "set_contract"]
    if contracts:
        if len(contracts) != len(actions) or len(set(contracts)) < len(contracts):
            return "Rejected"  # a set_contract is proposed alone, one per contract
        if any(already_claimed("contract", c) for c in contracts):
            return "Rejected"
    documents = [a["args"].get("documentId") for a in actions if a["name"] == "set_member_document"]
    if any(already_claimed("document", d) for d in documents):
        return "Rejected"
    if all(a["name"] in AUTO_ACCEPT_ACTIONS for a in actions):
        return "Accepted"
    if deciders is not None:
        return "Accepted" if needed and all(votes.get(m) for m in needed) else "Open"
    counted = [m for m, member in members.items() if not is_operator(member)]
    active = {m for m in counted if members[m].get("status", "Active") == "Active"}
    accepted = {m for m in counted if members[m].get("status", "Active") == "Accepted"}
    in_favour = sum(1 for m, vote in votes.items() if vote and m in members and not is_operator(members[m]))
    if in_favour != len(active):
        return "Open"
    if accepted and any(a["name"] in NEEDS_ACCEPTED_MEMBERS for a in actions):
        return "Open"  # members who joined but have not acknowledged yet must become active and vote too
    return "Accepted"
