"""Members by identity through the pages (no root): northwind invites contoso by e-mail from its page; contoso's
workspace (`--entra`, no certificate anyone issued) signs in through the Entra stand-in's own sign-in form
(authorization code + PKCE), opens the invitation, accepts it; northwind admits it from its page, woodgrove
votes as for any member, and contoso activates and sees the collaboration. Each view passes the
accessibility checks; a wrong password is refused on the stand-in's page and leaves contoso signed out.

The stand-ins are `ccr emulators start`'s own (CGS verifies the ID token over HTTPS against the Entra
stand-in's keys). Only contoso's context accepts the local CA's certificate of the Entra stand-in's page
(Chromium knows no local CA); the workspaces are plain http on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from sidecars.common.memberauth import MemberIdentity
from sidecars.governance.member_client import CgsMemberClient
from tests.integration.governance.conftest import ROOM_HOST_DATA, register_consortium, unique
from tests.workspacepages.pages import REPO, PartyPage, party_page, start_workspace

pytestmark = pytest.mark.slow

EMAIL, PASSWORD = "ana@contoso.example", "wsui-correct-horse"


@dataclass
class Invitation:
    contract: str
    endpoints: dict
    members: object
    northwind: PartyPage
    contoso: PartyPage


def ccr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "sidecars", *args], cwd=REPO, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def invitation(browser, screenshots, tmp_path_factory) -> Iterator[Invitation]:
    run = tmp_path_factory.mktemp("wsui-emulators")
    ccr("emulators", "start", "--run-dir", str(run))
    started = []
    try:
        endpoints = json.loads((run / "endpoints.json").read_text())
        (run / "entra" / "users.json").write_text(json.dumps([{"email": EMAIL, "password": PASSWORD, "name": "Ana"}]))
        operator = MemberIdentity.load(endpoints["cgs_operator_dir"])
        cgs = SimpleNamespace(url=endpoints["cgs_endpoint"], operator=operator)
        members = register_consortium(cgs, SimpleNamespace(cert_file=endpoints["ca_bundle"]),
                                      tmp_path_factory.mktemp("wsui-members"), ("northwind", "woodgrove"))
        contract = unique("wsui-invite")
        members["northwind"].put_contract(contract, {"purpose": "a third party joins"})
        members.accept(members["northwind"].propose_contract(contract))
        members.accept(members["northwind"].propose_policy(contract, {
            "x-ms-sevsnpvm-hostdata": [ROOM_HOST_DATA.hex()], "x-ms-sevsnpvm-is-debuggable": False}))
        logs = tmp_path_factory.mktemp("wsui-workspaces")
        started.append(start_workspace("northwind", logs, "--identity", str(members["northwind"].identity.directory),
                                       "--endpoints", str(run / "endpoints.json")))
        started.append(start_workspace("contoso", logs, "--entra", "--key-dir", str(run / "contoso-key"),
                                       "--endpoints", str(run / "endpoints.json")))
        northwind = party_page(browser, started[0], screenshots)
        contoso = party_page(browser, started[1], screenshots, ignore_https_errors=True)
        yield Invitation(contract, endpoints, members, northwind, contoso)
        for party in (northwind, contoso):
            assert not party.console_errors, f"{party.name}'s page threw: {party.console_errors}"
            party.context.close()
    finally:
        for workspace in started:
            workspace.stop()
        ccr("emulators", "stop", "--run-dir", str(run))


def test_northwind_invites_contoso_by_email_from_its_page(invitation):
    page = invitation.northwind.view("collaborations")
    page.get_by_label("Collaboration", exact=True).select_option(invitation.contract)
    invitation.northwind.wait_ready("collaborations")
    issuer = f"{invitation.endpoints['entra_endpoint']}/{invitation.endpoints['entra_tenant_id']}/v2.0"
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Member name").fill("contoso")
    page.get_by_label("Identity provider (issuer)").fill(issuer)
    page.get_by_label("Client id at that provider").fill("ccr-workspace")
    page.get_by_role("button", name="Send invitation").click()
    page.locator(f"tr:has-text('{EMAIL}'), .field-error:not([hidden]), .form-error:not([hidden])").first.wait_for()
    assert not page.locator(".field-error:not([hidden]), .form-error:not([hidden])").count(), \
        page.locator(".field-error:not([hidden]), .form-error:not([hidden])").all_inner_texts()
    row = page.get_by_role("row").filter(has_text=EMAIL)
    assert "Open" in row.inner_text()


def invitation_id(invitation: Invitation) -> str:
    row = invitation.northwind.page.get_by_role("row").filter(has_text=EMAIL)
    return row.get_by_role("cell").last.inner_text().strip()


def test_a_wrong_password_leaves_contoso_signed_out(invitation):
    page = invitation.contoso.view("collaborations")
    page.get_by_role("link", name="Sign in with your organisation's account").click()
    page.get_by_label("E-mail").fill(EMAIL)
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    assert "do not match" in page.get_by_role("alert").inner_text()
    page = invitation.contoso.view("collaborations")
    assert "Not signed in" in page.locator("#who").inner_text()


def test_contoso_signs_in_opens_and_accepts_the_invitation(invitation):
    identifier = invitation_id(invitation)
    page = invitation.contoso.view("collaborations")
    page.get_by_role("link", name="Sign in with your organisation's account").click()
    page.get_by_label("E-mail").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{invitation.contoso.workspace.url}/**")
    invitation.contoso.wait_ready("collaborations")
    assert EMAIL in page.locator("#who").inner_text()
    page.get_by_label("Invitation link or id").fill(f"{invitation.contoso.workspace.url}/#invitation={identifier}")
    page.get_by_role("button", name="Open invitation").click()
    page.get_by_role("table", name="The invitation").wait_for()
    invitation.contoso.check_and_photograph("invitation")
    page.get_by_role("button", name=f"Accept invitation to {invitation.contract}").click()
    page.get_by_role("table", name="The invitation").get_by_text("Accepted", exact=True).wait_for()
    assert "admit you" in page.get_by_role("status").inner_text()


def test_northwind_admits_contoso_and_contoso_activates(invitation):
    page = invitation.northwind.view("collaborations")
    row = page.get_by_role("row").filter(has_text=EMAIL)
    assert "Accepted" in row.inner_text()
    page.get_by_role("button", name=f"Admit contoso to {invitation.contract}").click()
    page.wait_for_function("() => document.getElementById('status').textContent.includes('admission proposed')")
    # the other members vote as for any new member (woodgrove's own client, as a script would)
    woodgrove: CgsMemberClient = invitation.members["woodgrove"]
    for proposal in woodgrove.proposals():
        if proposal.get("proposalState") == "Open":
            woodgrove.vote(proposal["proposalId"], True)
    page = invitation.contoso.view("collaborations")
    page.get_by_role("button", name="Activate my membership").click()
    page.get_by_label("Collaboration", exact=True).locator(f"option[value='{invitation.contract}']").wait_for(
        state="attached")
    page.get_by_label("Collaboration", exact=True).select_option(invitation.contract)
    invitation.contoso.wait_ready("collaborations")
    members = page.get_by_role("table", name=f"Members of {invitation.contract}")
    members.wait_for()
    assert members.get_by_role("cell", name="contoso (you)", exact=True).count() == 1, members.inner_text()
    assert members.get_by_role("cell", name=EMAIL).count() == 1
    assert "Acting as contoso (ana@contoso.example)" in page.locator("#who").inner_text()
    invitation.contoso.check_and_photograph("member-by-identity")
