"""`ccr governance …`: what a contract member does against CGS (or the local stand-in).

Every command signs its requests with the member identity (`--identity DIR`, or CCR_MEMBER_DIR); the
service comes from `--cgs URL` (CCR_CGS_ENDPOINT) or `--endpoints FILE` (endpoints.json). Proposals the
member makes are voted `accept` by the proposer at once (pass --no-vote to only propose).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cgs", metavar="URL", help="CGS endpoint (default: CCR_CGS_ENDPOINT or --endpoints)")
    parser.add_argument("--endpoints", metavar="FILE", help="endpoints.json from `ccr emulators start`")
    parser.add_argument("--identity", metavar="DIR", help="member identity directory (default: CCR_MEMBER_DIR)")
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for the CGS certificate")


def _endpoints(args: argparse.Namespace) -> dict[str, str]:
    from ..common.errors import ConfigError

    if not getattr(args, "endpoints", None):
        return {}
    try:
        return json.loads(Path(args.endpoints).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--endpoints {args.endpoints}: {exc}") from None


def _client(args: argparse.Namespace, identity_dir: str | None = None):
    from ..common.errors import ConfigError
    from ..common.memberauth import MemberIdentity
    from .member_client import CgsMemberClient

    endpoints = _endpoints(args)
    endpoint = args.cgs or os.environ.get("CCR_CGS_ENDPOINT") or endpoints.get("cgs_endpoint")
    ca_bundle = args.ca_bundle or endpoints.get("ca_bundle")
    if not endpoint:
        raise ConfigError("no CGS endpoint: pass --cgs URL, --endpoints FILE or set CCR_CGS_ENDPOINT")
    directory = identity_dir or args.identity or os.environ.get("CCR_MEMBER_DIR")
    if not directory:
        raise ConfigError("no member identity: pass --identity DIR or set CCR_MEMBER_DIR")
    return CgsMemberClient(endpoint, MemberIdentity.load(directory), ca_bundle=ca_bundle or os.environ.get(
        "CCR_CA_BUNDLE"))


def _print_proposal(proposal: dict[str, Any]) -> None:
    actions = ", ".join(a["name"] for a in proposal["actions"])
    print(f"proposal {proposal['proposalId']} ({actions}): {proposal['state']}, "
          f"{proposal['ballotCount']} vote(s)")


def _propose(args: argparse.Namespace, client, proposal: dict[str, Any]) -> int:
    if not args.no_vote:
        proposal = client.vote(proposal["proposalId"], True)
    _print_proposal(proposal)
    return 0


def _json_arg(value: str, what: str) -> Any:
    from ..common.errors import ConfigError

    path = Path(value)
    text = path.read_text() if path.is_file() else value
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(f"{what}: neither a JSON file nor JSON text: {value[:60]!r}") from None


# -- handlers -------------------------------------------------------------------------------------
def _member_create(args: argparse.Namespace) -> int:
    from ..common.memberauth import MemberIdentity

    identity = MemberIdentity.create(args.dir, args.name)
    print(f"member {identity.name}: id {identity.member_id}")
    print(f"  key and certificate in {args.dir} (member.key, member.pem)")
    return 0


def _member_register(args: argparse.Namespace) -> int:
    from ..common.errors import ConfigError
    from ..common.memberauth import MemberIdentity

    member = MemberIdentity.load(args.member_dir)
    operator = args.operator or _endpoints(args).get("cgs_operator_dir")
    if not operator:
        raise ConfigError("no operator identity: pass --operator DIR (or --endpoints from `ccr emulators start`)")
    with _client(args, identity_dir=operator) as client:
        result = client.register_member(member.name, member.cert_pem)
    print(f"registered {result['name']} ({result['memberId']})")
    return 0


def _members(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for member in client.members():
            print(f"{member['name']:<20} {member['memberId']}")
    return 0


def _contract_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.put_contract(args.contract, _json_arg(args.data, "--data"), args.version)
        print(f"contract {args.contract}: draft version {client.contract(args.contract)['version']}")
    return 0


def _contract_propose(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _propose(args, client, client.propose_contract(args.contract))


def _contract_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(client.contract(args.contract), indent=2))
    return 0


def _vote(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_proposal(client.vote(args.proposal, not args.reject))
    return 0


def _proposal_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(client.proposal(args.proposal), indent=2))
    return 0


def _policy_set(args: argparse.Namespace) -> int:
    from ..common.errors import ConfigError

    if bool(args.host_data) == bool(args.spec):
        raise ConfigError("give exactly one of --host-data HEX or --spec FILE")
    if args.spec:
        from ..cliargs import load_spec_from_args
        from ..renderings.render import default_images, render

        host_data = render(load_spec_from_args(args), default_images(args.layers)).host_data
        print(f"HOST_DATA of {args.spec}: {host_data}")
    else:
        host_data = args.host_data.lower()
    if len(host_data) != 64 or any(c not in "0123456789abcdef" for c in host_data):
        raise ConfigError("--host-data: expected 64 hex digits (sha256 of the CCE policy)")
    claims = {"x-ms-sevsnpvm-hostdata": [host_data], "x-ms-sevsnpvm-is-debuggable": args.allow_debug}
    with _client(args) as client:
        return _propose(args, client, client.propose_policy(args.contract, claims))


def _policy_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(client.policy(args.contract), indent=2))
    return 0


def _consent(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "status":
            result = client.check_status(args.contract, "execution")
            reason = (result.get("reason") or {}).get("message", "")
            print(f"execution: {result['status']}" + (f" ({reason})" if reason else ""))
            return 0
        client.set_execution(args.contract, args.action == "enable")
        print(f"your execution consent for {args.contract}: {args.action}d")
    return 0


def _runtime_option(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "status":
            result = client.check_status(args.contract, args.option)
            print(f"{args.option}: {result['status']}")
            return 0
        return _propose(args, client, client.propose_runtime_option(args.contract, args.option,
                                                                    args.action == "enable"))


def _secret_set(args: argparse.Namespace) -> int:
    from ..common.errors import ConfigError

    if (args.value is None) == (args.file is None):
        raise ConfigError("give exactly one of --value or --file")
    value = args.value if args.value is not None else Path(args.file).read_text()
    with _client(args) as client:
        print(f"secret id: {client.put_secret(args.contract, args.name, value)}")
    return 0


def _document_put(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.put_document(args.document, args.contract, _json_arg(args.data, "--data"), args.version)
        print(f"document {args.document}: draft version {client.document(args.document)['version']}")
    return 0


def _document_propose(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _propose(args, client, client.propose_document(args.document))


def _document_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(client.document(args.document), indent=2))
    return 0


def _ca(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "show":
            info = client.ca_info(args.contract)
            print(f"contract CA: {'enabled' if info['enabled'] else 'not enabled'}")
            if info.get("caCert"):
                print(info["caCert"], end="")
            return 0
        return _propose(args, client, client.propose_enable_ca(args.contract))


def _federate(args: argparse.Namespace) -> int:
    """Local counterpart of `az identity federated-credential create`: trust CGS's assertions about the
    contract (sub = contract id) for the client id, in the Entra stand-in's credentials file."""
    _add_federated_credential(_endpoints(args), args.cgs, args.client_id, args.contract)
    return 0


def _add_federated_credential(endpoints: dict[str, str], cgs: str | None, client_id: str, contract: str) -> None:
    from ..common.errors import ConfigError

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


def _setup(args: argparse.Namespace) -> int:
    """For a local room: every member of the spec's contract gets an identity (created in MEMBERS_DIR if
    missing) registered with CGS; the contract (the spec itself) and its clean-room policy (HOST_DATA of
    the spec's CCE policy, not debuggable) are proposed and accepted by all; the spec's identities are
    federated with the contract. Re-running it changes nothing that is already in place."""
    from ..cliargs import load_spec_from_args
    from ..common.errors import ConfigError
    from ..common.memberauth import MemberIdentity
    from ..renderings.render import default_images, render
    from ..room.group import canonical_spec_json
    from .member_client import CgsMemberClient, CgsRequestFailed

    endpoints = _endpoints(args)
    if "cgs_operator_dir" not in endpoints:
        raise ConfigError("--endpoints must come from `ccr emulators start` (cgs_operator_dir missing)")
    spec = load_spec_from_args(args)
    contract_id, names = spec.contract.id, spec.contract.members or ["owner"]
    members_dir = Path(args.members_dir)
    identities = [MemberIdentity.load(members_dir / n) if (members_dir / n / "member.key").exists()
                  else MemberIdentity.create(members_dir / n, n) for n in names]
    clients = [CgsMemberClient(str(spec.contract.governance.endpoint), i, ca_bundle=endpoints.get("ca_bundle"))
               for i in identities]
    try:
        with CgsMemberClient(str(spec.contract.governance.endpoint),
                             MemberIdentity.load(endpoints["cgs_operator_dir"]),
                             ca_bundle=endpoints.get("ca_bundle")) as operator:
            known = {m["memberId"] for m in operator.members()}
            for identity in identities:
                if identity.member_id not in known:
                    operator.register_member(identity.name, identity.cert_pem)
                    print(f"registered member {identity.name} ({identity.member_id[:16]}…) in {members_dir}")

        def accept(proposal: dict) -> None:
            for client in clients:
                if proposal["state"] == "Open":
                    proposal = client.vote(proposal["proposalId"], True)
            print(f"  {proposal['actions'][0]['name']}: {proposal['state']}")

        host_data = render(spec, default_images(args.layers)).host_data
        lead = clients[0]
        try:
            state = lead.contract(contract_id)["state"]
        except CgsRequestFailed as exc:
            if exc.http_status != 404:
                raise
            lead.put_contract(contract_id, json.loads(canonical_spec_json(spec)))
            state = "Draft"
        if host_data not in lead.policy(contract_id).get("x-ms-sevsnpvm-hostdata", []):
            accept(lead.propose_policy(contract_id, {"x-ms-sevsnpvm-hostdata": [host_data],
                                                     "x-ms-sevsnpvm-is-debuggable": False}))
        if state == "Draft":
            accept(lead.propose_contract(contract_id))
        for client_id in spec.federated_identities():  # the volumes' and the telemetry/log sinks' identities
            _add_federated_credential(endpoints, None, client_id, contract_id)
        status = lead.check_status(contract_id, "execution")
        print(f"contract {contract_id}: accepted, HOST_DATA {host_data}, execution {status['status']}")
    finally:
        for client in clients:
            client.close()
    return 0


def _events(args: argparse.Namespace) -> int:
    from .events import check_and_render

    with _client(args) as client:
        events, head = client.events(args.contract)
        return check_and_render(events, head, client, args)


def register(subparsers: argparse._SubParsersAction) -> None:
    gov = subparsers.add_parser("governance", help="act as a contract member against CGS (contracts, "
                                "policy, consent, secrets, documents, audit)",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = gov.add_subparsers(dest="governance_command", metavar="COMMAND", required=True)

    def command(name: str, handler, help_text: str, *, proposes: bool = False) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        _add_connection(parser)
        if proposes:
            parser.add_argument("--no-vote", action="store_true", help="propose without voting accept")
        parser.set_defaults(func=handler)
        return parser

    member = sub.add_parser("member", help="create or register member identities")
    member_sub = member.add_subparsers(dest="member_command", metavar="SUBCOMMAND", required=True)
    create = member_sub.add_parser("create", help="create a member key pair and certificate in DIR")
    create.add_argument("name")
    create.add_argument("--dir", required=True)
    create.set_defaults(func=_member_create)
    register_cmd = member_sub.add_parser("register", help="register a member's certificate with CGS "
                                         "(signed by the network operator)")
    _add_connection(register_cmd)
    register_cmd.add_argument("member_dir", metavar="MEMBER_DIR")
    register_cmd.add_argument("--operator", metavar="DIR", help="the operator identity (the stand-in keeps it "
                              "in STATE_DIR/operator; default: cgs_operator_dir of --endpoints)")
    register_cmd.set_defaults(func=_member_register)

    command("members", _members, "list the consortium's members")

    contract = command("contract", None, "create, propose or show a contract")
    contract.add_argument("action", choices=["create", "propose", "show"])
    contract.add_argument("contract")
    contract.add_argument("--data", default="{}", help="contract data: JSON text or a JSON file (create)")
    contract.add_argument("--version", help="the draft version being replaced (create, when updating)")
    contract.add_argument("--no-vote", action="store_true", help="propose without voting accept")
    contract.set_defaults(func=lambda a: {"create": _contract_create, "propose": _contract_propose,
                                          "show": _contract_show}[a.action](a))

    vote = command("vote", _vote, "vote on a proposal (accept unless --reject)")
    vote.add_argument("proposal")
    vote.add_argument("--reject", action="store_true")
    show = command("proposal", _proposal_show, "show a proposal")
    show.add_argument("proposal")

    policy = command("policy", None, "propose or show the contract's clean-room policy")
    policy.add_argument("action", choices=["set", "show"])
    policy.add_argument("contract")
    policy.add_argument("--host-data", default="", help="HOST_DATA = sha256 of the CCE policy, hex (set)")
    policy.add_argument("--spec", metavar="FILE", help="compute HOST_DATA from the agreed clean room spec (set); "
                        "its ${variables} come from --endpoints and --var")
    policy.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="a value for ${NAME} in --spec (repeatable)")
    policy.add_argument("--layers", metavar="FILE", help="layer lock for --spec (see `ccr deploy policy --help`); "
                        "default: the local podman images")
    policy.add_argument("--allow-debug", action="store_true", help="also admit debuggable rooms (never in "
                                                                   "production)")
    policy.add_argument("--no-vote", action="store_true", help="propose without voting accept")
    policy.set_defaults(func=lambda a: _policy_set(a) if a.action == "set" else _policy_show(a))

    consent = command("consent", _consent, "enable or disable your execution consent, or show the status")
    consent.add_argument("action", choices=["enable", "disable", "status"])
    consent.add_argument("contract")

    for option in ("logging", "telemetry"):
        parser = command(option, _runtime_option, f"propose enabling/disabling {option} export, or show it",
                         proposes=True)
        parser.add_argument("action", choices=["enable", "disable", "status"])
        parser.add_argument("contract")
        parser.set_defaults(option=option)

    secret = command("secret", _secret_set, "store a secret for the contract (the room reads it as "
                                             "MEMBERID_NAME)")
    secret.add_argument("action", choices=["set"])
    secret.add_argument("contract")
    secret.add_argument("name")
    secret.add_argument("--value")
    secret.add_argument("--file")

    document = command("document", None, "put, propose or show a member document")
    document.add_argument("action", choices=["put", "propose", "show"])
    document.add_argument("document")
    document.add_argument("--contract", help="the contract the document belongs to (put)")
    document.add_argument("--data", default="{}", help="document data: JSON text or file (put)")
    document.add_argument("--version")
    document.add_argument("--no-vote", action="store_true", help="propose without voting accept")
    document.set_defaults(func=lambda a: {"put": _document_put, "propose": _document_propose,
                                          "show": _document_show}[a.action](a))

    ca = command("ca", _ca, "propose enabling the contract CA, or show its certificate", proposes=True)
    ca.add_argument("action", choices=["enable", "show"])
    ca.add_argument("contract")

    setup = sub.add_parser("setup", help="local rooms: members, contract, policy and federation from a spec",
                           description=_setup.__doc__)
    setup.add_argument("spec", metavar="SPEC")
    setup.add_argument("--endpoints", metavar="FILE", required=True, help="endpoints.json of `ccr emulators start`")
    setup.add_argument("--members-dir", required=True, metavar="DIR", help="where member identities are kept")
    setup.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                       help="a value for ${NAME} in the spec (repeatable)")
    setup.add_argument("--layers", metavar="FILE", help="layer lock for HOST_DATA (default: local podman images)")
    setup.set_defaults(func=_setup)

    federate = sub.add_parser("federate", help="let a managed identity (client id) accept the room's "
                              "CGS-issued assertions (local Entra stand-in)",
                              description=_federate.__doc__)
    federate.add_argument("contract")
    federate.add_argument("--client-id", required=True)
    federate.add_argument("--endpoints", metavar="FILE", required=True, help="endpoints.json")
    federate.add_argument("--cgs", metavar="URL", help="CGS endpoint (default: cgs_endpoint of --endpoints)")
    federate.set_defaults(func=_federate)

    events = command("events", _events, "list the contract's audit events, verifying the hash chain "
                     "(exit 1 if it is broken)")
    events.add_argument("contract")
    events.add_argument("--scope", help="show only this scope (the whole chain is verified regardless)")
    events.add_argument("--json", action="store_true", help="print the events as JSON")
