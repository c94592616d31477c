"""`ccr emulators start|stop|status|release-compose --run-dir DIR`: the local stand-ins for Azure (MAA, Key
Vault, ...)."""

from __future__ import annotations

import argparse

from ..cliargs import add_command, noun

_COMMANDS = "sidecars.emulators.commands"


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "emulators", "start or stop the local stand-ins for Azure services",
         "The emulators are local stand-ins for the Azure services a clean room uses (attestation, Key "
         "Vault, governance, Entra, storage), run as background processes over HTTPS with a local CA. "
         "`start` writes DIR/endpoints.json (URLs, CA bundle, mock platform) for specs (--endpoints) "
         "and scripts. A compose run has them as services instead (ccr spec render compose --prepare).", verbs=_verbs)


def _verbs(sub: argparse._SubParsersAction) -> None:
    state = "directory for the CA, certificates, logs, PIDs and endpoints.json"
    for name, handler, text, run_dir in (
            ("start", "start", "start the stand-ins and write DIR/endpoints.json", state),
            ("stop", "stop", "stop the stand-ins started in DIR", state),
            ("status", "status", "show which stand-ins run in DIR", state),
            ("release-compose", "release_compose", "after `podman-compose down`: unmount what `ccr spec render "
             "compose --prepare DIR` and the room left under DIR/remote", "the directory --prepare was given")):
        command = add_command(sub, name, f"{_COMMANDS}:{handler}", text)
        command.add_argument("--run-dir", required=True, metavar="DIR", help=run_dir)
