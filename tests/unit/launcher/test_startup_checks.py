"""The launcher's checks before the launch run side by side, yet the app starts only when every one passed, and
a failure is named as the first failing check in the order consent, firewall, policy."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from sidecars.common.errors import Conflict
from sidecars.common.firewall_client import FirewallNotInForce
from sidecars.common.room import Placement, Room
from sidecars.launcher.service import Launcher
from sidecars.room.registry import REGISTRY
from sidecars.spec import load_spec
from tests.unit.renderings.conftest import VARIABLES


class ConsentDenied(Conflict):
    code = "ConsentDenied"


def _launcher(repo, tmp_path, *, consent: bool, firewall: bool) -> tuple[Launcher, list[str]]:
    spec = load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=VARIABLES)
    placement = Placement(run_dir=tmp_path)
    placement.ensure_sidecar_token()
    launcher = Launcher(REGISTRY.get("launcher").configure(Room(spec, placement, REGISTRY.layout())))
    ran: list[str] = []

    def require_consent(option: str) -> None:
        ran.append("consent")
        if not consent:
            raise ConsentDenied(f"{option} consent is disabled")

    async def verify_firewall() -> None:
        await asyncio.sleep(0.05)  # slower than the others: they all run before any verdict is read
        ran.append("firewall")
        if not firewall:
            raise FirewallNotInForce(["rule out-drop is missing"])

    async def check_policy() -> None:
        ran.append("policy")

    async def launch() -> None:
        ran.append("launch")

    async def no_wait() -> None:
        return None

    launcher.gov = SimpleNamespace(require_consent=require_consent)
    launcher._wait_for_sidecars, launcher._verify_firewall = no_wait, verify_firewall
    launcher._check_policy, launcher._launch = check_policy, launch
    return launcher, ran


@pytest.mark.parametrize("consent, firewall, named", [
    (False, False, "execution-consent: execution consent is disabled"),
    (True, False, "firewall-verify: the firewall rules in force differ from the spec: rule out-drop is missing"),
    (False, True, "execution-consent: execution consent is disabled"),
])
def test_no_launch_unless_every_check_passed_and_the_first_failure_is_named(repo, tmp_path, consent, firewall,
                                                                             named):
    launcher, ran = _launcher(repo, tmp_path, consent=consent, firewall=firewall)
    asyncio.run(launcher.prepare())
    assert "launch" not in ran and sorted(ran) == ["consent", "firewall", "policy"]
    assert launcher.state.phase == "failed" and launcher.state.error == named


def test_the_app_launches_once_every_check_passed(repo, tmp_path):
    launcher, ran = _launcher(repo, tmp_path, consent=True, firewall=True)
    asyncio.run(launcher.prepare())
    assert ran[-1] == "launch" and sorted(ran[:-1]) == ["consent", "firewall", "policy"]
    done = [step["step"] for step in launcher.state.steps if step["ok"]]
    assert done[0] == "wait-for-sidecars" and sorted(done[1:]) == [
        "container-policy", "execution-consent", "firewall-verify"]
