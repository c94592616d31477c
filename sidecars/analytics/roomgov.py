"""The analytics app's calls to the room's governance sidecar (design section 1): the contract's members,
accepted member documents, and the execution consent of the contract and of each document. The audit and
the contract's consent are `GovernanceClient`'s own."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..common.errors import CcrError, RemoteServiceError
from ..common.governance_client import ConsentStatus, GovernanceClient


class PrivacyBudgetExhausted(CcrError):
    code = "PrivacyBudgetExhausted"
    http_status = 409


class PrivacyBudgetUnacknowledged(CcrError):
    """CGS did not acknowledge a private run's spend: the run releases nothing."""

    code = "PrivacyBudgetUnacknowledged"
    http_status = 503


class AnalyticsGovernance(GovernanceClient):
    def members(self) -> Any:
        """`{"value": [{"memberId", "certificate", "status", "memberData"}]}` (checked by `auth.parse_members`)."""
        return self._call("GET", "/members").json()

    def member_document(self, document_id: str) -> dict[str, Any] | None:
        """The accepted document with this id (its `data`, `labels`, `finalVotes`), or None if CGS has none."""
        try:
            body = self._call("POST", f"/memberdocuments/{quote(document_id, safe='')}").json()
        except RemoteServiceError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(body, dict):
            raise RemoteServiceError("governance", f"document {document_id!r}: the answer is not a JSON object")
        return body

    def spend_privacy_budget(self, run_id: str, query_id: str) -> dict[str, Any]:
        """CGS's acknowledgement of the run's spend (`{acknowledged, runId, queryId, replayed, spends}`);
        PrivacyBudgetExhausted when a budget lacks room, PrivacyBudgetUnacknowledged for anything else."""
        response = self._request("POST", "/privacybudget/spend", json={"runId": run_id, "queryId": query_id})
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
            code, message = str(error.get("code", "")), str(error.get("message", ""))[:300]
            if response.status_code == 409 and code == "PrivacyBudgetExhausted":
                raise PrivacyBudgetExhausted(message)
            raise PrivacyBudgetUnacknowledged(f"CGS did not acknowledge the privacy budget spend "
                                              f"({response.status_code} {code}: {message}); nothing is released")
        if not (isinstance(body, dict) and body.get("acknowledged") is True and body.get("runId") == run_id
                and body.get("queryId") == query_id):
            raise PrivacyBudgetUnacknowledged("the privacy budget spend's answer is not CGS's acknowledgement of "
                                              "this run; nothing is released")
        return body

    def document_consent(self, document_id: str) -> ConsentStatus:
        body = self._call("POST", f"/memberdocuments/{quote(document_id, safe='')}/consentcheck/execution").json()
        return _consent(body)

    def contract_consent(self) -> ConsentStatus:
        return _consent(self._call("POST", "/consentcheck/execution").json())


def _consent(body: Any) -> ConsentStatus:
    """Anything but an explicit "enabled" is disabled: a malformed answer must not read as consent."""
    if not isinstance(body, dict):
        return ConsentStatus("disabled", "MalformedConsent", "governance answered no consent status")
    reason = body.get("reason") if isinstance(body.get("reason"), dict) else {}
    status = "enabled" if body.get("status") == "enabled" else "disabled"
    return ConsentStatus(status, str(reason.get("code", ""))[:100], str(reason.get("message", ""))[:300])
