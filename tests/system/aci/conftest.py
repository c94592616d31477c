"""Templates rendered by `ccr spec render arm` against the session's stand-ins, run with `ccr aci run`.

Every group a test starts is deleted afterwards, and the test fails if anything of it is left.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sidecars.aci.group import remaining
from sidecars.aci.state import GroupState
from tests.system.rooms import REPO, ccr


def render_arm(stand_ins: Path, spec: Path, out: Path) -> Path:
    ccr("spec", "render", "arm", str(spec), "--endpoints", str(stand_ins / "endpoints.json"), "-o", str(out))
    return out / "cleanroom-arm-template.json"


def minimal_spec(tmp_path: Path, contract: str) -> Path:
    """The job example without data (what the simulator does does not depend on keys or mounts)."""
    data = yaml.safe_load((REPO / "examples/cleanroomhello-job/spec.yaml").read_text())
    data["name"] = data["contract"]["id"] = contract
    data["datasources"], data["datasinks"] = [], []
    data["application"]["command"] = ["python3", "-c", "print('hello from the simulator')"]
    spec = tmp_path / f"{contract}.yaml"
    spec.write_text(yaml.safe_dump(data))
    ccr("images", "build", "cleanroomhello-job", "--pin", str(spec))
    return spec


def edit_container(template: Path, container: str, change) -> Path:
    data = json.loads(template.read_text())
    properties = data["resources"][0]["properties"]
    for entry in [*properties["initContainers"], *properties["containers"]]:
        if entry["name"] == container:
            change(entry["properties"])
    edited = template.with_name("edited-" + template.name)
    edited.write_text(json.dumps(data, indent=2))
    return edited


@pytest.fixture
def aci_state_dirs(tmp_path) -> Iterator[list[Path]]:
    """State directories of the groups a test runs; each is deleted and checked gone afterwards."""
    dirs: list[Path] = []
    yield dirs
    for directory in dirs:
        if (directory / "state.json").exists():
            state = GroupState.load(directory)
            ccr("aci", "delete", "--state-dir", str(directory), check=False)
            assert not remaining(state), remaining(state)
