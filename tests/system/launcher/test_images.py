"""Builds the example app images for real (debootstrap once, then podman) and runs one hardened."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from sidecars.launcher.images import build_app_image
from sidecars.launcher.podman import Podman

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_job_image_builds_pins_and_runs_as_uid_1000(repo, tmp_path):
    built = build_app_image(repo / "images/cleanroomhello-job")
    podman = Podman()
    assert podman.image_digest(built.pinned_ref) == built.digest
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, 1000, 1000)
    (tmp_path / "a/x.csv").write_text("email,amount\na@x,5\nb@x,7\n")
    (tmp_path / "b/y.csv").write_text("email\nB@x\nz@x\n")
    name = f"ccr-test-job-{os.getpid()}"
    podman.run_cli(["run", "--rm", "--name", name, "--network", "none", "--user", "1000:1000", "--read-only",
                    "--cap-drop=ALL", "--security-opt", "no-new-privileges",
                    "-v", f"{tmp_path / 'a'}:/in/a:ro", "-v", f"{tmp_path / 'b'}:/in/b:ro", "-v", f"{out}:/out",
                    built.pinned_ref, "python3", "/app/job.py", "/in/a", "/in/b", "/out"])
    assert json.loads((out / "result.json").read_text()) == {
        "overlap": 1, "overlap_spend": 7, "partner_customers": 2, "publisher_customers": 2}
    assert (out / "result.json").stat().st_uid == 1000


def test_images_build_cli_pins_spec(repo, tmp_path):
    spec = tmp_path / "spec.yaml"
    shutil.copy(repo / "examples/cleanroomhello-job/spec.yaml", spec)
    result = subprocess.run([sys.executable, "-m", "sidecars", "images", "build", "cleanroomhello-job",
                             "--pin", str(spec)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    pinned = result.stdout.splitlines()[0]
    assert pinned.startswith("localhost/cleanroomhello-job@sha256:")
    assert f"image: {pinned}" in spec.read_text()


def test_images_build_unknown_folder_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sidecars", "images", "build", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == f"ccr: error: {tmp_path}: no Containerfile in this folder"
