"""`ccr sidecar run launcher`: check the app against the container policy and run it with podman.

In a room it is configured from the room (`sidecar.configure`); these options configure it standalone."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from ..cliargs import add_listen_options, add_spec_variable_options, load_spec_from_args, run_standalone
from ..common.errors import ConfigError
from ..common.http import bind_socket
from ..common.logs import configure_logging
from ..common.process import write_ready_file
from .service import Launcher, build_app
from .sidecar import LAUNCHER, SIDECARS_READY_TIMEOUT_S, LauncherConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccr sidecar run launcher", description=__doc__)
    parser.add_argument("--spec", required=True, metavar="FILE", help="the clean room spec")
    add_spec_variable_options(parser)
    add_listen_options(parser, LAUNCHER.port())
    parser.add_argument("--mount-root", type=Path, required=True,
                        help="where the volumes sidecar mounts each volume (DIR/NAME)")
    parser.add_argument("--netns", help="the room's network namespace the app joins (default: no network)")
    parser.add_argument("--wait", action="append", default=[], metavar="NAME=URL",
                        help="a sidecar's /status URL to wait for before anything else (repeatable)")
    parser.add_argument("--ready-timeout", type=float, default=SIDECARS_READY_TIMEOUT_S,
                        help=f"seconds to wait for the sidecars (default {SIDECARS_READY_TIMEOUT_S:g})")
    parser.add_argument("--governance-url", required=True, help="the governance sidecar")
    parser.add_argument("--telemetry-url", help="the telemetry sidecar (app logs, exports)")
    parser.add_argument("--sidecar-token-file", type=Path, help="token for auditing under scope 'launcher'")
    return parser


def config_from_args(args: argparse.Namespace) -> LauncherConfig:
    waits = {}
    for item in args.wait:
        name, sep, url = item.partition("=")
        if not sep:
            raise ConfigError(f"--wait {item!r}: expected NAME=URL")
        waits[name] = url
    return LauncherConfig(
        spec=load_spec_from_args(args), port=args.port, host=args.host, ready_file=args.ready_file,
        mount_root=args.mount_root, netns=args.netns, sidecar_status_urls=waits,
        governance_url=args.governance_url, telemetry_url=args.telemetry_url,
        sidecar_token_file=args.sidecar_token_file, ready_timeout=args.ready_timeout)


def name_own_netns(netns: str) -> None:
    """Name this process's network namespace (the group's) under /run/netns, where the launcher's
    `podman run --network ns:/run/netns/NAME` finds it. In `ccr room up` it has that name already."""
    named = Path(f"/run/netns/{netns}")
    try:
        if named.exists() and os.stat(named).st_ino == os.stat("/proc/self/ns/net").st_ino:
            return
    except OSError:
        pass
    if named.exists():
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
    result = subprocess.run(["ip", "netns", "attach", netns, str(os.getpid())], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(f"cannot name the group's network namespace {netns}: {result.stderr.strip()}")


def run(config: LauncherConfig) -> int:
    configure_logging()
    if config.name_own_netns and config.netns:
        name_own_netns(config.netns)
    sock = bind_socket(config.host, config.port)
    return asyncio.run(_serve(config, sock))


async def _serve(config: LauncherConfig, sock) -> int:
    launcher = Launcher(config)
    server = uvicorn.Server(uvicorn.Config(build_app(launcher), log_level="warning", access_log=False,
                                           lifespan="off"))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            return 1
        await asyncio.sleep(0.005)
    port = sock.getsockname()[1]
    if config.ready_file:
        write_ready_file(config.ready_file, port, f"http://{config.host}:{port}")
    preparing = asyncio.create_task(launcher.prepare())
    await stop.wait()
    preparing.cancel()
    await launcher.close()
    server.should_exit = True
    await serving
    return 0 if launcher.state.phase != "failed" else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("launcher", build_parser(), config_from_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
