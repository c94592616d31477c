"""Loopback forwarders: the stand-ins' host ports, reachable at the same 127.0.0.1:PORT inside a room.

The listening sockets are created inside the room's netns (the thread enters it just for `bind`), the
outgoing connections are made from the host namespace, and bytes are relayed unchanged, so TLS stays
end to end and the certificates' 127.0.0.1 names stay valid. Only uid 0 (the sidecars) may connect:
the firewall redirects the app's TCP to the proxy before it could reach these ports.

    python -m sidecars.localroom.forward --netns NAME --port 8443 --port 10000 --ready-file F
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

from .netns import entered

CHUNK = 256 * 1024


def listen_in_netns(netns: str, ports: list[int]) -> list[socket.socket]:
    sockets = []
    with entered(netns):
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
            sock.setblocking(False)
            sockets.append(sock)
    return sockets


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _relay(port: int, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))


async def serve(netns: str, ports: list[int], ready_file: Path | None) -> None:
    servers = []
    for port, sock in zip(ports, listen_in_netns(netns, ports), strict=True):
        servers.append(await asyncio.start_server(lambda r, w, p=port: _relay(p, r, w), sock=sock))
    if ready_file:
        ready_file.write_text(json.dumps({"ports": ports}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecars.localroom.forward", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--netns", required=True)
    parser.add_argument("--port", type=int, action="append", required=True, help="host loopback port (repeat)")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.netns, args.port, args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
