"""Execution consent: refused without it (and audited), and a member's revocation while the room runs
reaches the launcher within the poll interval."""

from __future__ import annotations

import time

import httpx
import pytest

from sidecars.common.errors import PolicyDenied
from sidecars.common.governance_client import GovernanceClient

from .conftest import register_consortium, start_cgs


def test_no_consent_execution_refused_and_audited(consortium, governance):
    contract_id = consortium.new_contract(accept=False)
    alice = consortium["alice"]
    secret_id = alice.put_secret(contract_id, "db-config", "value")
    gov = GovernanceClient(governance(contract_id))

    status = gov.consent_check("execution")
    assert status.status == "disabled" and status.reason_code == "ContractNotAccepted"
    with pytest.raises(PolicyDenied, match="ContractNotAccepted|not been accepted"):
        gov.require_consent("execution")
    refused = httpx.post(f"{gov.base_url}/secrets/{secret_id}")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "ContractNotAccepted"

    consortium.accept(alice.propose_contract(contract_id))
    consortium.admit(contract_id)
    assert gov.consent_check("execution").enabled
    consortium["bob"].set_execution(contract_id, False)
    status = gov.consent_check("execution")
    assert status.status == "disabled" and status.reason_code == "ContractDisabled" and "bob" in status.reason_message
    refused = httpx.post(f"{gov.base_url}/secrets/{secret_id}")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ContractDisabled"

    events, _ = alice.events(contract_id)
    denied = [e for e in events if e["data"].get("event") == "execution-consent-denied"]
    # Before acceptance the contract has no clean-room policy (CGS takes one only for an accepted contract), so no
    # room can attest to its audit log yet: only the refusal after acceptance is on record.
    assert [d["data"]["reason"]["code"] for d in denied] == ["ContractDisabled"]
    assert {d["scope"] for d in denied} == {"governance"}


def test_revocation_while_running_notifies_within_the_poll_interval(consortium, governance, subscriber):
    poll = 0.5
    contract_id = consortium.new_contract()
    gov = GovernanceClient(governance(contract_id, poll=poll, subscriber_url=subscriber.url))
    gov.require_consent("execution")
    deadline = time.monotonic() + 10
    while httpx.get(f"{gov.base_url}/status").json()["executionConsent"] != "enabled":
        assert time.monotonic() < deadline, "the watcher never saw consent enabled"
        time.sleep(0.05)

    revoked_at = time.monotonic()
    consortium["bob"].set_execution(contract_id, False)
    assert subscriber.received.wait(poll + 2.0), "no stop notice"
    noticed_at, notice = subscriber.notices[0]
    assert noticed_at - revoked_at <= poll + 0.5
    assert notice["event"] == "execution-consent-revoked" and notice["contractId"] == contract_id
    assert notice["reason"]["code"] == "ContractDisabled"

    # The stop notice goes out first; its audit record follows.
    deadline = time.monotonic() + 5
    while not (audited := [e for e in consortium["alice"].events(contract_id)[0]
                           if e["data"].get("event") == "execution-consent-revoked"]):
        assert time.monotonic() < deadline, "the revocation was not audited"
        time.sleep(0.1)
    assert len(audited) == 1 and audited[0]["data"]["subscriberNotified"] is True


def test_consent_that_cannot_be_confirmed_counts_as_revoked(tmp_path, server_tls, platform_dir, local_ca,
                                                             governance, subscriber):
    private = start_cgs(tmp_path / "cgs", server_tls, platform_dir)
    try:
        contract_id = register_consortium(private, local_ca, tmp_path / "members", names=("alice",)).new_contract()
        gov = GovernanceClient(governance(contract_id, cgs_url=private.url, poll=0.3, unverifiable_after=1.0,
                                          subscriber_url=subscriber.url))
        gov.require_consent("execution")
        stopping_at = time.monotonic()
        private.proc.stop()  # CGS stops answering at once; the process may take a while to exit
        assert subscriber.received.wait(5), "no stop notice while CGS was unreachable"
        noticed_at, notice = subscriber.notices[0]
        assert 1.0 <= noticed_at - stopping_at <= 1.0 + 0.3 + 1.5
        assert notice["reason"]["code"] == "ConsentUnverifiable"
    finally:
        private.proc.stop()
