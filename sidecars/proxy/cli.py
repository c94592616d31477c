"""`ccr proxy render`: the proxy's Envoy configuration for a spec, validated by Envoy, without running it."""

from __future__ import annotations

import argparse

from ..cliargs import add_command, noun
from .options import add_model_options


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "proxy", "the proxy sidecar's configuration",
         "The proxy is the room's only way in and out: Envoy, with each endpoint's policy enforced "
         "inbound and the spec's allowed destinations outbound. `render` shows what it would run with "
         "the proxy sidecar's own options (ccr sidecar run proxy --help), without running it.", verbs=_verbs)


def _verbs(sub: argparse._SubParsersAction) -> None:
    render = add_command(sub, "render", "sidecars.proxy.commands:render",
                         "render Envoy's configuration for a spec and check it with envoy",
                         description="Writes Envoy's bootstrap for the spec (checked with `envoy --mode "
                                     "validate`) and prints how each endpoint's policy is enforced.")
    add_model_options(render)
    render.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the bootstrap (JSON)")
