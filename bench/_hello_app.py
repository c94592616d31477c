"""The small app the proxy benchmark puts behind Envoy: answers every HTTP/1.1 request with a fixed
body, as fast as Python can (uvloop, no framework), so the proxy's own cost dominates.

    python -m bench._hello_app --ready-file F     (writes {"port": N})
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\nhello\n"


class HelloProtocol(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # Requests carry no body (GET), so each head ends one request.
        count = self.buffer.count(b"\r\n\r\n")
        if count:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4:]
            self.transport.write(RESPONSE * count)


async def main(port: int, ready_file: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HelloProtocol, "127.0.0.1", port, backlog=1024)
    Path(ready_file).write_text(json.dumps({"port": server.sockets[0].getsockname()[1]}))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args.port, args.ready_file))
