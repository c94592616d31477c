"""The handlers of `ccr governance ...` (registered in cli.py)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cliargs import load_spec_from_args, read_endpoints, spec_variables
from ..common.containers import DEFAULT_REGISTRY
from ..common.deploymentspec import template_sha256
from ..common.errors import ConfigError
from ..common.memberauth import MemberIdentity
from ..renderings.arm import arm_template
from ..renderings.render import default_images, render
from ..room.group import canonical_spec_json
from ..spec import load_spec
from . import deployment
from .events import check_and_render
from .member_client import CgsMemberClient, CgsRequestFailed, accept_by_all, join
from .memberargs import member_client as _client


def _print_proposal(proposal: dict[str, Any], what: str = "") -> None:
    """One line: the proposal's id, what it proposes, its state and votes (CCF's proposal view)."""
    votes = proposal.get("finalVotes") or {}
    against = sum(1 for vote in votes.values() if not vote)
    print(f"proposal {proposal['proposalId']}{f' ({what})' if what else ''}: {proposal['proposalState']}, "
          f"{proposal['ballotCount']} vote(s)" + (f", {against} against" if against else ""))


def _propose(args: argparse.Namespace, client: CgsMemberClient, proposal: dict[str, Any]) -> dict[str, Any]:
    """The proposer's own vote for it (unless --no-vote), while it is still open; prints and returns it."""
    what = ", ".join(a["name"] for a in client.proposal_actions(proposal["proposalId"]))
    if not args.no_vote and proposal["proposalState"] == "Open":
        proposal = client.vote(proposal["proposalId"], True)
    _print_proposal(proposal, what)
    return proposal


def _show(args: argparse.Namespace, read: Callable[[CgsMemberClient], Any]) -> int:
    """Print what `read` gets from CGS, as JSON."""
    with _client(args) as client:
        print(json.dumps(read(client), indent=2))
    return 0


def _json_arg(value: str, what: str) -> Any:
    path = Path(value)
    text = path.read_text() if path.is_file() else value
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(f"{what}: neither a JSON file nor JSON text: {value[:60]!r}") from None


# -- handlers -------------------------------------------------------------------------------------
def member_create(args: argparse.Namespace) -> int:
    identity = MemberIdentity.create(args.output, args.name)
    print(f"member {identity.name}: id {identity.member_id}")
    print(f"  key and certificate in {args.output} (member.key, member.pem)")
    return 0


def member_register(args: argparse.Namespace) -> int:
    """CCF's way in: the operator proposes `set_member`; once the members accepted it, the new member (whose
    identity directory this is) acknowledges a state digest and is active."""
    member = MemberIdentity.load(args.member_dir)
    operator = args.operator or read_endpoints(args).get("cgs_operator_dir")
    if not operator:
        raise ConfigError("no operator identity: pass --operator DIR (or --endpoints from `ccr emulators start`)")
    with _client(args, identity_dir=operator) as client:
        proposal = client.propose_member(member.cert_pem, member.name)
        _print_proposal(proposal, f"set_member {member.name}")
    if proposal["proposalState"] != "Accepted":
        print(f"  once the members accept it: ccr governance member activate --identity {args.member_dir}")
        return 0
    with _client(args, identity_dir=args.member_dir) as client:
        client.activate()
    print(f"member {member.name} ({member.member_id}): Active")
    return 0


def member_activate(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.activate()
        print(f"member {client.identity.name} ({client.identity.member_id}): Active")
    return 0


def member_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for member in client.members():
            data = member.get("memberData") or {}
            role = " (operator)" if data.get("isOperator") else ""
            print(f"{str(data.get('identifier', '')):<20} {member['status']:<9} {member['memberId']}{role}")
    return 0


def contract_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.put_contract(args.contract, _json_arg(args.data, "--data"), args.version)
        print(f"contract {args.contract}: draft version {client.contract(args.contract)['version']}")
    return 0


def contract_propose(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _propose(args, client, client.propose_contract(args.contract, args.version))
    return 0


def contract_show(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.contract(args.contract))


def proposal_vote(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_proposal(client.vote(args.proposal, not args.reject))
    return 0


def proposal_show(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.proposal(args.proposal))


def proposal_actions(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.proposal_actions(args.proposal))


def proposal_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for proposal in client.proposals():
            if args.state is None or proposal["proposalState"] == args.state:
                _print_proposal(proposal)
    return 0


def proposal_withdraw(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_proposal(client.withdraw(args.proposal))
    return 0


def policy_set(args: argparse.Namespace) -> int:
    if bool(args.host_data) == bool(args.spec):
        raise ConfigError("give exactly one of --host-data HEX or --spec SPEC")
    if args.spec:
        host_data = render(load_spec_from_args(args), default_images(args.layers)).host_data
        print(f"HOST_DATA of {args.spec}: {host_data}")
    else:
        host_data = args.host_data.lower()
    if len(host_data) != 64 or any(c not in "0123456789abcdef" for c in host_data):
        raise ConfigError("--host-data: expected 64 hex digits (sha256 of the CCE policy)")
    claims = {"x-ms-sevsnpvm-hostdata": [host_data], "x-ms-sevsnpvm-is-debuggable": args.allow_debug}
    with _client(args) as client:
        _propose(args, client, client.propose_policy(args.contract, claims))
    return 0


def policy_show(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.policy(args.contract))


def consent(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "status":
            result = client.check_status(args.contract, "execution")
            reason = (result.get("reason") or {}).get("message", "")
            print(f"execution: {result['status']}" + (f" ({reason})" if reason else ""))
            return 0
        client.set_execution(args.contract, args.action == "enable")
        print(f"your execution consent for {args.contract}: {args.action}d")
    return 0


def runtime_option(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "status":
            result = client.check_status(args.contract, args.option)
            print(f"{args.option}: {result['status']}")
            return 0
        _propose(args, client, client.propose_runtime_option(args.contract, args.option, args.action == "enable"))
    return 0


def secret_set(args: argparse.Namespace) -> int:
    if (args.value is None) == (args.value_file is None):
        raise ConfigError("give exactly one of --value or --value-file")
    value = args.value if args.value is not None else Path(args.value_file).read_text()
    with _client(args) as client:
        print(f"secret id: {client.put_secret(args.contract, args.name, value)}")
    return 0


def document_put(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.put_document(args.document, args.contract, _json_arg(args.data, "--data"), args.version)
        print(f"document {args.document}: draft version {client.document(args.document)['version']}")
    return 0


def document_propose(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _propose(args, client, client.propose_document(args.document))
    return 0


def document_show(args: argparse.Namespace) -> int:
    return _show(args, lambda c: c.document(args.document))


def ca(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "show":
            info = client.ca_status(args.contract)
            pending = f" ({len(info['proposalIds'])} proposal(s) open)" if info.get("proposalIds") else ""
            print(f"contract CA: {'enabled' if info['enabled'] else 'not enabled'}{pending}")
            if info.get("caCert"):
                print(info["caCert"], end="")
            return 0
        if args.action == "generate-key":
            print(f"contract CA signing key for request {client.generate_ca_signing_key(args.contract)['requestId']}")
            return 0
        if _propose(args, client, client.propose_enable_ca(args.contract))["proposalState"] == "Accepted":
            # CGS makes the key only when a member asks, after the proposal was accepted.
            print(f"contract CA signing key for request {client.generate_ca_signing_key(args.contract)['requestId']}")
    return 0


def oidc(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "show":
            info = client.oidc_issuer_info()
            print(f"OIDC issuer: {'enabled, ' + info.get('issuerUrl', '') if info['enabled'] else 'not enabled'}")
            return 0
        if args.action == "enable" and _propose(
                args, client, client.propose_enable_oidc_issuer(args.kid))["proposalState"] != "Accepted":
            return 0
        key = client.generate_oidc_signing_key()
        print(f"OIDC issuer signing key {key['kid']} (request {key['reqId']})")
    return 0


def federate(args: argparse.Namespace) -> int:
    """Local counterpart of `az identity federated-credential create` (see cli.py)."""
    _add_federated_credential(read_endpoints(args), args.cgs, args.client_id, args.contract)
    return 0


def _add_federated_credential(endpoints: dict[str, str], cgs: str | None, client_id: str, contract: str) -> None:
    path, cgs = endpoints.get("entra_credentials_file"), cgs or endpoints.get("cgs_endpoint")
    if not path or not cgs:
        raise ConfigError("--endpoints FILE from `ccr emulators start` is needed (entra_credentials_file, "
                          "cgs_endpoint); on Azure use `az identity federated-credential create`")
    credentials_file = Path(path)
    entries = json.loads(credentials_file.read_text()) if credentials_file.exists() else []
    entry = {"clientId": client_id, "issuer": cgs.rstrip("/") + "/oidc", "subject": contract,
             "audiences": ["api://AzureADTokenExchange"]}
    if entry not in entries:
        entries.append(entry)
        credentials_file.parent.mkdir(parents=True, exist_ok=True)
        credentials_file.write_text(json.dumps(entries, indent=2))
    print(f"client {client_id} trusts {entry['issuer']} for subject {contract}")


def setup(args: argparse.Namespace) -> int:
    """A local room's members, contract, policy and federation from its spec (what it does: cli.py)."""
    endpoints = read_endpoints(args)
    if "cgs_operator_dir" not in endpoints:
        raise ConfigError("--endpoints must come from `ccr emulators start` (cgs_operator_dir missing)")
    spec = load_spec_from_args(args)
    template = deployment.read_template(args.deployment) if args.deployment else None
    contract_id, names = spec.contract.id, spec.contract.members or ["owner"]
    members_dir = Path(args.members_dir)
    identities = [MemberIdentity.load(members_dir / n) if (members_dir / n / "member.key").exists()
                  else MemberIdentity.create(members_dir / n, n) for n in names]
    endpoint, ca_bundle = str(spec.contract.governance.endpoint), endpoints.get("ca_bundle")
    clients = [CgsMemberClient(endpoint, i, ca_bundle=ca_bundle, auth=args.member_auth) for i in identities]
    others: list[CgsMemberClient] = []
    try:
        with CgsMemberClient(endpoint, MemberIdentity.load(endpoints["cgs_operator_dir"]),
                             ca_bundle=ca_bundle, auth=args.member_auth) as operator:
            # A local stand-in may already have members of other contracts (another room set up from the same
            # MEMBERS_DIR): CGS's constitution wants every active member's vote, and their keys are here.
            active = {m["memberId"] for m in operator.members() if m["status"] == "Active"}
            others = [CgsMemberClient(endpoint, identity, ca_bundle=ca_bundle, auth=args.member_auth)
                      for identity in _local_identities(members_dir, exclude=set(names))
                      if identity.member_id in active]
            for name in join(operator, clients, others):
                print(f"registered member {name} in {members_dir}")

        def accept(proposal: dict[str, Any], what: str) -> None:
            _accept_by_all([*clients, *others], proposal, what)
            print(f"  {what}: Accepted")

        host_data = render(spec, default_images(args.layers)).host_data
        lead = clients[0]
        try:
            contract = lead.contract(contract_id)
        except CgsRequestFailed as exc:
            if exc.http_status != 404:
                raise
            lead.put_contract(contract_id, json.loads(canonical_spec_json(spec)))
            contract = lead.contract(contract_id)
        if contract["state"] == "Proposed":  # an earlier run proposed it: vote on that proposal
            accept(lead.proposal(contract["proposalId"]), "set_contract")
        elif contract["state"] == "Draft":
            accept(lead.propose_contract(contract_id), "set_contract")
        # CGS takes a clean-room policy only for an accepted contract.
        if host_data not in lead.policy(contract_id).get("x-ms-sevsnpvm-hostdata", []):
            accept(lead.propose_policy(contract_id, {"x-ms-sevsnpvm-hostdata": [host_data],
                                                     "x-ms-sevsnpvm-is-debuggable": False}), "set_clean_room_policy")
        if spec.datasinks:
            # A datasink's manifest is signed with a key the contract CA endorses for the attested room.
            if not lead.ca_status(contract_id)["enabled"]:
                accept(lead.propose_enable_ca(contract_id), "enable_ca")
            lead.generate_ca_signing_key(contract_id)
        if not lead.oidc_issuer_info()["enabled"]:
            # The room's federated identities take CGS-signed assertions.
            accept(lead.propose_enable_oidc_issuer("ccr-cgs-oidc"), "enable_oidc_issuer")
        lead.generate_oidc_signing_key()
        if template is not None:
            _accept_deployment(lead, accept, contract_id, template, args.deployment)
        for client_id in spec.federated_identities():  # the volumes' and the telemetry/log sinks' identities
            _add_federated_credential(endpoints, None, client_id, contract_id)
        status = lead.check_status(contract_id, "execution")
        print(f"contract {contract_id}: accepted, HOST_DATA {host_data}, execution {status['status']}")
    finally:
        for client in [*clients, *others]:
            client.close()
    return 0


def _local_identities(members_dir: Path, exclude: set[str]) -> list[MemberIdentity]:
    """The member identities kept in MEMBERS_DIR other than `exclude` (by folder name)."""
    return [MemberIdentity.load(folder) for folder in sorted(members_dir.iterdir())
            if folder.name not in exclude and (folder / "member.key").is_file()] if members_dir.is_dir() else []


def _accept_by_all(clients: list[CgsMemberClient], proposal: dict[str, Any], what: str) -> dict[str, Any]:
    proposal = accept_by_all(clients, proposal)
    if proposal["proposalState"] != "Accepted":
        raise ConfigError(f"{what}: proposal {proposal['proposalId']} is {proposal['proposalState']}, not "
                          "Accepted (see `ccr governance proposal show`)")
    return proposal


def _accept_deployment(lead: CgsMemberClient, accept, contract_id: str, template: dict[str, Any],
                       source: str) -> None:
    """The template as the contract's accepted deployment, and its HOST_DATA in the clean room policy (each
    proposed only if not already so)."""
    host_data = deployment.cce_policy_host_data(template)
    if host_data not in lead.policy(contract_id).get("x-ms-sevsnpvm-hostdata", []):
        accept(lead.propose_policy(contract_id, {"x-ms-sevsnpvm-hostdata": [host_data],
                                                 "x-ms-sevsnpvm-is-debuggable": False}), "set_clean_room_policy")
    current = lead.deployment_spec(contract_id).get("data") or {}
    if not current or template_sha256(current) != template_sha256(template):
        accept(lead.propose_deployment_spec(contract_id, template), "set_deployment_spec")
    print(f"  deployment: {source} (sha256 {template_sha256(template)}, HOST_DATA {host_data})")


def events_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        events, head = client.events(args.contract)
        return check_and_render(events, head, client, args)


# -- the governed deployment ------------------------------------------------------------------------
def _cgs_endpoint(args: argparse.Namespace) -> tuple[str, str | None]:
    endpoints = read_endpoints(args)
    endpoint = args.cgs or os.environ.get("CCR_CGS_ENDPOINT") or endpoints.get("cgs_endpoint")
    if not endpoint:
        raise ConfigError("no CGS endpoint: pass --cgs URL, --endpoints FILE or set CCR_CGS_ENDPOINT")
    return endpoint, args.ca_bundle or endpoints.get("ca_bundle") or os.environ.get("CCR_CA_BUNDLE")


def _template_from(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The ARM template SOURCE names (a template file as it is, or rendered from a spec exactly as `ccr spec
    render arm` renders it) and where it came from, for the output."""
    if args.source.endswith(".json"):
        return deployment.read_template(args.source), args.source
    spec = load_spec(args.source, variables=spec_variables(args))
    rendering = render(spec, default_images(args.layers), registry=args.registry or DEFAULT_REGISTRY,
                       identities=tuple(args.managed_identity or ()))
    return arm_template(rendering.group, rendering.policy), f"{args.source} (rendered)"


def _contract_of(args: argparse.Namespace, template: dict[str, Any]) -> str:
    if args.contract:
        return args.contract
    contract_id = deployment.contract_of_template(template)
    if not contract_id:
        raise ConfigError("the template names no single contract (CCR_SPEC of its containers): pass --contract ID")
    return contract_id


def deployment_propose(args: argparse.Namespace) -> int:
    template, origin = _template_from(args)
    contract_id = _contract_of(args, template)
    host_data = deployment.cce_policy_host_data(template)
    print(f"{origin}: template sha256 {template_sha256(template)}, HOST_DATA {host_data}")
    with _client(args) as client:
        _propose(args, client, client.propose_deployment_spec(contract_id, template))
        if args.no_policy:
            return 0
        if host_data in client.policy(contract_id).get("x-ms-sevsnpvm-hostdata", []):
            print(f"clean room policy of {contract_id} already admits HOST_DATA {host_data}")
            return 0
        _propose(args, client, client.propose_policy(
            contract_id, {"x-ms-sevsnpvm-hostdata": [host_data], "x-ms-sevsnpvm-is-debuggable": False}))
    return 0


def deployment_show(args: argparse.Namespace) -> int:
    endpoint, ca_bundle = _cgs_endpoint(args)
    if args.verify:
        template = deployment.read_template(args.verify)
        accepted = deployment.verify_deployment(endpoint, args.contract, template, ca_bundle=ca_bundle)
        print(f"{args.verify} is the deployment the members of {args.contract} accepted "
              f"(sha256 {accepted.sha256}, proposal {accepted.proposal_id or 'not named by CGS'})")
        return 0
    accepted = deployment.accepted_deployment(endpoint, args.contract, ca_bundle=ca_bundle)
    if args.json:
        print(json.dumps(accepted.template, indent=2))
        return 0
    print(f"contract {args.contract}: deployment accepted by proposal {accepted.proposal_id or '(not named by CGS)'}")
    print(f"  template sha256 {accepted.sha256}")
    print(f"  HOST_DATA {deployment.cce_policy_host_data(accepted.template)}")
    print(f"  open deployment proposals: {', '.join(accepted.open_proposal_ids) or 'none'}")
    return 0
