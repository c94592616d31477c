"""`ccr room up|down|status|logs`: a clean room on this machine, no Docker; and `ccr logs export`,
`ccr telemetry export`, which ask a running room to export now."""

from __future__ import annotations

import argparse
from functools import partial

from ..cliargs import add_command, add_var_option, noun

_COMMANDS = "sidecars.localroom.commands"



def _room_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", metavar="DIR", help="the room's run directory (default run/ROOM)")
    parser.add_argument("--name", default="room", metavar="ROOM", help="the room's name, when --run-dir is not given")


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "room", "run a clean room on this machine (root; no Docker), see it, stop it",
         "A room is a clean room on this machine: a network namespace with the firewall's rules in force, every "
         "sidecar as a process inside it, and the app run with podman by the launcher. Its state, logs and mounts "
         "are in its run directory (--run-dir, default run/ROOM, ROOM being the spec's name).", verbs=_room_verbs)
    for kind in ("logs", "telemetry"):
        noun(subparsers, kind, verbs=partial(_export_verb, kind))


def _room_verbs(room: argparse._SubParsersAction) -> None:
    up = add_command(room, "up", f"{_COMMANDS}:up", "run a clean room on this machine (root; no Docker)",
                     description="Starts the room of SPEC: a network namespace with the firewall's rules in "
                                 "force, every sidecar as a process inside it, then the launcher, which runs "
                                 "the app with podman after the consent, firewall and container policy "
                                 "checks. One line per step; any failure names the step and tears down. "
                                 "A SPEC with a `cluster` section brings up a cluster of rooms instead: the room "
                                 "network, the driver room (admission service, Spark master) and each executor "
                                 "room, admitted against the executor policy the members accepted in governance "
                                 "(docs/analytics.md, \"A cluster of rooms\").")
    up.add_argument("spec", metavar="SPEC", help="clean room spec (YAML)")
    up.add_argument("--endpoints", metavar="FILE", help="endpoints.json of the stand-ins (ccr emulators start)")
    add_var_option(up, "a value for ${NAME} in the spec (repeatable; the sidecars get the same values)")
    up.add_argument("--run-dir", metavar="DIR",
                    help="where state, logs and mounts go (default run/ROOM, ROOM being the spec's name)")
    up.add_argument("--firewall-backend", choices=("nftables", "iptables"), default="nftables",
                    help="the room's firewall (a cluster's rooms use nftables)")
    up.add_argument("--timeout", type=float, default=60.0,
                    help="seconds each sidecar may take to be ready (not used by a cluster)")
    up.add_argument("--wait", action="store_true", help="for a job: wait until it exits; exit with its status")

    down = add_command(room, "down", f"{_COMMANDS}:down", "stop a room and remove everything it set up",
                       description="Stops the room run from --run-dir (or run/ROOM) and removes everything it set "
                                   "up. For a cluster of rooms: every process of every room, their network "
                                   "namespaces and firewalls, and the rooms' state folder.")
    _room_options(down)

    status = add_command(room, "status", f"{_COMMANDS}:status",
                         "each process of the room (running, exited with a code, killed by a signal), each "
                         "sidecar's /status, the app, and the sidecars the launcher lost")
    _room_options(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    logs = add_command(room, "logs", f"{_COMMANDS}:logs", "print one sidecar's log")
    # lazy: the registry imports every sidecar's record (60 ms), needed only for `ccr room`
    from ..room.registry import REGISTRY

    # Every sidecar's log and the loopback forwarders'. The app's own output is not here: it leaves the room
    # only through a consented, encrypted log export (`ccr logs export`, then the sink's owner's `ccr logs
    # download`).
    names = (*REGISTRY.names, "forward")
    logs.add_argument("sidecar", metavar="NAME", choices=names, help="whose log: " + ", ".join(names))
    _room_options(logs)


def _export_verb(kind: str, sub: argparse._SubParsersAction) -> None:
    export = add_command(sub, "export", f"{_COMMANDS}:export", f"export a running room's {kind} now (only with "
                         "the parties' consent; encrypted to the spec's sink)")
    _room_options(export)
    export.set_defaults(what=kind)
