"""`ccr aci run|status|logs|delete`: the local Confidential ACI simulator."""

from __future__ import annotations

import argparse

from ..cliargs import add_command, noun

_COMMANDS = "sidecars.aci.commands"


def _state_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", nargs="?", help="the container group's name (its state is in "
                                                               "/run/ccr-aci/NAME)")
    parser.add_argument("--state-dir", metavar="DIR", help="the group's state directory (instead of NAME)")


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "aci", "run an ARM template locally as Confidential ACI would (root; podman)",
         "A local Confidential ACI simulator: `ccr aci run TEMPLATE.json` reads the ARM template `ccr spec render "
         "arm` wrote, enforces its CCE policy on every container as the confidential guest does, and runs the "
         "group with podman in a network namespace, adding only what the platform adds (security-context "
         "directory, a simulated SEV-SNP report source, the local image store as registry). Its platform is "
         "\"simulated\": no real attestation service accepts its reports.", verbs=_verbs)


def _verbs(aci: argparse._SubParsersAction) -> None:
    run = add_command(aci, "run", f"{_COMMANDS}:run", "deploy an ARM template into the local simulator",
                      description="Reads TEMPLATE (+ --parameters), refuses it unless CGS says the contract's "
                                  "members accepted exactly it (--unsafe-ungoverned skips that, loudly), checks "
                                  "every container against the template's CCE policy, then starts the group and "
                                  "returns once its containers run. One line per step.")
    run.add_argument("template", metavar="TEMPLATE", help="ARM template (JSON), as `ccr spec render arm` writes it")
    run.add_argument("--parameters", metavar="FILE", help="ARM parameters file (JSON)")
    run.add_argument("--endpoints", metavar="FILE",
                     help="the stand-ins' endpoints.json: their loopback ports are forwarded into the group, "
                          "their mock platform is the simulated hardware, their CGS and CA are the defaults")
    run.add_argument("--contract", help="the contract whose accepted deployment this must be")
    run.add_argument("--cgs-endpoint", metavar="URL", help="CGS to ask (default: cgs_endpoint of --endpoints)")
    run.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for CGS (default: ca_bundle of --endpoints)")
    run.add_argument("--mock-platform", metavar="DIR", help="the mock SEV-SNP platform used as hardware "
                                                            "(default: mock_platform_dir of --endpoints)")
    run.add_argument("--state-dir", metavar="DIR", help="where the group's state goes (default /run/ccr-aci/NAME)")
    run.add_argument("--unsafe-ungoverned", action="store_true",
                     help="run a template no one accepted in CGS (prints a warning; for development only)")

    status = add_command(aci, "status", f"{_COMMANDS}:status", "the group's containers, their exit codes, the platform")
    _state_options(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    logs = add_command(aci, "logs", f"{_COMMANDS}:logs", "a container's output (default: every container's)")
    logs.add_argument("name", metavar="NAME", help="the container group's name")
    logs.add_argument("container", metavar="CONTAINER", nargs="?", help="one container of the group")
    logs.add_argument("--state-dir", metavar="DIR", help="the group's state directory")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")

    delete = add_command(aci, "delete", f"{_COMMANDS}:delete", "stop the group and remove everything it made")
    _state_options(delete)
