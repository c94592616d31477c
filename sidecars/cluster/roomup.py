"""`ccr room up SPEC` of a spec with a `cluster` section, and `ccr room down` of the run directory it used.

`up` starts the cluster's keeper (keeper.py) detached, prints each line of its progress as it comes, and
returns once the keeper says the cluster is up; if the keeper fails (governance unreachable, an executor
refused), it waits until the keeper took every room down and ends with the keeper's one-line error. `down`
stops the keeper (SIGTERM: it takes its rooms down), then removes whatever is still there by name, as
`ccr cluster down` does: every process in the rooms' namespaces, the namespaces, the rooms' folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..common.errors import CcrError, ConfigError, ProcessError
from ..common.untrusted import UntrustedInputError, load_json, read_bounded
from ..localroom.up import UpOptions
from ..spec import endpoint_variables, load_spec
from .commands import checked_name, remove_cluster
from .keeper import LOG_FILE, REQUEST_FILE, ROOMS_DIR, STATE_FILE
from .rooms import ClusterRooms

#: the cluster's start as a whole (network, driver, every executor's attestation and worker); generous on a
#: loaded machine, and only a bound: a failing step ends `up` at once
UP_TIMEOUT_S = 900.0
#: the keeper's own teardown (every room's processes, then the namespaces)
STOP_TIMEOUT_S = 120.0


def is_cluster_run_dir(run_dir: Path) -> bool:
    return (run_dir / STATE_FILE).is_file()


def _keeper_state(run_dir: Path) -> dict:
    try:
        state = load_json(read_bounded(run_dir / STATE_FILE))
    except (OSError, UntrustedInputError):
        return {}
    return state if isinstance(state, dict) else {}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def up(options: UpOptions, name: str, out: Callable[[str], None] = print) -> int:
    """Bring up cluster `name` (the spec's name) from `options` and return once it is up."""
    if options.wait_for_job:
        raise ConfigError("--wait is for a job room: a cluster stays up until `ccr room down`")
    name = checked_name(name)
    run_dir = options.run_dir.resolve()
    previous = _keeper_state(run_dir)
    if isinstance(previous.get("pid"), int) and _alive(previous["pid"]):
        raise ConfigError(f"cluster {previous.get('name')} is already running from {options.run_dir} "
                          f"(ccr room down --run-dir {options.run_dir})")
    # the spec's own problems, here as for any room (the keeper loads it again, from the same files)
    spec = load_spec(options.spec_path, variables={**endpoint_variables(options.endpoints_file), **options.variables})
    if spec.name != name:
        raise ConfigError(f"{options.spec_path}: the spec's name is {spec.name!r} once its variables are set")
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    request = {"name": name, "spec_path": str(options.spec_path.resolve()),
               "endpoints_file": str(options.endpoints_file.resolve()), "variables": options.variables}
    fd = os.open(run_dir / REQUEST_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as request_file:
        json.dump(request, request_file)
    log = run_dir / LOG_FILE
    with open(log, "wb") as keeper_out:
        keeper = subprocess.Popen([sys.executable, "-m", "sidecars.cluster.keeper", str(run_dir)],
                                  stdin=subprocess.DEVNULL, stdout=keeper_out, stderr=subprocess.STDOUT,
                                  cwd=Path(__file__).resolve().parents[2], start_new_session=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out(f"cluster {name}: coming up (keeper pid {keeper.pid}, log {log})")
    try:
        state = _follow(keeper, run_dir, log, out)
    except BaseException:  # Ctrl-C or SIGTERM of `up` itself: the keeper takes its rooms down first
        _stop_keeper(keeper)
        remove_cluster(name, run_dir / ROOMS_DIR)
        (run_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    if state.get("state") == "up":
        out(f"cluster {name} is up (ccr room down --run-dir {options.run_dir} takes it down)")
        return 0
    _stop_keeper(keeper)
    leftovers = remove_cluster(name, run_dir / ROOMS_DIR)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    (run_dir / REQUEST_FILE).unlink(missing_ok=True)
    if state.get("state") == "failed":
        reason = state.get("error")
    elif keeper.returncode is None:
        reason = f"not up within {UP_TIMEOUT_S:.0f} s"
    else:
        reason = f"its keeper ended (exit {keeper.returncode}); see {log}"
    raise ProcessError(f"cluster {name} did not come up: {reason}"
                       + (f" (also removed: {', '.join(leftovers)})" if leftovers else ""))


def _follow(keeper: subprocess.Popen, run_dir: Path, log: Path, out: Callable[[str], None]) -> dict:
    """Print the keeper's progress lines as they come; its record once it is up, ended (a failed keeper
    takes its rooms down, then ends) or too slow."""
    pending = b""
    deadline = time.monotonic() + UP_TIMEOUT_S
    with open(log, "rb") as progress:
        while True:
            ended = keeper.poll() is not None  # before the last read: its last lines are shown too
            *lines, pending = (pending + progress.read()).split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                if text and not text.startswith((" ", "\t", "Traceback")):  # its steps, not a library's trace
                    out(f"  {text[:300]}")
            state = _keeper_state(run_dir)
            if state.get("state") == "up" or ended or time.monotonic() > deadline:
                return state
            time.sleep(0.3)


def _stop_keeper(keeper: subprocess.Popen) -> None:
    """SIGTERM (it takes its rooms down), and wait for its teardown."""
    if keeper.poll() is None:
        keeper.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        keeper.wait(timeout=STOP_TIMEOUT_S)


def down(run_dir: Path, out: Callable[[str], None] = print) -> int:
    """Stop the keeper (it takes its rooms down), then remove what is still there of the cluster's rooms."""
    run_dir = run_dir.resolve()
    state = _keeper_state(run_dir)
    name = state.get("name")
    if not isinstance(name, str):
        raise CcrError(f"{run_dir / STATE_FILE} names no cluster (remove it by name: ccr cluster down NAME)")
    name = checked_name(name)
    # the keeper first (it takes its rooms down), then the driver's skr, which only a killed keeper leaves
    for what, pid in (("keeper", state.get("pid")), ("driver skr", state.get("skr_pid"))):
        if isinstance(pid, int) and _alive(pid) and _runs_from(pid, run_dir):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            out(f"stopped the {what} of cluster {name} (pid {pid})")
    leftovers = remove_cluster(name, run_dir / ROOMS_DIR)
    if leftovers:
        out(f"removed what was left: {', '.join(leftovers)}")
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    out(f"cluster {name} is down")
    return 0


def _runs_from(pid: int, run_dir: Path) -> bool:
    """The pid is still a process of this run directory (its command line names it), not a process that
    reused the number."""
    with contextlib.suppress(OSError):
        return str(run_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def running_cluster(run_dir: Path) -> ClusterRooms:
    """The rooms of the cluster `ccr room up` runs from `run_dir`, to start a driver application in its driver
    room (`ClusterRooms.start_driver`, with the room's secret from its own 0600 properties file) or add a room."""
    state = _keeper_state(run_dir.resolve())
    if state.get("state") != "up" or not isinstance(state.get("rooms"), list):
        raise CcrError(f"no cluster is up from {run_dir}")
    rooms = ClusterRooms(checked_name(str(state["name"])), len(state["rooms"]) - 1, run_dir.resolve() / ROOMS_DIR)
    properties = (rooms.room_dir(rooms.net.driver) / "master.properties").read_text()
    secret = [line.split()[1] for line in properties.splitlines() if line.startswith("spark.authenticate.secret ")]
    rooms.secret = bytes.fromhex(secret[0]) if secret else None
    return rooms
