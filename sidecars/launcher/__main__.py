"""`ccr sidecar run launcher`: check the app against the container policy and run it with podman."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from ..cliargs import add_spec_variable_options, load_spec_from_args
from ..common.errors import CcrError
from ..common.http import bind_socket
from ..common.logs import configure_logging
from ..common.process import write_ready_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ccr sidecar run launcher", description=__doc__)
    parser.add_argument("--spec", required=True, metavar="FILE", help="the clean room spec")
    add_spec_variable_options(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200, help="default 8200; 0 picks a free one")
    parser.add_argument("--ready-file", type=Path, help="written once listening: {port, url}")
    parser.add_argument("--mount-root", type=Path, default=Path("/mnt/remote"),
                        help="where the volumes sidecar mounts each volume (DIR/NAME)")
    parser.add_argument("--netns", help="the room's network namespace the app joins (default: no network)")
    parser.add_argument("--wait", action="append", default=[], metavar="NAME=URL",
                        help="a sidecar's /status URL to wait for before anything else (repeatable)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for the sidecars")
    parser.add_argument("--governance-url", default="http://127.0.0.1:8300")
    parser.add_argument("--firewall-url", default="http://127.0.0.1:8296")
    parser.add_argument("--telemetry-url", default=None, help="the telemetry sidecar (app logs, exports)")
    parser.add_argument("--sidecar-token-file", type=Path, help="token for auditing under scope 'launcher'")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        from .service import LauncherConfig

        waits = {}
        for item in args.wait:
            name, sep, url = item.partition("=")
            if not sep:
                raise CcrError(f"--wait {item!r}: expected NAME=URL")
            waits[name] = url
        config = LauncherConfig(
            spec=load_spec_from_args(args), mount_root=args.mount_root, netns=args.netns,
            sidecar_status_urls=waits, governance_url=args.governance_url, firewall_url=args.firewall_url,
            telemetry_url=args.telemetry_url, ready_timeout=args.ready_timeout,
            governance_token=args.sidecar_token_file.read_text().strip() if args.sidecar_token_file else None)
        sock = bind_socket(args.host, args.port)
    except (CcrError, OSError) as exc:
        print(f"launcher: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(_serve(config, sock, args))


async def _serve(config, sock, args: argparse.Namespace) -> int:
    import uvicorn

    from .service import Launcher, build_app

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
    if args.ready_file:
        write_ready_file(args.ready_file, port, f"http://{args.host}:{port}")
    preparing = asyncio.create_task(launcher.prepare())
    await stop.wait()
    preparing.cancel()
    await launcher.close()
    server.should_exit = True
    await serving
    return 0 if launcher.state.phase != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
