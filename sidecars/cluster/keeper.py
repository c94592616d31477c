"""The process that holds a cluster brought up by `ccr room up` (`python -m sidecars.cluster.keeper RUN_DIR`).

`ccr room up SPEC` of a spec with a `cluster` section starts this process detached and returns once it says
the cluster is up: the driver room's admission service is a thread of this process (its socket in the
driver room's netns, its CGS client in this one's), so it lives as long as the cluster. It brings up the
driver room's skr sidecar (mock platform: its attestation to CGS), then `ClusterRooms.up`; every step is one
line on its stdout (RUN_DIR/cluster.log), the outcome is RUN_DIR/cluster.json. SIGTERM (`ccr room down`)
takes every room down; so does any failure while coming up, before the keeper ends.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from ..attestation.mock import MockPlatform
from ..attestation.verify import Trust
from ..common.errors import CcrError, ConfigError
from ..common.process import ManagedProcess
from ..spec import endpoint_variables, load_spec
from .governance import (
    CgsExecutorPolicy,
    driver_host_data,
    executor_policy_document_id,
    host_data_of,
    spec_sha256,
)
from .localgov import start_driver_skr
from .rooms import ClusterRooms, executor_policy, mock_evidence

#: what `ccr room up` hands the keeper (0600: `--var` values may be secrets)
REQUEST_FILE = "cluster-up.json"
#: the keeper's record: name, pid, state (starting, up, failed), the error, the rooms
STATE_FILE = "cluster.json"
LOG_FILE = "cluster.log"
#: the rooms' own folders (properties files with the shared secret, Spark logs, scratch)
ROOMS_DIR = "rooms"


class _Stop(BaseException):
    """SIGTERM: take the cluster down (a BaseException, so `ClusterRooms.up` cleans up on it too)."""


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def write_state(run_dir: Path, **record: object) -> None:
    """The keeper's record, replaced whole (a reader never sees half of it)."""
    partial = run_dir / f".{STATE_FILE}.tmp"
    partial.write_text(json.dumps(record))
    partial.replace(run_dir / STATE_FILE)


def say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0]).resolve()
    request = json.loads((run_dir / REQUEST_FILE).read_text())
    (run_dir / REQUEST_FILE).unlink()
    signal.signal(signal.SIGTERM, _stop)
    record: dict[str, object] = {"pid": os.getpid(), "state": "starting", "name": request["name"]}
    write_state(run_dir, **record)
    skr: ManagedProcess | None = None
    link: CgsExecutorPolicy | None = None
    rooms: ClusterRooms | None = None
    try:
        endpoints = endpoint_variables(request["endpoints_file"])
        spec = load_spec(request["spec_path"], variables={**endpoints, **request["variables"]})
        if spec.cluster is None:
            raise ConfigError(f"{request['spec_path']}: the spec has no cluster section")
        missing = [key for key in ("cgs_endpoint", "mock_platform_dir") if key not in endpoints]
        if missing:
            raise ConfigError(f"the endpoints file names no {', '.join(missing)} (ccr emulators start writes them)")
        served = spec_sha256(spec)
        platform_dir = Path(endpoints["mock_platform_dir"])
        skr, skr_url = start_driver_skr(run_dir, platform_dir, driver_host_data(served))
        record["skr_pid"] = skr.pid
        write_state(run_dir, **record)
        say(f"driver skr: attests with HOST_DATA {driver_host_data(served)[:16]}… ({skr_url})")
        link = CgsExecutorPolicy(endpoints["cgs_endpoint"], spec.contract.id,
                                 executor_policy_document_id(spec.contract.id), skr_url=skr_url,
                                 ca_bundle=endpoints.get("ca_bundle"))
        platform = MockPlatform.load(platform_dir)
        # each executor room's SNP report: the mock platform's, with the HOST_DATA of what it runs
        executor_host_data = host_data_of(executor_policy(spec.cluster, served))
        rooms = ClusterRooms(spec.name, spec.cluster.executors, run_dir / ROOMS_DIR)
        started = time.monotonic()
        rooms.up(link, Trust.default().trusting_mock_platform(platform_dir),
                 lambda _room: mock_evidence(platform, executor_host_data), progress=say)
        record.update(state="up", master_url=rooms.master_url, admission_url=rooms.admission_url,
                      rooms=[room.netns for room in rooms.net.rooms], network=rooms.net.netns,
                      up_seconds=round(time.monotonic() - started, 1))
        write_state(run_dir, **record)
        say(f"cluster {spec.name} is up: 1 driver room and {len(rooms.net.executors)} executor rooms")
        while True:
            time.sleep(3600)
    except _Stop:
        say("stopping: SIGTERM")
        return 0
    except (CcrError, OSError) as exc:
        error = " ".join(str(exc).split())[:500] or type(exc).__name__
        record.update(state="failed", error=error)
        write_state(run_dir, **record)
        say(f"failed: {error}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the teardown itself is not interrupted
        if rooms is not None:
            deleted = rooms.down()  # a failed `up` already took its rooms down: then nothing is left to delete
            say(f"down: {'deleted ' + ', '.join(deleted) if deleted else 'every room is removed'}")
        if link is not None:
            link.close()
        if skr is not None:
            skr.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
