"""The governed deployment against a private CGS stand-in: the contract's members accept an ARM template,
anyone verifies a template against it, and what is not accepted (another template, a rejected or open
proposal, a member outside the contract) is refused."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from sidecars.cli import main as ccr
from sidecars.common.deploymentspec import template_sha256
from sidecars.common.memberauth import MemberIdentity
from sidecars.governance.deployment import DeploymentNotAccepted, accepted_deployment, verify_deployment
from sidecars.governance.member_client import CgsMemberClient, CgsRequestFailed
from sidecars.renderings.arm import arm_template
from sidecars.renderings.render import render
from sidecars.room.group import canonical_spec_json, render_group
from sidecars.spec import load_spec

from .conftest import layer_lock, register_consortium, start_cgs

EXAMPLE_SPEC = Path(__file__).resolve().parents[3] / "examples" / "cleanroomhello-api" / "spec.yaml"
CONTRACT = "collab-hello-api"  # the example's contract id; its members are publisher and consumer


def _variables(cgs_url: str) -> dict[str, str]:
    return {"cgs_endpoint": cgs_url, "maa_endpoint": "https://maa.invalid", "storage_url": "https://storage.invalid",
            "keyvault_url": "https://vault.invalid"}


@pytest.fixture
def deployment(tmp_path, server_tls, platform_dir, local_ca):
    """A private CGS (its membership differs from the session's) with publisher, consumer and an outsider
    registered, the example's contract accepted by all three, and the example's rendered template."""
    cgs = start_cgs(tmp_path / "cgs", server_tls, platform_dir)
    members = None
    try:
        members = register_consortium(cgs, local_ca, tmp_path / "members", names=("publisher", "consumer", "outsider"))
        spec = load_spec(EXAMPLE_SPEC, variables=_variables(cgs.url))
        rendering = render(spec, layer_lock(render_group(spec)))
        template = json.loads(json.dumps(arm_template(rendering.group, rendering.policy)))
        yield cgs, members, template, local_ca, tmp_path
    finally:
        _close(members)
        cgs.proc.stop()


def _close(members) -> None:
    """Member clients keep connections open, which a stopping stand-in waits for."""
    for client in (members.clients.values() if members else ()):
        client.close()


def _accept_contract(members, spec_data: dict) -> None:
    members["publisher"].put_contract(CONTRACT, spec_data)
    members.accept(members["publisher"].propose_contract(CONTRACT))


def _altered(template: dict) -> dict:
    """The template with one environment variable of one sidecar changed."""
    altered = copy.deepcopy(template)
    env = altered["resources"][0]["properties"]["containers"][0]["properties"]["environmentVariables"]
    env.append({"name": "CCR_DEBUG", "value": "1"})
    return altered


def test_the_contract_members_accept_a_template_and_anyone_verifies_it(deployment):
    cgs, members, template, local_ca, _ = deployment
    publisher, consumer, outsider = members["publisher"], members["consumer"], members["outsider"]
    ca = str(local_ca.cert_file)

    _accept_contract(members, {"contract": {"id": CONTRACT, "members": ["publisher", "consumer"]}})
    with pytest.raises(DeploymentNotAccepted, match="has no accepted deployment spec$"):
        accepted_deployment(cgs.url, CONTRACT, ca_bundle=ca)

    # attack: a registered member outside the contract proposes, or votes on, the contract's deployment
    with pytest.raises(CgsRequestFailed, match="403 NotContractMember.*not a member of contract"):
        outsider.propose_deployment_spec(CONTRACT, template)
    proposal = publisher.propose_deployment_spec(CONTRACT, template)
    with pytest.raises(CgsRequestFailed, match="403 NotContractMember"):
        outsider.vote(proposal["proposalId"], True)
    # open is not accepted
    with pytest.raises(DeploymentNotAccepted, match=f"1 proposal\\(s\\) open: {proposal['proposalId']}"):
        verify_deployment(cgs.url, CONTRACT, template, ca_bundle=ca)

    publisher.vote(proposal["proposalId"], True)
    assert consumer.vote(proposal["proposalId"], True)["proposalState"] == "Accepted"  # without the outsider's vote

    reordered = json.loads(json.dumps(template, sort_keys=True))  # same canonical JSON, other key order
    accepted = verify_deployment(cgs.url, CONTRACT, reordered, ca_bundle=ca)
    assert accepted.proposal_id == proposal["proposalId"] and accepted.sha256 == template_sha256(template)
    with pytest.raises(DeploymentNotAccepted) as refused:
        verify_deployment(cgs.url, CONTRACT, _altered(template), ca_bundle=ca)
    assert "\n" not in str(refused.value)
    assert f"sha256 {template_sha256(template)}" in str(refused.value)
    assert "first difference at $.resources[0].properties.containers[0].properties.environmentVariables" \
        in str(refused.value)

    events, _ = publisher.events(CONTRACT)
    audited = [e["data"] for e in events if e["data"].get("action") == "deployment_spec_accepted"]
    assert audited == [{"action": "deployment_spec_accepted", "member": "consumer",
                        "proposalId": proposal["proposalId"], "templateSha256": template_sha256(template)}]

    _close(members)
    cgs.restart()  # durable: the accepted template survives the stand-in's restart
    assert verify_deployment(cgs.url, CONTRACT, template, ca_bundle=ca).proposal_id == proposal["proposalId"]


def test_a_rejected_template_is_never_the_accepted_one(deployment):
    cgs, members, template, local_ca, _ = deployment
    ca = str(local_ca.cert_file)
    _accept_contract(members, {"contract": {"id": CONTRACT, "members": ["publisher", "consumer"]}})
    with pytest.raises(CgsRequestFailed, match="400 ProposalFailedToValidate.*proposed alone"):
        members["publisher"].propose({"name": "set_deployment_spec",
                                      "args": {"contractId": CONTRACT, "spec": {"data": template}}},
                                     {"name": "enable_ca", "args": {"contractId": CONTRACT}})

    rejected = members["publisher"].propose_deployment_spec(CONTRACT, _altered(template))
    members["publisher"].vote(rejected["proposalId"], True)
    assert members["consumer"].vote(rejected["proposalId"], False)["proposalState"] == "Rejected"
    with pytest.raises(DeploymentNotAccepted, match="has no accepted deployment spec$"):
        verify_deployment(cgs.url, CONTRACT, _altered(template), ca_bundle=ca)

    proposal = members["publisher"].propose_deployment_spec(CONTRACT, template)
    members["publisher"].vote(proposal["proposalId"], True)
    assert members["consumer"].vote(proposal["proposalId"], True)["proposalState"] == "Accepted"
    with pytest.raises(DeploymentNotAccepted, match="is not the deployment the members"):
        verify_deployment(cgs.url, CONTRACT, _altered(template), ca_bundle=ca)


def test_a_deployment_needs_an_accepted_contract_and_every_named_member(deployment):
    cgs, members, template, local_ca, tmp_path = deployment
    members["publisher"].put_contract(CONTRACT, {"contract": {"id": CONTRACT, "members": ["publisher", "auditor"]}})
    with pytest.raises(CgsRequestFailed, match="400 ProposalFailedToValidate.*once contract .* has been accepted"):
        members["publisher"].propose_deployment_spec(CONTRACT, template)
    members.accept(members["publisher"].propose_contract(CONTRACT))
    # "auditor" is named by the contract but not registered: the publisher alone cannot accept
    proposal = members["publisher"].propose_deployment_spec(CONTRACT, template)
    assert members["publisher"].vote(proposal["proposalId"], True)["proposalState"] == "Open"
    with pytest.raises(DeploymentNotAccepted, match="proposal\\(s\\) open"):
        accepted_deployment(cgs.url, CONTRACT, ca_bundle=str(local_ca.cert_file))
    # an identity CGS does not know at all is refused before anything it sent is read
    stranger = MemberIdentity.create(tmp_path / "stranger", "stranger")
    with CgsMemberClient(cgs.url, stranger, ca_bundle=str(local_ca.cert_file)) as client, \
            pytest.raises(CgsRequestFailed, match="401"):
        client.propose_deployment_spec(CONTRACT, template)


def test_propose_show_and_verify_from_the_command_line(deployment, capsys):
    cgs, members, template, local_ca, tmp_path = deployment
    spec = load_spec(EXAMPLE_SPEC, variables=_variables(cgs.url))
    _accept_contract(members, json.loads(canonical_spec_json(spec)))
    (tmp_path / "t.json").write_text(json.dumps(template, indent=4))
    (tmp_path / "altered.json").write_text(json.dumps(_altered(template)))
    connection = ["--cgs", cgs.url, "--ca-bundle", str(local_ca.cert_file)]

    def run(*args: str, member: str | None = "publisher") -> tuple[int, str, str]:
        identity = ["--identity", str(tmp_path / "members" / member)] if member else []
        code = ccr(["governance", "deployment", *args, *connection, *identity])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = run("propose", str(tmp_path / "t.json"))  # the contract id comes from the template's CCR_SPEC
    assert code == 0, err
    proposals = re.findall(r"proposal (\w+) \((set_deployment_spec|set_clean_room_policy)\): Open", out)
    assert [name for _, name in proposals] == ["set_deployment_spec", "set_clean_room_policy"]
    members["consumer"].vote(proposals[0][0], True)  # the deployment: the contract's members decide
    for voter in ("consumer", "outsider"):  # the clean room policy: the whole consortium, as before
        members[voter].vote(proposals[1][0], True)
    host_data = re.search(r"HOST_DATA (\w{64})", out).group(1)
    assert members["publisher"].policy(CONTRACT)["x-ms-sevsnpvm-hostdata"] == [host_data]

    code, out, err = run("show", CONTRACT, member=None)
    assert code == 0, err
    assert f"template sha256 {template_sha256(template)}" in out and f"proposal {proposals[0][0]}" in out
    assert run("show", CONTRACT, "--verify", str(tmp_path / "t.json"), member=None)[0] == 0
    code, out, err = run("show", CONTRACT, "--verify", str(tmp_path / "altered.json"), member=None)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "is not the deployment the members" in err
    # from the spec: rendered as `ccr spec render arm` renders it, so the same template (and hash)
    (tmp_path / "layers.json").write_text(layer_lock(render_group(spec)).dump())
    variables = [a for k, v in _variables(cgs.url).items() for a in ("--var", f"{k}={v}")]
    code, out, err = run("propose", str(EXAMPLE_SPEC), "--layers", str(tmp_path / "layers.json"), *variables,
                         "--no-policy", "--no-vote")
    assert code == 0, err
    assert f"{EXAMPLE_SPEC} (rendered): template sha256 {template_sha256(template)}" in out
    assert re.search(r"proposal \w+ \(set_deployment_spec\): Open, 0 vote", out)
    (tmp_path / "junk.json").write_text("[1, 2")
    code, _, err = run("show", CONTRACT, "--verify", str(tmp_path / "junk.json"), member=None)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "is not JSON" in err


def test_setup_accepts_a_deployment_once(tmp_path, server_tls, platform_dir, local_ca, capsys):
    """`ccr governance setup SPEC --deployment TEMPLATE`: a local room's members accept its template (what
    `ccr aci run` then checks); re-running it proposes nothing."""
    cgs = start_cgs(tmp_path / "cgs", server_tls, platform_dir)
    try:
        spec = load_spec(EXAMPLE_SPEC, variables=_variables(cgs.url))
        (tmp_path / "layers.json").write_text(layer_lock(render_group(spec)).dump())
        rendering = render(spec, layer_lock(render_group(spec)))
        (tmp_path / "t.json").write_text(json.dumps(arm_template(rendering.group, rendering.policy)))
        endpoints = tmp_path / "endpoints.json"
        endpoints.write_text(json.dumps({**_variables(cgs.url), "ca_bundle": str(local_ca.cert_file),
                                         "cgs_operator_dir": str(cgs.state_dir / "operator"),
                                         "entra_credentials_file": str(tmp_path / "federated.json")}))
        setup = ["governance", "setup", str(EXAMPLE_SPEC), "--endpoints", str(endpoints), "--members-dir",
                 str(tmp_path / "members"), "--layers", str(tmp_path / "layers.json"),
                 "--deployment", str(tmp_path / "t.json")]
        assert ccr(setup) == 0
        out = capsys.readouterr().out
        assert "set_deployment_spec: Accepted" in out
        accepted = verify_deployment(cgs.url, CONTRACT, json.loads((tmp_path / "t.json").read_text()),
                                     ca_bundle=str(local_ca.cert_file))
        assert f"deployment: {tmp_path / 't.json'} (sha256 {accepted.sha256}, HOST_DATA {rendering.host_data})" in out
        assert ccr(setup) == 0
        assert "Accepted" not in capsys.readouterr().out
    finally:
        cgs.proc.stop()
