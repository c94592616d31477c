"""A fork server: one Python process that imports the room's modules once and forks a process for each
`python -m MODULE ARGS` it is asked to start.

Why: `ccr room up` starts a dozen Python processes (eight sidecars, one mount process per volume) and each
used to spend about half a second of CPU importing the same modules (FastAPI, pydantic, cryptography, the
Azure SDKs, OpenTelemetry). On a two-core machine that, not the work, was most of the room's start-up.
Forked from a process that has imported them already, a sidecar starts in milliseconds.

A forked child gets what `python -m MODULE ARGS` started by `ManagedProcess` would have had: a session of
its own before its pid is known (so `stop_process_group` stops it, even at once), the network namespace
of the one who asked (passed as a descriptor with the request, so a child never lands in the server's
namespace by default), the given environment, working directory and log file (stdout and stderr), stdin
from /dev/null, and `MODULE` run as `__main__` ending as an interpreter exits (non-daemon threads joined,
atexit handlers run, stdio flushed, the exit code of its SystemExit or 1 after an uncaught exception's
traceback), but without tearing down the objects it inherited: as multiprocessing ends its forked
children, with os._exit. Tearing down the server's whole heap took a child 0.25 s (0.8 s on the loaded
machine) after its work was done, and two such exits are on the room's way to the app (the firewall init
container and the launcher's firewall check). Its /proc/PID/comm is `ccr-NAME`; its command line stays the server's.

The server only imports and forks: it never opens a network connection, it forks only while it has one
thread (imports happen between requests, one module at a time, so a request is served even while it is
still preloading), it reaps its children at once and keeps their exit codes for `poll`. Its socket is a
root-only file. A request may name the preloaded module its child will import (`imports`): the server first
imports the preload list up to it, so children forked early never each import what the server was about to
import once for all (on a loaded two-core machine, four sidecars importing side by side took three times
as long as the server importing once).

Protocol: one JSON object per line over a Unix stream socket, the netns descriptor attached (SCM_RIGHTS):
  {"op": "spawn", "name", "module", "args", "env", "cwd", "log", "imports"?}  →  {"pid": N} | {"error": "..."}
  {"op": "poll", "pid": N}                                           →  {"returncode": N | null}
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import importlib
import importlib.util
import json
import os
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .errors import ProcessError
from .process import _start_time

#: How a process asks a fork server of its own room to start its children (e.g. the volumes sidecar's
#: mount processes): the server's socket path. Set by `ccr room up` in the environment of the sidecars.
ENV_VAR = "CCR_FORK_SERVER"
CLONE_NEWNET = 0x40000000
PR_SET_NAME = 15
#: The exit code reported for a child whose server is gone (its real code went to whoever reaped it).
UNKNOWN_EXIT = 255
_MAX_REQUEST = 1 << 20
#: how long preloading pauses after a spawn, for the requests that usually follow
SPAWN_PAUSE_S = 0.03


@dataclass
class SpawnRequest:
    name: str
    module: str
    args: list[str]
    env: dict[str, str]
    cwd: str | None
    log: str
    netns_fd: int
    #: a preloaded module the child will import: the server imports the preload list up to it first
    imports: str | None = None


class _Connection:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.fds: list[int] = []


class ForkServer:
    """The server side: `serve()` returns only in a forked child, with the request it is to run."""

    def __init__(self, path: Path, preload: Sequence[str]):
        self.path = path
        self.preload = list(preload)
        self.owner = os.getpid()
        #: every child forked, with its exit code once it has been reaped
        self.children: dict[int, int | None] = {}
        self.last_spawn = 0.0
        self.selector = selectors.DefaultSelector()
        self.connections: dict[socket.socket, _Connection] = {}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket file is created 0600: only root may ask for a process
        try:
            self.listener.bind(str(path))
        finally:
            os.umask(old_umask)
        self.listener.listen(16)
        self.selector.register(self.listener, selectors.EVENT_READ)
        signal.signal(signal.SIGCHLD, self._reap)

    def _reap(self, _signum=None, _frame=None) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children[pid] = os.waitstatus_to_exitcode(status)

    def serve(self) -> SpawnRequest:
        while True:
            # Right after a spawn, more requests usually follow (a wave of sidecars): wait for them a moment
            # rather than start an import they would have to wait for.
            pause = self.last_spawn + SPAWN_PAUSE_S - time.monotonic()
            events = self.selector.select(max(0.0, pause) if self.preload else None)
            for key, _mask in events:
                if key.fileobj is self.listener:
                    sock, _ = self.listener.accept()
                    self.connections[sock] = _Connection(sock)
                    self.selector.register(sock, selectors.EVENT_READ)
                    continue
                request = self._receive(self.connections[key.fileobj])
                if request is not None:
                    return request
            if not events and self.preload and time.monotonic() >= self.last_spawn + SPAWN_PAUSE_S:
                self._preload_one()

    def _preload_through(self, module: str | None) -> None:
        if module in self.preload:
            while self.preload and self.preload[0] != module:
                self._preload_one()
            self._preload_one()

    def _preload_one(self) -> None:
        module = self.preload.pop(0)
        try:
            importlib.import_module(module)
        except Exception as exc:  # a module that does not import here is imported (or fails) in the child
            print(f"forkserver: preloading {module}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def _receive(self, conn: _Connection) -> SpawnRequest | None:
        """Read what arrived; answer each complete request. Returns a request only in a forked child."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn.sock, 65536, 4)
        except OSError:
            data, fds = b"", []
        conn.fds += fds
        if not data or len(conn.buffer) + len(data) > _MAX_REQUEST:
            self._drop(conn)
            return None
        conn.buffer += data
        while b"\n" in conn.buffer:
            line, conn.buffer = conn.buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
                if message.get("op") == "poll":
                    answer = {"returncode": self._returncode(int(message["pid"]))}
                elif message.get("op") == "spawn":
                    if len(conn.fds) != 1:
                        raise ValueError("a spawn request carries exactly one network namespace descriptor")
                    request = SpawnRequest(str(message["name"]), str(message["module"]),
                                           [str(a) for a in message["args"]],
                                           {str(k): str(v) for k, v in message["env"].items()},
                                           message.get("cwd"), str(message["log"]), conn.fds.pop(),
                                           message.get("imports") and str(message["imports"]))
                    self._preload_through(request.imports)
                    pid = self._fork()
                    if pid == 0:
                        return request
                    os.close(request.netns_fd)
                    self.last_spawn = time.monotonic()
                    answer = {"pid": pid}
                else:
                    raise ValueError(f"unknown op {message.get('op')!r}")
            except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            for fd in conn.fds:
                os.close(fd)
            conn.fds.clear()
            try:
                conn.sock.sendall(json.dumps(answer).encode() + b"\n")
            except OSError:
                self._drop(conn)
                return None
        return None

    def _returncode(self, pid: int) -> int | None:
        self._reap()
        if pid not in self.children:
            raise ValueError(f"pid {pid} is not a child of this fork server")
        return self.children[pid]

    def _fork(self) -> int:
        """Fork; the pid is answered only once the child leads its own session, as `Popen` returns only
        after its child did (so a stop right after the start reaches it). SIGCHLD waits meanwhile, so that a
        child that ends at once is reaped only after it is registered (never "running" for ever)."""
        sys.stdout.flush()
        sys.stderr.flush()
        started_r, started_w = os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.setsid()
                self.close()
                os.close(started_r)
                os.close(started_w)
                return 0
            self.children[pid] = None  # (a recycled pid: the code kept was an earlier child's)
            os.close(started_w)
            os.read(started_r, 1)  # end of file: the child closed its end (or died)
            os.close(started_r)
            return pid
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})

    def _drop(self, conn: _Connection) -> None:
        self.selector.unregister(conn.sock)
        del self.connections[conn.sock]
        for fd in conn.fds:
            os.close(fd)
        conn.sock.close()

    def close(self) -> None:
        """Close the server's descriptors; the server process (not a child) also removes its socket file."""
        for conn in list(self.connections.values()):
            conn.sock.close()
        self.connections.clear()
        self.selector.close()
        self.listener.close()
        if os.getpid() == self.owner:
            self.path.unlink(missing_ok=True)


def _become(request: SpawnRequest) -> NoReturn:
    """In the forked child: turn into `python -m MODULE ARGS` as the request describes, run it and exit."""
    try:
        log = os.open(request.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
        libc = ctypes.CDLL(None, use_errno=True)  # the C library this interpreter is linked with
        if libc.setns(request.netns_fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"cannot enter the network namespace: "
                                              f"{os.strerror(ctypes.get_errno())}")
        os.close(request.netns_fd)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(f"ccr-{request.name}"[:15].encode()), 0, 0, 0)
        if request.cwd:
            os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update(request.env)
        sys.argv = [request.module, *request.args]
        try:
            found = importlib.util.find_spec(request.module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:  # as `python -m` says it
            print(f"{sys.executable}: No module named {request.module}", file=sys.stderr, flush=True)
            os._exit(1)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(127)
    _exit_as_the_interpreter_does(lambda: runpy.run_module(request.module, run_name="__main__", alter_sys=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecars.common.forkserver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", required=True, type=Path, help="the Unix socket to listen on (created 0600)")
    parser.add_argument("--preload", action="append", default=[], metavar="MODULE",
                        help="a module to import before (or between) requests, in order (repeatable)")
    args = parser.parse_args(argv)
    server = ForkServer(args.socket, args.preload)

    def stop(_signum, _frame) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        request = server.serve()  # returns only in a forked child
    except BaseException:
        server.close()
        raise
    _become(request)


def _exit_as_the_interpreter_does(run: Callable[[], object]) -> NoReturn:
    """Run the child's module, then end the process as Py_FinalizeEx would up to its teardown of objects."""
    try:
        run()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()  # what the interpreter calls at exit: joins non-daemon threads, stops executors
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


class ForkServerClient:
    """Asks a fork server for processes; one connection, shared by threads (requests are serialized)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._sock: socket.socket | None = None
        self._file = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ForkServerClient | None:
        path = (os.environ if environ is None else environ).get(ENV_VAR)
        return cls(path) if path else None

    def _request(self, message: dict, fds: Sequence[int] = ()) -> dict:
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self._sock.connect(str(self.path))
                    self._file = self._sock.makefile("rb")
                socket.send_fds(self._sock, [json.dumps(message).encode() + b"\n"], list(fds))
                line = self._file.readline()
            except OSError as exc:
                self._close()
                raise ProcessError(f"fork server {self.path}: {exc.strerror or exc}") from None
            if not line:
                self._close()
                raise ProcessError(f"fork server {self.path} closed the connection")
        answer = json.loads(line)
        if "error" in answer:
            raise ProcessError(f"fork server {self.path}: {answer['error']}")
        return answer

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def close(self) -> None:
        with self._lock:
            self._close()

    def spawn(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log_path: str | Path,
              cwd: str | Path | None = None, netns: str | Path = "/proc/thread-self/ns/net",
              imports: str | None = None) -> ForkedProcess:
        """Start `argv` (`[sys.executable, "-m", MODULE, *ARGS]`) forked from the server, in network namespace
        `netns` (default: the caller's own) and directory `cwd` (default: the caller's own), once the server
        has imported its preload list up to `imports` (a module the child needs) if that is in it."""
        if len(argv) < 3 or argv[0] != sys.executable or argv[1] != "-m":
            raise ProcessError(f"{name}: a fork server starts only `{sys.executable} -m MODULE ...`, not {argv[:3]}")
        fd = os.open(netns, os.O_RDONLY)
        try:
            answer = self._request({"op": "spawn", "name": name, "module": argv[2], "args": list(argv[3:]),
                                    "env": dict(env), "cwd": os.path.abspath(cwd or os.getcwd()),
                                    "log": os.path.abspath(log_path), "imports": imports}, [fd])
        finally:
            os.close(fd)
        return ForkedProcess(self, int(answer["pid"]))

    def returncode(self, pid: int) -> int | None:
        return self._request({"op": "poll", "pid": pid})["returncode"]


class ForkedProcess:
    """A fork server's child seen like a `subprocess.Popen` (pid, returncode, poll, wait)."""

    def __init__(self, client: ForkServerClient, pid: int):
        self.client = client
        self.pid = pid
        self.returncode: int | None = None
        self._start_time = _start_time(pid)

    def poll(self) -> int | None:
        if self.returncode is None and not self._alive():
            try:  # it ended: the server reaped it and has its exit code
                self.returncode = self.client.returncode(self.pid)
            except ProcessError:  # the server is gone (the room is being stopped)
                self.returncode = UNKNOWN_EXIT
        return self.returncode

    def _alive(self) -> bool:
        """Running, by /proc alone: asking the server would wait for the import it is busy with."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return fields[0] not in ("Z", "X") and int(fields[19]) == self._start_time

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.01)
        return self.returncode


if __name__ == "__main__":
    sys.exit(main())
