"""The HTTP ext_authz server: Envoy asks it about every inbound request; it answers with the policy's
decision (200 = allow, anything else = the denial Envoy returns to the client).

Envoy sends the original method, `/<endpoint><original path>`, the request headers and (when the
policy reads it) the body. Speed matters here — this is the proxy's main cost — so the server is a
small HTTP/1.1 protocol on uvloop rather than a framework, evaluates a fixed, prepared query, and runs
several worker processes sharing one listening socket. Workers die with their parent (PDEATHSIG), so
killing the server kills every worker and Envoy fails closed.

    python -m sidecars.proxy.authz --config policies.json --port PORT --workers 2 [--ready-file F]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from http import HTTPStatus
from pathlib import Path

import uvloop

from ..common.errors import CcrError, ConfigError
from ..common.logs import configure_logging
from ..common.process import ManagedProcess, file_exists, write_ready_file
from .decision import Decision
from .envoy import AUTHZ_REUSABLE_HEADER
from .policies import PolicyConfig, PolicySet
from .runtime import die_with_parent

log = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 << 20


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Status"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


def encode_decision(decision: Decision, *, reusable: bool = False) -> bytes:
    """The HTTP answer to Envoy. `reusable`: an allow that depends only on what the policy reads, which
    Envoy's decision cache may store (only allows without headers: the cache adds none)."""
    body = decision.body.encode() if not decision.allowed else b""
    lines = [_status_line(decision.http_status)]
    if reusable and decision.allowed and not decision.headers:
        lines.append(f"{AUTHZ_REUSABLE_HEADER}: 1\r\n".encode())
    for name, value in decision.headers.items():
        if name != "content-length":
            lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    lines.append(f"content-length: {len(body)}\r\n\r\n".encode())
    lines.append(body)
    return b"".join(lines)


def split_target(target: str) -> tuple[str, str]:
    """`/<endpoint>/rest?q` → (endpoint, `/rest?q`)."""
    rest = target[1:]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    original = rest[cut:]
    if not original.startswith("/"):
        original = "/" + original
    return rest[:cut], original


class AuthzProtocol(asyncio.Protocol):
    """One Envoy connection. Envoy does not pipeline authorization requests, but the loop handles
    several complete requests in one read anyway."""

    def __init__(self, policies: PolicySet):
        self.policies = policies
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            request = self._next_request()
            if request is None:
                return
            if self.policies.blocking:
                self.transport.pause_reading()
                asyncio.get_running_loop().create_task(self._answer_off_loop(*request))
                return
            self.transport.write(self._answer(*request))

    def _next_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _MAX_HEAD:
                self._fail(431, "request head too large")
            return None
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            self._fail(400, "malformed request line")
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        if "chunked" in headers.get("transfer-encoding", ""):
            self._fail(400, "chunked authorization requests are not supported")
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400, "malformed content-length")
            return None
        if not 0 <= length <= _MAX_BODY:
            self._fail(413, "request body too large")
            return None
        total = end + 4 + length
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[end + 4:total])
        del self.buffer[:total]
        return method, target, headers, body

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        endpoint, path = split_target(target)
        decision = self.policies.check_request(endpoint, method=method, path=path, headers=headers, body=body)
        if not decision.allowed:
            log.info("denied %s %s on %s: %s", method, path, endpoint, decision.reason)
        return encode_decision(decision, reusable=self.policies.cache_of(endpoint) is not None)

    async def _answer_off_loop(self, *request) -> None:
        answer = await asyncio.get_running_loop().run_in_executor(None, self._answer, *request)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.resume_reading()
            self.data_received(b"")

    def _fail(self, status: int, reason: str) -> None:
        assert self.transport is not None
        self.transport.write(encode_decision(Decision.deny(f"denied: {reason}", status)))
        self.transport.close()
        self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve_socket(sock: socket.socket, policies: PolicySet, ready_file: str | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: AuthzProtocol(policies), sock=sock, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_file:
        write_ready_file(ready_file, sock.getsockname()[1], pid=os.getpid())
    async with server:
        await stop.wait()


def _run(sock: socket.socket, policies: PolicySet, ready_file: str | None) -> None:
    uvloop.run(serve_socket(sock, policies, ready_file))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ccr-proxy-authz", description="The proxy's ext_authz server.")
    parser.add_argument("--config", required=True, help="policy configuration (JSON) written by the proxy sidecar")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the listening socket")
    parser.add_argument("--ready-file", help="written with {port, pid} once every worker accepts requests")
    parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        # Load (and so check) the policies before forking anything: a bad policy fails here, once.
        policies = PolicySet(PolicyConfig.read(args.config))
        if args.listen_fd is not None:
            _run(socket.socket(fileno=args.listen_fd), policies, args.ready_file)
            return 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((args.host, args.port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        sock.listen(1024)
        sock.set_inheritable(True)
        workers = []
        run_dir = Path(args.ready_file).parent if args.ready_file else Path(args.config).parent
        for i in range(1, max(1, args.workers)):
            ready = run_dir / f"authz-worker-{os.getpid()}-{i}.ready"
            ready.unlink(missing_ok=True)
            workers.append(ManagedProcess(
                f"authz-worker-{i}",
                [sys.executable, "-m", "sidecars.proxy.authz", "--config", args.config,
                 "--listen-fd", str(sock.fileno()), "--ready-file", str(ready)],
                ready=file_exists(ready), ready_timeout=30, pass_fds=[sock.fileno()],
                preexec_fn=die_with_parent(signal.SIGKILL), log_path=run_dir / f"authz-worker-{i}.log").start())
        try:
            _run(sock, policies, args.ready_file)
        finally:
            for worker in workers:
                worker.stop()
    except CcrError as exc:
        print(f"ccr-proxy-authz: error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
