"""The handler of `ccr workspace start`."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

from ..cliargs import read_endpoints
from ..common.errors import ConfigError
from ..common.http import serve
from .app import build_app
from .attestation import RoomEvidence
from .party import EntraSettings, Party, RoomEndpoint


def _loopback(host: str) -> str:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"--host {host}: a workspace acts with the party's key, so it listens on loopback only")
    return host


def party_from_args(args: argparse.Namespace) -> Party:
    endpoints = read_endpoints(args)
    cgs = args.cgs or os.environ.get("CCR_CGS_ENDPOINT") or endpoints.get("cgs_endpoint")
    if not cgs:
        raise ConfigError("no CGS endpoint: pass --cgs URL, --endpoints FILE or set CCR_CGS_ENDPOINT")
    ca_bundle = args.ca_bundle or endpoints.get("ca_bundle") or os.environ.get("CCR_CA_BUNDLE")
    entra = None
    if args.entra is not None:
        authority = args.entra or (f"{endpoints['entra_endpoint']}/{endpoints['entra_tenant_id']}"
                                   if endpoints.get("entra_endpoint") and endpoints.get("entra_tenant_id") else "")
        if not authority.startswith("https://"):
            raise ConfigError("--entra: give the authority (https://HOST/TENANT), or --endpoints with an Entra "
                              "stand-in")
        if args.key_dir is None:
            raise ConfigError("--entra needs --key-dir DIR (where the workspace keeps the key bound to your identity)")
        entra = EntraSettings(authority.rstrip("/"), args.client_id)
    if (args.room is None) != (args.contract_ca is None):
        raise ConfigError("--room and --contract-ca go together (the room's API and the CA its certificate chains to)")
    room = RoomEndpoint(args.room, args.contract_ca) if args.room else None
    # the room's evidence from its public evidence path, beside its API, unless told where else
    evidence = (RoomEvidence(args.room_evidence, ca_bundle, args.trust_mock_platform) if args.room_evidence
                else RoomEvidence.of_room(args.room, str(args.contract_ca), args.trust_mock_platform) if args.room
                else None)
    return Party(cgs_url=cgs, ca_bundle=ca_bundle, identity_dir=Path(args.key_dir if entra else args.identity),
                 mode="entra" if entra else "certificate", entra=entra, room=room, spec=args.spec, var=args.var,
                 endpoints=args.endpoints, room_evidence=evidence, kek=args.kek)


def cmd_start(args: argparse.Namespace) -> int:
    host = _loopback(args.host)
    party = party_from_args(args)
    app = build_app(party)

    def on_ready(bound: int) -> None:
        party.base_url = f"http://{'127.0.0.1' if host == 'localhost' else host}:{bound}"
        print(f"workspace of {party.identity.member_id[:12]}… at {party.base_url}/ (API {party.base_url}/api/docs)",
              flush=True)

    try:
        serve(app, host, args.port, on_ready=on_ready, ready_file=args.ready_file, log_level="warning")
    finally:
        party.close()
    return 0
