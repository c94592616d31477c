"""Two rooms of the same spec at once on one machine (different run dirs): started together, nothing of
theirs is shared (netns, host link, app container, fork server, mounts), and each is torn down without
touching the other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sidecars.launcher.podman import Podman
from sidecars.localroom.netns import netns_exists, processes_in

from .conftest import RunningRoom

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_two_rooms_of_one_spec_run_side_by_side_and_stop_independently(start_room):
    with ThreadPoolExecutor(2) as pool:  # at the same moment: the host link index is taken by one of them only
        first, second = pool.map(start_room, ("first", "second"))
    a, b = first.state, second.state
    for key in ("netns", "container", "fork_server", "mount_root", "host_v4", "room_v4"):
        assert a[key] != b[key], f"both rooms have the same {key}: {a[key]}"
    assert first.app_listening() and second.app_listening()

    assert first.down().returncode == 0
    assert not netns_exists(a["netns"]) and not Podman().container_exists(a["container"])
    assert_running(second)
    assert second.down().returncode == 0
    assert not netns_exists(b["netns"]) and not Podman().container_exists(b["container"])


def assert_running(room: RunningRoom) -> None:
    status = room.status()
    # The firewall is an init container: it applied its rules and exited 0 before anything else started.
    expected = {name: "running" for name in status["sidecars"]} | {"firewall": "exited"}
    assert {name: s["process"]["state"] for name, s in status["sidecars"].items()} == expected, status
    assert status["sidecars"]["firewall"]["process"]["exit_code"] == 0, status
    assert status["sidecars"]["launcher"]["status"]["status"] == "running"
    assert status["app_container"]["exists"] and room.app_listening()
    assert processes_in(room.netns), "the room's processes are still in its netns"
