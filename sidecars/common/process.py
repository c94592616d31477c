"""The one process supervisor: start an external process, wait until it is ready, capture its output,
stop it by PID.

Used for Envoy, Azurite, podman, the stand-ins and the sidecars alike, by the product and by the tests.
Readiness is a predicate polled until a timeout (never a fixed sleep); if the process dies first, the
error carries the end of its output. Output goes to a log file so that a detached process (started by
`ccr emulators start`, stopped later by `ccr emulators stop`) keeps its log. A process is stopped by
signalling its own process group (it was started in a new session), and a PID read back from a file is
only signalled if its start time still matches, so a recycled PID is never killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ProcessError

if TYPE_CHECKING:
    from .forkserver import ForkedProcess, ForkServerClient

ReadinessCheck = Callable[[], bool]
#: how long `wait_until` polls at its first interval before it backs off
FAST_POLL_S = 5.0


def port_open(host: str, port: int) -> ReadinessCheck:
    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def http_ok(url: str, *, ca_file: str | None = None) -> ReadinessCheck:
    """Ready when `url` answers with any status below 500 (a 401 from a guarded endpoint counts)."""
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as resp:
                return resp.status < 500
        except urllib.error.HTTPError as err:
            return err.code < 500
        except (OSError, ValueError):
            return False

    return check


def file_exists(path: str | Path) -> ReadinessCheck:
    return lambda: Path(path).exists()


def write_ready_file(path: str | Path, port: int, url: str | None = None, **extra: object) -> None:
    """Tell a supervisor a service listens: `{"port", "url", ...}` written atomically (readers poll for the
    file, so they never see it half written)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"port": port, **({"url": url} if url else {}), **extra}))
    tmp.replace(path)


def wait_until(check: ReadinessCheck, timeout: float, what: str, *, interval: float = 0.02) -> None:
    """Poll `check` every `interval` for the first seconds (a start-up wait is short, and a late look costs
    the whole start-up that much), then less and less often, up to every 0.25 s."""
    started = time.monotonic()
    while not check():
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise ProcessError(f"{what} was not ready after {timeout:g} s")
        time.sleep(interval)
        if elapsed > FAST_POLL_S:
            interval = min(interval * 1.5, 0.25)


@dataclass(frozen=True)
class ProcessRecord:
    """Enough to find a detached process again and to be sure it is still the same process."""

    name: str
    pid: int
    start_time: int
    log_path: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProcessRecord:
        return cls(**json.loads(text))


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: start time in clock ticks since boot; None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing paren.
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_running(record: ProcessRecord) -> bool:
    return _start_time(record.pid) == record.start_time


def stop_process_group(pid: int, timeout: float = 5.0) -> int | None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `timeout`. Returns the
    leader's exit code (negative: the signal) when it was our child and reaped here, else None."""
    start = _start_time(pid)
    if start is None:
        return None
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return None
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: poll /proc instead
                if _start_time(pid) != start:
                    return None
            else:
                if done == pid:
                    return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
    return None


def stop_recorded(record: ProcessRecord, timeout: float = 5.0) -> bool:
    """Stop a detached process found through its record. False if it was no longer running."""
    if not is_running(record):
        return False
    stop_process_group(record.pid, timeout)
    return True


class ManagedProcess:
    """An external process with a readiness check, captured output and a clean stop.

    Use as a context manager (`with ManagedProcess(...) as proc:`) or call `start()` / `stop()`.

    With a `fork_server` (sidecars.common.forkserver), `argv` must be `[sys.executable, "-m", MODULE, ...]`
    and the process is forked from that server instead of executed: the same process, without paying
    Python's imports again. It joins network namespace `netns` (a path such as /run/netns/NAME; default:
    the caller's own), forked once the server has imported `imports` (a module of its preload list).
    """

    def __init__(self, name: str, argv: Sequence[str], *, ready: ReadinessCheck | None = None,
                 ready_timeout: float = 30.0, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None, log_path: str | Path | None = None,
                 stop_timeout: float = 5.0, preexec_fn: Callable[[], None] | None = None,
                 pass_fds: Sequence[int] = (), fork_server: ForkServerClient | None = None,
                 netns: str | Path | None = None, imports: str | None = None):
        if fork_server is None and netns is not None:
            raise ProcessError(f"{name}: a network namespace is chosen only for a process from a fork server")
        if fork_server is not None and (preexec_fn is not None or pass_fds):
            raise ProcessError(f"{name}: a process from a fork server takes no preexec_fn or pass_fds")
        self.name = name
        self.argv = [str(a) for a in argv]
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.env = dict(os.environ if env is None else env)
        self.cwd = str(cwd) if cwd else None
        self.stop_timeout = stop_timeout
        self.preexec_fn = preexec_fn
        self.pass_fds = tuple(pass_fds)
        self.fork_server = fork_server
        self.netns = netns
        self.imports = imports
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"ccr-{name}-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.popen: subprocess.Popen | ForkedProcess | None = None

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise ProcessError(f"{self.name} was not started")
        return self.popen.pid

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.fork_server is not None:
            self.popen = self.fork_server.spawn(self.name, self.argv, env=self.env, cwd=self.cwd,
                                                log_path=self.log_path, imports=self.imports,
                                                **({"netns": self.netns} if self.netns else {}))
        else:
            with open(self.log_path, "ab") as log:
                try:
                    self.popen = subprocess.Popen(
                        self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        env=self.env, cwd=self.cwd, start_new_session=True, preexec_fn=self.preexec_fn,
                        pass_fds=self.pass_fds,
                    )
                except OSError as exc:
                    raise ProcessError(f"cannot start {self.name} ({self.argv[0]}): {exc.strerror}") from exc
        if self.ready is not None:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        assert self.ready is not None
        ready = self.ready

        def check() -> bool:
            if self.popen is not None and self.popen.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited with code {self.popen.returncode} before it was ready; "
                    f"its last output:\n{self.output_tail()}")
            return ready()

        try:
            wait_until(check, self.ready_timeout, self.name)
        except ProcessError as exc:
            if self.running():
                self.stop()
                exc.message += f"; its last output:\n{self.output_tail()}"
                exc.args = (exc.message,)
            raise

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def record(self) -> ProcessRecord:
        start = _start_time(self.pid)
        if start is None:
            raise ProcessError(f"{self.name} (pid {self.pid}) is not running")
        return ProcessRecord(self.name, self.pid, start, str(self.log_path))

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def output_tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self) -> int | None:
        """Stop the process (and its group); returns its exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            code = stop_process_group(self.popen.pid, self.stop_timeout)
            if code is not None:
                # Reaped above, so Popen can no longer learn the status (it would say 0): keep the real one.
                self.popen.returncode = code
        try:
            return self.popen.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> ManagedProcess:
        if self.popen is None:
            self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()
