"""How another sidecar (the launcher) checks the firewall's rules: `verify_firewall` runs the firewall's own
check (`python -m sidecars.firewall verify`, same image) as a subprocess in its network namespace, which reads
the rules from the kernel (the firewall is an init container: no process is left to ask). In `ccr room up` the
room's fork server starts it (its modules are imported already: a fresh interpreter spent half a second
importing them, on the way to the app's launch). `VerifyReport` and `FirewallNotInForce` are its answers,
shared by the firewall and its callers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Conflict, ProcessError
from .forkserver import ForkServerClient

#: the firewall's check of the rules in force, run in the caller's network namespace (a sidecar never imports
#: another sidecar: it runs it)
VERIFY_ARGV: tuple[str, ...] = (sys.executable, "-m", "sidecars.firewall", "verify")
VERIFY_TIMEOUT_S = 60.0


class FirewallNotInForce(Conflict):
    """The rules in force are not the rules the spec demands (HTTP 409)."""

    code = "FirewallNotInForce"

    def __init__(self, differences: list[str]):
        self.differences = differences
        super().__init__("the firewall rules in force differ from the spec: " + "; ".join(differences))


@dataclass(frozen=True)
class VerifyReport:
    backend: str
    netns: str | None
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict:
        return {"ok": self.ok, "backend": self.backend, "netns": self.netns, "differences": self.differences}


def verify_firewall(room_environment: Mapping[str, str], argv: Sequence[str] = VERIFY_ARGV,
                    timeout: float = VERIFY_TIMEOUT_S, fork_server: ForkServerClient | None = None) -> VerifyReport:
    """Run the firewall's check with the room's environment (CCR_SPEC and the placement), forked from
    `fork_server` when there is one; returns its report when the rules in force are the room's, else raises
    FirewallNotInForce naming each difference (or ProcessError when the check itself could not run)."""
    env = {**os.environ, **room_environment}
    try:
        if fork_server is not None:
            returncode, stdout, stderr = _run_forked(fork_server, argv, env, timeout)
        else:
            result = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
            returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProcessError(f"the firewall check ({' '.join(argv)}) did not run: {exc}") from None
    body = _last_json_line(stdout)
    if returncode == 0 and body is not None and body.get("ok") is True:
        return VerifyReport(str(body.get("backend")), body.get("netns"), [])
    if returncode == 1 and body is not None and body.get("differences"):
        raise FirewallNotInForce([str(d) for d in body["differences"]])
    reason = (stderr.strip().splitlines() or [f"exit code {returncode}"])[-1]
    raise ProcessError(f"the firewall check failed: {reason[:400]}")


def _run_forked(fork_server: ForkServerClient, argv: Sequence[str], env: Mapping[str, str],
                timeout: float) -> tuple[int, str, str]:
    """The check forked in the caller's network namespace: its exit code, and its output (a forked child has
    one log for both streams: the report is its last JSON line, a failure's reason its last line)."""
    with tempfile.TemporaryDirectory(prefix="ccr-firewall-verify-") as folder:
        log = Path(folder) / "verify.log"
        child = fork_server.spawn("firewall-verify", argv, env=env, log_path=log)
        try:
            returncode = child.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
            raise
        output = log.read_text(errors="replace") if log.exists() else ""
    return returncode, output, output


def _last_json_line(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None
