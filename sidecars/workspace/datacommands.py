"""`ccr data publish` and `ccr data download`, called by the workspace with arguments parsed by the CLI's own
parser: every option those commands have, now or later, gets its command-line default, and the workspace
never builds a half namespace by hand."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..cli import build_parser
from ..cliargs import reach
from ..volumes import commands as data_commands
from .party import Party


def _parsed(words: list[str]) -> argparse.Namespace:
    parser = build_parser()
    reach(parser, words)  # a noun's verbs are added when it is first used
    return parser.parse_args(words)


def _common(party: Party, spec: Path) -> list[str]:
    words = ["--spec", str(spec)]
    if party.ca_bundle:
        words += ["--ca-bundle", party.ca_bundle]
    if party.endpoints:
        words += ["--endpoints", party.endpoints]
    for item in party.var:
        words += ["--var", item]
    return words


def publish(party: Party, folder: Path, spec: Path, volume: str,
            on_bytes: Callable[[int, int], None] | None = None) -> None:
    kek = ["--kek", party.kek] if party.kek else []
    args = _parsed(["data", "publish", str(folder), "--volume", volume, *kek, *_common(party, spec)])
    token = data_commands.PROGRESS.set(on_bytes)
    try:
        data_commands.publish(args)
    finally:
        data_commands.PROGRESS.reset(token)


def download(party: Party, output: Path, spec: Path, volume: str, contract_ca: Path, contract_id: str) -> None:
    data_commands.download(_parsed(["data", "download", "-o", str(output), "--volume", volume,
                                    "--contract-ca", str(contract_ca), "--contract", contract_id,
                                    *_common(party, spec)]))
