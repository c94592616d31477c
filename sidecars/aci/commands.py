"""The handlers of `ccr aci ...` (registered in cli.py)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ..attestation.mock import MockPlatform
from ..cliargs import read_endpoints
from ..common.errors import ConfigError, NotFound
from ..governance.deployment import verify_deployment
from ..launcher.podman import Podman
from ..renderings.render import default_images
from . import governed, pod
from .group import RunOptions, delete_group, loopback_ports, run_group
from .state import GroupState, default_state_dir
from .template import NAME_PATTERN, load_group_files


def _say(line: str) -> None:
    print(line, flush=True)


def run(args: argparse.Namespace) -> int:
    group = load_group_files(Path(args.template), Path(args.parameters) if args.parameters else None)
    endpoints = read_endpoints(args)
    if args.unsafe_ungoverned:
        print(governed.UNGOVERNED_WARNING, file=sys.stderr, flush=True)
    else:
        cgs = args.cgs_endpoint or endpoints.get("cgs_endpoint")
        if not args.contract or not cgs:
            raise ConfigError("a deployment must be the one the contract's members accepted: pass --contract ID "
                              "and --cgs-endpoint URL (or --endpoints FILE), or --unsafe-ungoverned")
        accepted = verify_deployment(cgs, args.contract, group.template,
                                     ca_bundle=args.ca_bundle or endpoints.get("ca_bundle"))
        _say(f"deployment accepted in CGS for contract {args.contract} (sha256 {accepted.sha256})")
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(group.name)
    platform_dir = args.mock_platform or endpoints.get("mock_platform_dir")
    if not platform_dir:
        platform_dir = state_dir / "mock-platform"
        MockPlatform.create(platform_dir)
        _say(f"simulated hardware: a new mock SEV-SNP platform in {platform_dir} (no attestation service trusts it)")
    options = RunOptions(state_dir=state_dir, mock_platform_dir=Path(platform_dir),
                         forwarded_ports=loopback_ports(endpoints), governed=not args.unsafe_ungoverned)
    state = run_group(group, options, default_images(progress=_say), _say)
    _say(f"container group {group.name} is running on the simulated platform (state: {state.state_dir}; "
         f"`ccr aci status {group.name}`, `ccr aci delete {group.name}`)")
    return 0


def _state(args: argparse.Namespace) -> GroupState:
    if args.state_dir:
        return GroupState.load(Path(args.state_dir))
    if not args.name:
        raise ConfigError("name the container group (or pass --state-dir DIR)")
    if not NAME_PATTERN.fullmatch(args.name):
        raise ConfigError(f"{args.name!r} is not a container group name (lowercase letters, digits and '-')")
    return GroupState.load(default_state_dir(args.name))


def status(args: argparse.Namespace) -> int:
    state = _state(args)
    states = pod.container_states(Podman(), state)
    report = {"name": state.name, "platform": state.platform, "host_data": state.host_data,
              "template_sha256": state.template_sha256, "governed": state.governed, "netns": state.netns,
              "ip": state.ip,
              "containers": {name: {"init": name in state.init_containers,
                                    "status": states.get(name, {}).get("Status", "absent"),
                                    "exit_code": states.get(name, {}).get("ExitCode")}
                             for name in (*state.init_containers, *state.containers)}}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"group {state.name}  platform {state.platform}  HOST_DATA {state.host_data}"
          f"{'' if state.governed else '  UNGOVERNED'}")
    for name, entry in report["containers"].items():
        code = "" if entry["status"] == "running" else f" (exit code {entry['exit_code']})"
        print(f"  {name:<20} {'init ' if entry['init'] else ''}{entry['status']}{code}")
    return 0


def logs(args: argparse.Namespace) -> int:
    state = _state(args)
    names = [args.container] if args.container else [*state.init_containers, *state.containers]
    unknown = [n for n in names if n not in (*state.init_containers, *state.containers)]
    if unknown:
        raise NotFound(f"group {state.name} has no container {unknown[0]!r} (it has: "
                       f"{', '.join((*state.init_containers, *state.containers))})")
    tail = ["--tail", str(args.tail)] if args.tail else []
    for name in names:
        if not args.container:
            print(f"--- {name}", flush=True)
        subprocess.run(["podman", "logs", *tail, state.container_name(name)], env=Podman().env())
    return 0


def delete(args: argparse.Namespace) -> int:
    state = _state(args)
    left = delete_group(state, progress=_say)
    if left:
        raise ConfigError(f"group {state.name} was not removed completely: {', '.join(left)}")
    _say(f"container group {state.name} deleted: no pod, container, network namespace, mount or process left")
    return 0
