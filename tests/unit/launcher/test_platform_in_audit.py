"""A room on the mock or the simulator says so in every audit event the launcher writes, and in its /status:
the platform kind comes from skr's /status as the launcher waits for the sidecars."""

from __future__ import annotations

from types import SimpleNamespace

import httpx

from sidecars.common.room import Placement, Room
from sidecars.launcher.service import Launcher
from sidecars.room.registry import REGISTRY
from sidecars.spec import load_spec
from tests.unit.renderings.conftest import VARIABLES


def test_every_launcher_audit_names_the_platform(repo, tmp_path):
    spec = load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=VARIABLES)
    placement = Placement(run_dir=tmp_path)
    placement.ensure_sidecar_token()
    launcher = Launcher(REGISTRY.get("launcher").configure(Room(spec, placement, REGISTRY.layout())))
    recorded: list[dict] = []
    launcher.gov = SimpleNamespace(audit=recorded.append)
    launcher._audit({"step": "launch"})
    assert recorded[-1] == {"step": "launch", "platform": "unknown"}  # never silently taken for hardware
    launcher._note_platform(httpx.Response(200, json={"message": "STATUS OK", "platform": "simulated"}))
    launcher._audit({"step": "exit", "exit_code": 0})
    assert recorded[-1] == {"step": "exit", "exit_code": 0, "platform": "simulated"}
    assert launcher.state.as_json()["platform"] == "simulated"
    # a status that is not skr's JSON changes nothing
    launcher._note_platform(httpx.Response(200, text="ok"))
    assert launcher.state.platform == "simulated"
