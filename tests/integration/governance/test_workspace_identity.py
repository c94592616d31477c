"""Members by identity, through two workspaces and the real CGS and Entra stand-ins: northwind (a member
certificate) invites bo@woodgrove.example; bo's workspace signs in (authorization code + PKCE) and accepts,
which binds its key to bo's identity; northwind admits it, the consortium votes, and CGS then accepts
woodgrove's requests signed with that key. Each way to cheat the binding is tried and refused: another
person's token, a token for another key, a forged token, an accepted invitation accepted again, a
set_member claiming an identity nobody bound, a cross-site write to a workspace."""

from __future__ import annotations

import ssl
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.common.memberauth import MemberIdentity
from sidecars.governance.member_client import CgsRequestFailed, accept_by_all, join

from .conftest import unique
from .workspaces import PEOPLE, member_client, sign_in, start_entra, start_identity_cgs, workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services(tmp_path_factory, server_tls, platform_dir, local_ca):
    run_dir = tmp_path_factory.mktemp("wsid-identity")
    cgs = start_identity_cgs(run_dir, server_tls, platform_dir, local_ca.cert_file)
    entra_proc, entra_url = start_entra(run_dir, server_tls)
    operator = member_client(cgs.url, local_ca.cert_file, cgs.operator)
    northwind = member_client(cgs.url, local_ca.cert_file, MemberIdentity.create(run_dir / "northwind", "northwind"))
    # contoso: a member in no collaboration here, whose vote the constitution still needs to admit anyone
    contoso = member_client(cgs.url, local_ca.cert_file, MemberIdentity.create(run_dir / "contoso", "contoso"))
    join(operator, [northwind, contoso])
    yield {"cgs": cgs, "entra": entra_url, "operator": operator, "northwind": northwind, "contoso": contoso,
           "dir": run_dir}
    for client in (operator, northwind, contoso):
        client.close()
    entra_proc.stop()
    cgs.proc.stop()


def collaboration(services, invitee: str = "woodgrove") -> str:
    contract_id = unique("wsid-collab")
    northwind = services["northwind"]
    northwind.put_contract(contract_id, {"contract": {"members": ["northwind", invitee]}})
    accept_by_all([northwind, services["operator"], services["contoso"]], northwind.propose_contract(contract_id))
    return contract_id


def test_an_invited_identity_signs_in_accepts_is_admitted_and_acts_with_its_bound_key(services, local_ca, tmp_path):
    ca = local_ca.cert_file
    cgs_url = services["cgs"].url
    name = unique("woodgrove").replace("-", "")
    contract_id = collaboration(services, name)
    northwind = workspace(cgs_url, ca, services["northwind"].identity.directory, entra_url=None)
    invitation = northwind.ok("POST", f"/api/collaborations/{contract_id}/invitations", {
        "email": "Bo@Woodgrove.example", "name": name,
        "issuer": f"{services['entra']}/c0de0000-0000-4000-8000-00000000e002/v2.0", "clientId": "ccr-workspace"},
        status=201)
    assert invitation["state"] == "Open" and invitation["email"] == "bo@woodgrove.example"
    listed = northwind.ok("GET", "/api/invitations")["value"]
    assert invitation["invitationId"] in {i["invitationId"] for i in listed}

    woodgrove = workspace(cgs_url, ca, tmp_path / "woodgrove-key", entra_url=services["entra"])
    me = woodgrove.ok("GET", "/api/me")
    assert me["mode"] == "entra" and not me["signedIn"] and me["name"] is None
    refused = woodgrove.post(f"/api/invitations/{invitation['invitationId']}/accept")
    assert refused.status_code == 401 and refused.json()["errors"][0]["message"].startswith("sign in first")

    back = sign_in(woodgrove, ca, "bo@woodgrove.example", PEOPLE["bo@woodgrove.example"])
    assert back.status_code == 302 and back.headers["location"] == "/"
    me = woodgrove.ok("GET", "/api/me")
    assert me["signedIn"] and me["identity"]["email"] == "bo@woodgrove.example"
    # before admission the key is nobody's: CGS's TLS listener does not even take it as a member's
    assert woodgrove.ok("GET", "/api/collaborations")["value"] == []

    accepted = woodgrove.ok("POST", f"/api/invitations/{invitation['invitationId']}/accept")
    assert accepted["state"] == "Accepted" and accepted["memberId"] == woodgrove.party.identity.member_id
    assert accepted["identity"]["email"] == "bo@woodgrove.example" and accepted["identity"]["oid"]
    again = woodgrove.post(f"/api/invitations/{invitation['invitationId']}/accept")
    assert again.status_code == 409

    proposal = northwind.ok("POST", f"/api/invitations/{invitation['invitationId']}/admit")
    # the consortium decides by its constitution, as for any member: contoso's vote is needed too, and its admit
    # votes on the same proposal rather than making a second one
    assert proposal["proposalState"] == "Open"
    assert woodgrove.post("/api/activate").status_code == 409  # not admitted yet
    contoso = workspace(cgs_url, ca, services["contoso"].identity.directory)
    again = contoso.ok("POST", f"/api/invitations/{invitation['invitationId']}/admit")
    assert again == {"proposalId": proposal["proposalId"], "proposalState": "Accepted"}
    assert northwind.post(f"/api/invitations/{invitation['invitationId']}/admit").status_code == 409
    assert woodgrove.ok("POST", "/api/activate")["status"] == "Active"

    me = woodgrove.ok("GET", "/api/me")
    assert me["name"] == invitation["name"]
    assert [c["id"] for c in woodgrove.ok("GET", "/api/collaborations")["value"]] == [contract_id]
    members = {m["name"]: m for m in northwind.ok("GET", f"/api/collaborations/{contract_id}/members")["value"]}
    assert members[invitation["name"]]["identity"]["email"] == "bo@woodgrove.example"
    # CGS accepts woodgrove's requests signed with the bound key: a governance write (COSE) and mutual TLS
    woodgrove.ok("POST", f"/api/collaborations/{contract_id}/consent", {"enabled": True})
    events = northwind.ok("GET", f"/api/collaborations/{contract_id}/auditevents?kind=accept_invitation")
    assert events["chain"]["verified"] and [e["party"] for e in events["value"]] == [invitation["name"]]


def _invite(services, local_ca, email: str) -> dict:
    contract_id = collaboration(services)
    northwind = workspace(services["cgs"].url, local_ca.cert_file, services["northwind"].identity.directory)
    return northwind.ok("POST", f"/api/collaborations/{contract_id}/invitations", {
        "email": email, "name": unique("invitee").replace("-", ""),
        "issuer": f"{services['entra']}/c0de0000-0000-4000-8000-00000000e002/v2.0", "clientId": "ccr-workspace"},
        status=201)


def _accept(services, local_ca, invitation_id: str, body: dict) -> httpx.Response:
    with httpx.Client(verify=ssl.create_default_context(cafile=local_ca.cert_file)) as http:
        return http.post(f"{services['cgs'].url}/app/invitations/{invitation_id}:accept", json=body)


def test_another_persons_token_does_not_accept_an_invitation(services, local_ca, tmp_path):
    invitation = _invite(services, local_ca, "bo@woodgrove.example")
    mallory = workspace(services["cgs"].url, local_ca.cert_file, tmp_path / "mallory", entra_url=services["entra"])
    sign_in(mallory, local_ca.cert_file, "mallory@evil.example", PEOPLE["mallory@evil.example"])
    answer = mallory.post(f"/api/invitations/{invitation['invitationId']}/accept")
    assert answer.status_code == 403 and "not the one invited" in answer.json()["errors"][0]["message"]
    assert mallory.ok("GET", f"/api/invitations/{invitation['invitationId']}")["state"] == "Open"


def test_a_token_binds_only_the_key_it_was_issued_for(services, local_ca, tmp_path):
    invitation = _invite(services, local_ca, "bo@woodgrove.example")
    bo = workspace(services["cgs"].url, local_ca.cert_file, tmp_path / "bo", entra_url=services["entra"])
    sign_in(bo, local_ca.cert_file, "bo@woodgrove.example", PEOPLE["bo@woodgrove.example"])
    stolen = bo.party.bound_identity()["idToken"]
    thief = MemberIdentity.create(tmp_path / "thief", "thief")
    answer = _accept(services, local_ca, invitation["invitationId"], {"idToken": stolen, "certificate": thief.cert_pem})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "KeyNotBound"


def test_a_forged_or_expired_token_is_refused(services, local_ca, tmp_path):
    invitation = _invite(services, local_ca, "bo@woodgrove.example")
    bo = workspace(services["cgs"].url, local_ca.cert_file, tmp_path / "bo", entra_url=services["entra"])
    sign_in(bo, local_ca.cert_file, "bo@woodgrove.example", PEOPLE["bo@woodgrove.example"])
    genuine = bo.party.bound_identity()["idToken"]
    claims = jwt.decode(genuine, options={"verify_signature": False})
    header = jwt.get_unverified_header(genuine)
    forged = jwt.encode(claims, rsa.generate_private_key(65537, 2048), algorithm="RS256", headers=header)
    expired = {**claims, "exp": int(time.time()) - 3600}
    for token in (forged, jwt.encode(expired, rsa.generate_private_key(65537, 2048), algorithm="RS256",
                                     headers=header), genuine.rsplit(".", 1)[0] + ".", "not a jwt"):
        answer = _accept(services, local_ca, invitation["invitationId"],
                         {"idToken": token, "certificate": bo.party.identity.cert_pem})
        assert answer.status_code == 401, answer.text
    assert bo.ok("GET", f"/api/invitations/{invitation['invitationId']}")["state"] == "Open"


def test_set_member_cannot_claim_an_identity_no_invitation_bound(services, local_ca, tmp_path):
    impostor = MemberIdentity.create(tmp_path / "impostor", "impostor")
    with pytest.raises(CgsRequestFailed) as refused:
        services["northwind"].propose({"name": "set_member", "args": {"cert": impostor.cert_pem, "member_data": {
            "identifier": "impostor", "identity": {"email": "ceo@northwind.example", "oid": "x", "tid": "y",
                                                   "issuer": "https://login.microsoftonline.com/y/v2.0"}}}})
    assert refused.value.code == "ProposalFailedToValidate"


def test_hostile_invitations_are_refused_one_line_per_field(services, local_ca):
    contract_id = collaboration(services)
    northwind = workspace(services["cgs"].url, local_ca.cert_file, services["northwind"].identity.directory)
    for body, field in (({"email": "not-an-email", "name": "x"}, "email"),
                        ({"email": "a@b.example", "name": "../etc"}, "name"),
                        ({"email": "a@b.example", "name": "x", "issuer": "http://plain.example"}, "issuer"),
                        ({"email": "a@b.example", "name": "x", "extra": 1}, "extra"),
                        ({"email": "a@b.example", "name": "x"}, "issuer")):
        answer = northwind.post(f"/api/collaborations/{contract_id}/invitations", json=body)
        assert answer.status_code == 400, answer.text
        problems = answer.json()["errors"]
        assert problems and problems[0]["field"] == field and "\n" not in problems[0]["message"]
    # a collaboration the party is not in, and ids that are not plain names
    assert northwind.post("/api/collaborations/nope/invitations", json={"email": "a@b.example",
                                                                         "name": "x"}).status_code == 404
    assert northwind.get("/api/invitations/..%2F..%2Fapp%2Fcontracts").status_code == 404
    # a page of another site cannot make the workspace act for the party
    answer = northwind.post(f"/api/collaborations/{contract_id}/consent", json={"enabled": False},
                            headers={"origin": "https://evil.example"})
    assert answer.status_code == 403
    answer = northwind.http.get("/api/me", headers={"host": "evil.example:8765"})
    assert answer.status_code == 421
