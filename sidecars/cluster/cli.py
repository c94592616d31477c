"""`ccr cluster down NAME`: remove whatever is left of a cluster of rooms on this machine."""

from __future__ import annotations

import argparse

from ..cliargs import add_command, noun

_COMMANDS = "sidecars.cluster.commands"


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "cluster", "a cluster of rooms on this machine (Spark driver and executor rooms)",
         "A cluster of rooms is a driver room and N executor rooms, each its own network namespace, joined by a "
         "room network (docs/analytics.md, \"A cluster of rooms\"). `ccr room up SPEC` of a spec with a "
         "cluster section brings one up and `ccr room down` takes it down; `ccr cluster down NAME` removes "
         "what is left of one by its name.", verbs=_verbs)


def _verbs(cluster: argparse._SubParsersAction) -> None:
    down = add_command(cluster, "down", f"{_COMMANDS}:down",
                       "stop every process of a cluster's rooms and delete their network namespaces",
                       description="Stops every process in NAME-driver, NAME-exec-N and NAME-net (the room "
                                   "network) and deletes those namespaces and the cluster's state folder. "
                                   "Safe to run again: what is already gone is skipped.")
    down.add_argument("name", metavar="NAME", help="the cluster's name (its rooms are NAME-driver, NAME-exec-N)")
    down.add_argument("--state-dir", metavar="DIR", help="the cluster's state folder, removed too")
