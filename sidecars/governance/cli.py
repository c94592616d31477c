"""`ccr governance NOUN VERB`: what a contract member does against CGS (or the local stand-in)."""

from __future__ import annotations

import argparse
from functools import partial

from ..cliargs import Subcommands, add_command, add_var_option, noun

_COMMANDS = "sidecars.governance.commands"

DESCRIPTION = """\
Governance is the consortium's contract service (CGS): its members, the contracts they agree to, the
clean-room policy, their consent, runtime options, secrets, documents and the audit log.

Every command acts as the member identity (`--identity DIR`, or CCR_MEMBER_DIR); the service comes from
`--cgs URL` (CCR_CGS_ENDPOINT) or `--endpoints FILE` (endpoints.json). Proposals the member makes are voted
for by the proposer at once (pass --no-vote to only propose); the constitution is CGS's: every active member
that is not an operator must accept, one vote against rejects a contract, policy, deployment, document or
enabling an export, and disabling logging or telemetry needs no vote.
"""

SETUP = """\
For a local room: every member of the spec's contract gets an identity (created in MEMBERS_DIR if
missing), proposed by the operator (set_member) and activated; the contract (the spec itself) and then
its clean-room policy (HOST_DATA of the spec's CCE policy, not debuggable) are proposed and accepted by
all; the OIDC issuer (and, with datasinks, the contract CA) is enabled and its signing key made; the
spec's identities are federated with the contract; with --deployment TEMPLATE the template becomes the
contract's accepted deployment. Re-running it changes nothing that is already in place. On a stand-in
that already has members of other contracts (several rooms set up from one MEMBERS_DIR), those whose
identities are in MEMBERS_DIR vote too: CGS's constitution wants every active member's vote."""

# What the positional a command acts on is (a contract, a proposal, ...).
TARGETS = {"contract": "the contract's id", "proposal": "the proposal's id", "document": "the document's id",
           "name": "the member's name", "member_dir": "the member's identity directory (governance member create -o)"}

DEPLOYMENT = """\
The deployment spec is the ARM template the contract's room is deployed from (azure-cleanroom's
`set_deployment_spec`): a member proposes it once the contract is accepted, the contract's members vote,
and CGS keeps the accepted template. `propose` also proposes the clean room policy admitting the
template's HOST_DATA (sha256 of its ccePolicy). Templates are compared by sha256 of their canonical JSON
(sorted keys, no whitespace), so re-indenting a file does not change it and any value does.
`show --verify FILE` needs no member identity: the accepted deployment is public, as in CGS."""

FEDERATE = """\
Local counterpart of `az identity federated-credential create`: trust CGS's assertions about the
contract (sub = contract id) for the client id, in the Entra stand-in's credentials file."""


def add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cgs", metavar="URL", help="CGS endpoint (default: CCR_CGS_ENDPOINT or --endpoints)")
    parser.add_argument("--endpoints", metavar="FILE", help="endpoints.json from `ccr emulators start`")
    parser.add_argument("--identity", metavar="DIR", help="member identity directory (default: CCR_MEMBER_DIR)")
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for the CGS certificate")
    _add_member_auth(parser)


def _add_member_auth(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--member-auth", choices=("cert", "header"), default="cert",
                        help="how the member authenticates: cert (default, as on a real CGS: COSE Sign1 "
                             "governance writes and the member certificate in mutual TLS) or header (the legacy "
                             "CCR-Member signed header, accepted only by a stand-in started with "
                             "--allow-signed-header)")


def register(subparsers: Subcommands) -> None:
    noun(subparsers, "governance", "act as a contract member against CGS (contracts, policy, consent, secrets, "
         "documents, audit)", DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter, verbs=_governance)


def _command(sub: Subcommands, name: str, handler: str, help_text: str, target: str | None = None, *,
             connect: bool = True, proposes: bool = False, **defaults) -> argparse.ArgumentParser:
    """A command acting on `target` (a contract, proposal, document: a positional named after it)."""
    parser = add_command(sub, name, f"{_COMMANDS}:{handler}", help_text)
    if target:
        parser.add_argument(target, metavar=target.upper(), help=TARGETS[target])
    if connect:
        add_connection(parser)
    if proposes:
        parser.add_argument("--no-vote", action="store_true", help="propose without voting accept")
    parser.set_defaults(**defaults)
    return parser


def _drafted(name: str, write: str, sub: Subcommands) -> argparse.ArgumentParser:
    """A contract or a document: a draft written (with --data, --version), proposed, shown."""
    draft = _command(sub, write, f"{name}_{write}", f"create or update a draft {name}", name)
    draft.add_argument("--data", default="{}", help=f"{name} data: JSON text or a JSON file")
    draft.add_argument("--version", help="the draft version being replaced (when updating)")
    propose = _command(sub, "propose", f"{name}_propose", f"propose the {name} as it is now for acceptance (the "
                       "proposal carries it whole)", name, proposes=True)
    if name == "contract":
        propose.add_argument("--version", help="propose only if the draft is still at this version")
    _command(sub, "show", f"{name}_show", f"show a {name}", name)
    return draft


def _governance(gov: Subcommands) -> None:
    noun(gov, "member", "create, register or list member identities",
         "A member is a party to the consortium's contracts, known to CGS by its certificate; it signs every "
         "request with its key (member.key, member.pem in its identity directory).", verbs=_member)
    noun(gov, "contract", "create, propose or show a contract",
         "A contract is what the members agree to run (for a clean room: its spec); it is drafted, proposed, "
         "and accepted once every member voted for it.", verbs=partial(_drafted, "contract", "create"))
    noun(gov, "proposal", "show a proposal or vote on it",
         "A proposal is a change the members vote on (a contract, a policy, a runtime option, a document, the "
         "contract CA); it is accepted once every member voted accept.", verbs=_proposal)
    noun(gov, "policy", "propose or show the contract's clean-room policy",
         "The clean-room policy says which attested rooms may run the contract: the HOST_DATA (hash of the CCE "
         "policy) their hardware reports, and whether debuggable rooms are admitted.", verbs=_policy)
    noun(gov, "consent", "enable or disable your execution consent, or show the status",
         "Consent is each member's own switch: the contract's room gets its secrets, tokens and certificates "
         "only while no member has disabled its execution consent.", verbs=_consent)
    for option, what in (("logging", "app logs"), ("telemetry", "telemetry")):
        noun(gov, option, f"propose enabling/disabling {option} export, or show it",
             f"{option.capitalize()} export is a runtime option of the contract: the room exports its {what} "
             "(encrypted, to the spec's sink) only while the members accepted enabling it.",
             verbs=partial(_runtime_option, option))
    noun(gov, "secret", "store a secret for the contract",
         "A secret is a value a member gives the contract's room, which reads it as MEMBERID_NAME.", verbs=_secret)
    noun(gov, "document", "put, propose or show a member document",
         "A document is a member's JSON document attached to a contract, accepted like a proposal.",
         verbs=_document)
    noun(gov, "ca", "propose enabling the contract CA, or show its certificate",
         "The contract CA issues the room's certificate, so clients can trust the room by the contract.",
         verbs=_ca)
    noun(gov, "oidc", "propose enabling the consortium's OIDC issuer, or show it",
         "CGS's OIDC issuer signs the client assertions a room's federated identities exchange for Entra tokens; "
         "it signs nothing until the members enabled it and a member asked for its signing key.", verbs=_oidc)
    noun(gov, "deployment", "propose the ARM template the room is deployed from, show it, verify a template",
         DEPLOYMENT, formatter_class=argparse.RawDescriptionHelpFormatter, verbs=_deployment)
    noun(gov, "events", "list the contract's audit events",
         "Events are the contract's audit log: append-only, sequence-numbered and hash-chained.", verbs=_events)

    setup = add_command(gov, "setup", f"{_COMMANDS}:setup", "local rooms: members, contract, policy and "
                        "federation from a spec", SETUP)
    setup.add_argument("spec", metavar="SPEC", help="clean room spec (YAML)")
    setup.add_argument("--endpoints", metavar="FILE", required=True, help="endpoints.json of `ccr emulators start`")
    setup.add_argument("--members-dir", required=True, metavar="DIR", help="where member identities are kept")
    _add_member_auth(setup)
    add_var_option(setup)
    setup.add_argument("--layers", metavar="FILE", help="layer lock for HOST_DATA (default: local podman images)")
    setup.add_argument("--deployment", metavar="TEMPLATE", help="also accept this ARM template as the contract's "
                       "deployment (and its HOST_DATA in the clean room policy), e.g. for `ccr aci run`")

    federate = add_command(gov, "federate", f"{_COMMANDS}:federate", "let a managed identity (client id) accept "
                           "the room's CGS-issued assertions (local Entra stand-in)", FEDERATE)
    federate.add_argument("contract", metavar="CONTRACT", help=TARGETS["contract"])
    federate.add_argument("--client-id", required=True)
    federate.add_argument("--endpoints", metavar="FILE", required=True, help="endpoints.json")
    federate.add_argument("--cgs", metavar="URL", help="CGS endpoint (default: cgs_endpoint of --endpoints)")


def _member(member: Subcommands) -> None:
    create = _command(member, "create", "member_create", "create a member key pair and certificate in DIR", "name",
                      connect=False)
    create.add_argument("-o", "--output", required=True, metavar="DIR", help="the identity directory to create")
    register_cmd = _command(member, "register", "member_register",
                            "propose a member (set_member, by the network operator); once accepted, the member "
                            "acknowledges and is active", "member_dir")
    register_cmd.add_argument("--operator", metavar="DIR", help="the operator identity (the stand-in keeps it in "
                              "STATE_DIR/operator; default: cgs_operator_dir of --endpoints)")
    _command(member, "activate", "member_activate", "an accepted member acknowledges the state digest and "
             "becomes active (CCF's state-digests update and ack)")
    _command(member, "list", "member_list", "list the consortium's members and their status")


def _proposal(proposal: Subcommands) -> None:
    listing = _command(proposal, "list", "proposal_list", "list the proposals: id, state and votes")
    listing.add_argument("--state", choices=("Open", "Accepted", "Rejected", "Withdrawn", "Failed"),
                         help="only proposals in this state")
    _command(proposal, "show", "proposal_show", "show a proposal (state, ballots)", "proposal")
    _command(proposal, "actions", "proposal_actions", "show what a proposal proposes", "proposal")
    _command(proposal, "withdraw", "proposal_withdraw", "withdraw your own open proposal", "proposal")
    vote = _command(proposal, "vote", "proposal_vote", "vote on a proposal (accept unless --reject)", "proposal")
    vote.add_argument("--reject", action="store_true", help="vote reject")


def _policy(policy: Subcommands) -> None:
    set_policy = _command(policy, "set", "policy_set", "propose the contract's clean-room policy", "contract",
                          proposes=True)
    set_policy.add_argument("--host-data", default="", metavar="HEX", help="HOST_DATA = sha256 of the CCE policy, hex")
    set_policy.add_argument("--spec", metavar="SPEC", help="compute HOST_DATA from the agreed clean room spec "
                            "instead of --host-data; its ${variables} come from --endpoints and --var")
    add_var_option(set_policy, "a value for ${NAME} in --spec (repeatable)")
    set_policy.add_argument("--layers", metavar="FILE", help="layer lock for --spec (see `ccr spec render policy "
                            "--help`); default: the local podman images")
    set_policy.add_argument("--allow-debug", action="store_true",
                            help="also admit debuggable rooms (never in production)")
    _command(policy, "show", "policy_show", "show the contract's clean-room policy", "contract")


def _consent(consent: Subcommands) -> None:
    for verb, help_text in (("enable", "enable your execution consent"),
                            ("disable", "disable your execution consent"),
                            ("status", "show whether the contract may execute")):
        _command(consent, verb, "consent", help_text, "contract", action=verb)


def _runtime_option(option: str, runtime: Subcommands) -> None:
    for verb, help_text in (("enable", f"propose enabling {option} export"),
                            ("disable", f"propose disabling {option} export"),
                            ("status", f"show whether {option} export is enabled")):
        _command(runtime, verb, "runtime_option", help_text, "contract", proposes=verb != "status", action=verb,
                 option=option)


def _secret(secret: Subcommands) -> None:
    set_secret = _command(secret, "set", "secret_set", "store a secret for the contract (the room reads it as "
                          "MEMBERID_NAME)", "contract")
    set_secret.add_argument("name", metavar="NAME", help="the secret's name")
    set_secret.add_argument("--value", help="the secret")
    set_secret.add_argument("--value-file", metavar="FILE", help="a file holding the secret")


def _document(document: Subcommands) -> None:
    put = _drafted("document", "put", document)
    put.add_argument("--contract", help="the contract the document belongs to")


def _ca(ca: Subcommands) -> None:
    _command(ca, "enable", "ca", "propose enabling the contract CA (and, once accepted, ask for its signing key)",
             "contract", proposes=True, action="enable")
    _command(ca, "generate-key", "ca", "ask CGS for the CA's signing key once enabling it was accepted", "contract",
             action="generate-key")
    _command(ca, "show", "ca", "show whether the contract CA is enabled, and its certificate", "contract",
             action="show")


def _oidc(oidc: Subcommands) -> None:
    enable = _command(oidc, "enable", "oidc", "propose enabling the OIDC issuer (and, once accepted, ask for its "
                      "signing key)", proposes=True, action="enable")
    enable.add_argument("--kid", default="ccr-cgs-oidc", help="key id prefix of the issuer's signing keys")
    _command(oidc, "generate-key", "oidc", "ask CGS for the issuer's signing key once enabling it was accepted",
             action="generate-key")
    _command(oidc, "show", "oidc", "show whether the issuer is enabled, and its URL", action="show")


def _deployment(deployment: Subcommands) -> None:
    propose = add_command(deployment, "propose", f"{_COMMANDS}:deployment_propose",
                          "propose an ARM template (or a spec's) as the contract's deployment, and its HOST_DATA "
                          "as the clean room policy")
    propose.add_argument("source", metavar="TEMPLATE|SPEC", help="cleanroom-arm-template.json, or a clean room spec "
                         "(YAML) to render the template from as `ccr spec render arm` does")
    propose.add_argument("--contract", help="the contract's id (default: the one the template's CCR_SPEC names)")
    propose.add_argument("--no-policy", action="store_true", help="do not also propose the clean room policy")
    propose.add_argument("--no-vote", action="store_true", help="propose without voting accept")
    add_connection(propose)
    add_var_option(propose, "a value for ${NAME} in SPEC (repeatable; --endpoints fills them too)")
    propose.add_argument("--layers", metavar="FILE", help="layer lock for SPEC (default: the local podman images)")
    propose.add_argument("--registry", metavar="PREFIX", help="registry prefix of the sidecar images, for SPEC")
    propose.add_argument("--managed-identity", action="append", metavar="RESOURCE_ID",
                         help="user-assigned managed identity attached to the group, for SPEC (repeatable)")
    show = _command(deployment, "show", "deployment_show", "show the accepted deployment, or --verify a template "
                    "against it (exit 1 in one line if it is not the accepted one)", "contract")
    show.add_argument("--verify", metavar="FILE", help="an ARM template: is it byte for byte (canonical JSON) the "
                      "accepted one?")
    show.add_argument("--json", action="store_true", help="print the accepted template itself")


def _events(events: Subcommands) -> None:
    listing = _command(events, "list", "events_list", "list the contract's audit events, verifying the hash chain "
                       "(exit 1 if it is broken)", "contract")
    listing.add_argument("--scope", help="show only this scope (the whole chain is verified regardless)")
    listing.add_argument("--json", action="store_true", help="print the events as JSON")
