"""`ccr workspace start`: one party's collaboration workspace (the page and its REST API) on this machine."""

from __future__ import annotations

from pathlib import Path

from ..cliargs import Subcommands, add_command, add_var_option, noun

DEFAULT_PORT = 8765
DEFAULT_CLIENT_ID = "ccr-workspace"


def register(sub: Subcommands) -> None:
    noun(sub, "workspace", "a party's collaboration workspace: a web page and REST API on this machine",
         "A workspace is one party's own web page and REST API for its collaborations: members, datasets, queries, "
         "approvals, runs and an audit report it verifies itself. It runs on the party's machine and acts with "
         "the party's own key (a member certificate folder, or a key bound to the party's Entra identity); no "
         "shared service ever holds it.", verbs=_verbs)


def _verbs(sub: Subcommands) -> None:
    start = add_command(sub, "start", "sidecars.workspace.commands:cmd_start",
                        "serve the workspace on localhost until interrupted",
                        "Serve the workspace (page at /, API under /api/, OpenAPI at /api/openapi.json) on "
                        "127.0.0.1, acting as the party whose identity it is given.")
    who = start.add_mutually_exclusive_group(required=True)
    who.add_argument("--identity", metavar="DIR", help="member identity directory (a member certificate and key)")
    who.add_argument("--entra", metavar="AUTHORITY", nargs="?", const="",
                     help="sign in with an OIDC authority (https://HOST/TENANT; default: the Entra stand-in of "
                          "--endpoints) and act with a key of --key-dir bound to that identity")
    start.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="the workspace's client id at the authority "
                                                                        "(default %(default)s)")
    start.add_argument("--key-dir", metavar="DIR", type=Path,
                       help="with --entra: where the workspace keeps its key (created if missing)")
    start.add_argument("--cgs", metavar="URL", help="CGS endpoint (default: CCR_CGS_ENDPOINT or --endpoints)")
    start.add_argument("--endpoints", metavar="FILE", help="endpoints.json from `ccr emulators start`")
    start.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for CGS, the authority and the stores")
    start.add_argument("--room", metavar="URL", help="the room's analytics API (runs), and its attestation evidence, "
                                                     "which the room's ingress serves beside it")
    start.add_argument("--contract-ca", metavar="PEM", type=Path,
                       help="with --room: the contract CA the room's TLS certificate must chain to")
    start.add_argument("--room-evidence", metavar="URL", help="fetch the room's evidence from this skr sidecar's "
                                                              "nonce route instead (inside the room; default: "
                                                              "beside --room)")
    start.add_argument("--trust-mock-platform", metavar="DIR", type=Path,
                       help="also trust the mock SEV-SNP platform in DIR (local rooms only)")
    start.add_argument("--spec", metavar="SPEC", type=Path, help="the spec naming the party's datasources and "
                                                                 "datasinks (publishing, results)")
    start.add_argument("--kek", metavar="JWK|PEM|URL", help="publishing: the KEK new DEKs are wrapped with (default: "
                                                            "the spec's kek_name in its vault)")
    add_var_option(start)
    start.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s; loopback only)")
    start.add_argument("--port", type=int, default=DEFAULT_PORT, help="default %(default)s; 0 picks a free one")
    start.add_argument("--ready-file", metavar="FILE", help="written once listening: {port, url}")
