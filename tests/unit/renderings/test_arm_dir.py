"""arm/ is what `make arm` renders, and nothing committed pins a placeholder digest without saying how to make
it runnable."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from sidecars.common.errors import ConfigError
from sidecars.renderings import armdir
from sidecars.renderings.arm import TEMPLATE_FILE

REPO = Path(__file__).resolve().parents[3]
PLACEHOLDER = "sha256:" + "0" * 64


def test_arm_dir_is_what_make_arm_renders():
    files = armdir.render_all(REPO / "arm")
    assert {p.parent.name for p in files} == set(armdir.example_specs()) == {
        "cleanroomhello-job", "cleanroomhello-api", "db-access", "analytics"}
    stale = [str(p.relative_to(REPO)) for p, text in files.items() if not p.is_file() or p.read_text() != text]
    assert not stale, f"arm/ is stale ({', '.join(stale)}): run `make arm`"
    committed = {p for p in (REPO / "arm").rglob("*") if p.is_file() and p.name != "README.md"}
    assert committed == set(files), "arm/ holds files `make arm` does not write"


def test_the_committed_policy_is_the_templates_and_every_image_is_locked():
    for name in armdir.example_specs():
        folder = REPO / "arm" / name
        template = json.loads((folder / TEMPLATE_FILE).read_text())
        encoded = template["resources"][0]["properties"]["confidentialComputeProperties"]["ccePolicy"]
        assert base64.b64decode(encoded) == (folder / armdir.POLICY_FILE).read_bytes()
        lock = json.loads((folder / armdir.LOCK_FILE).read_text())
        containers = [*template["resources"][0]["properties"]["initContainers"],
                      *template["resources"][0]["properties"]["containers"]]
        assert {c["properties"]["image"] for c in containers} <= set(lock)
        for reference, entry in lock.items():  # a placeholder is locked as one, never given invented layers
            assert (entry["digest"] == PLACEHOLDER) == reference.endswith("@" + PLACEHOLDER)
            assert bool(entry["layers"]) != (entry["digest"] == PLACEHOLDER)


def test_a_missing_lock_is_one_line_naming_the_command(tmp_path):
    with pytest.raises(ConfigError, match=r"layers.json is missing: `make arm-runnable`") as refused:
        armdir.render_all(tmp_path)
    assert "\n" not in str(refused.value)


SKIPPED_DIRS = ("tests", "node_modules", ".git", ".venv", "run", ".pytest_cache")


def _committed_files() -> list[Path]:
    """The checkout's files (git's list; a tree without .git, e.g. an archive, is walked instead)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    paths = ([REPO / f for f in listed.stdout.splitlines()] if listed.returncode == 0
             else [p for p in REPO.rglob("*") if "__pycache__" not in p.parts])
    return [p for p in paths if p.relative_to(REPO).parts[0] not in SKIPPED_DIRS and p.is_file()]


def test_every_file_that_pins_a_placeholder_digest_says_how_to_make_it_runnable():
    readme = (REPO / "arm" / "README.md").read_text()
    assert "`make arm-runnable`" in readme
    pinned = []
    for path in _committed_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if PLACEHOLDER not in text or path.suffix == ".md":
            continue
        pinned.append(path.relative_to(REPO).as_posix())
        if path.parts[len(REPO.parts)] == "arm":
            continue  # JSON has no header: arm/README.md is (checked above)
        header = "".join(line for line in text.splitlines(keepends=True)[:12] if line.startswith("#"))
        assert "make arm-runnable" in header or "--pin" in header, \
            f"{path.relative_to(REPO)} pins {PLACEHOLDER[:15]}… and its header does not say how to build it"
    assert "docker-compose.yml" in pinned and "examples/cleanroomhello-job/spec.yaml" in pinned
