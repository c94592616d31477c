"""End to end with real images in podman: `ccr spec render policy` hashes their layers, and replaying the group's
start-up against that policy admits the images that were measured and refuses a rebuilt app image that
differs by one byte."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from sidecars.renderings.enforcer import GuestRequests, PolicyEnforcer
from sidecars.renderings.layers import PodmanImages
from sidecars.room.group import render_group
from sidecars.spec import load_spec

pytestmark = pytest.mark.root

VARIABLES = {"cgs_endpoint": "https://cgs.example.test", "maa_endpoint": "https://maa.example.test",
             "storage_url": "https://storage.example.test/devstoreaccount1", "keyvault_url": "https://vault.example.test"}


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o755, 1700000000
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _import(tmp_path: Path, name: str, files: dict[str, bytes]) -> str:
    path = tmp_path / (name.replace("/", "_").replace(":", "_") + ".tar")
    path.write_bytes(_tar(files))
    subprocess.run(["podman", "import", str(path), name], check=True, capture_output=True)
    return subprocess.run(["podman", "image", "inspect", "--format", "{{.Digest}}", name], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def images(tmp_path):
    registry = f"localhost/ccr-deploy-e2e-{os.getpid()}"
    names = [f"{registry}/ccr-runtime:0.1.0", f"{registry}/ccr-proxy:0.1.0", f"{registry}/app:good",
             f"{registry}/app:tampered"]
    _import(tmp_path, names[0], {"usr/bin/ccr": b"#!/bin/sh\necho runtime\n"})
    _import(tmp_path, names[1], {"usr/bin/envoy": b"#!/bin/sh\necho proxy\n"})
    good = _import(tmp_path, names[2], {"app/job.py": b"print('the agreed job')\n"})
    tampered = _import(tmp_path, names[3], {"app/job.py": b"print('the agreed jib')\n"})
    yield registry, f"{registry}/app@{good}", f"{registry}/app@{tampered}"
    for name in names:
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True)


def test_measured_images_start_and_a_rebuilt_app_is_refused(repo, tmp_path, images):
    registry, good, tampered = images
    spec_text = (repo / "examples/cleanroomhello-job/spec.yaml").read_text()
    original = spec_text.split("image: ", 1)[1].split("\n", 1)[0]
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(spec_text.replace(original, good))
    args = [a for k, v in VARIABLES.items() for a in ("--var", f"{k}={v}")]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-m", "sidecars", "spec", "render", "policy", str(spec_path), *args, "--registry",
                    registry, "-o", str(tmp_path / "policy.rego")], check=True, capture_output=True, env=env)
    policy = (tmp_path / "policy.rego").read_text()

    group = render_group(load_spec(spec_path, variables=VARIABLES), registry=registry)
    resolver = PodmanImages(tmp_path / "cache" / "ccr")
    enforcer = PolicyEnforcer(policy)
    for container in group.containers:
        image = resolver.resolve(container.image)
        assert GuestRequests.for_container(container, image, f"{container.name}-1").start(enforcer).allowed

    rebuilt = resolver.resolve(tampered)
    assert rebuilt.layers != resolver.resolve(good).layers
    attempt = GuestRequests.for_container(group.app, rebuilt, "app-rebuilt")
    decision = PolicyEnforcer(policy).decide("mount_device", {
        "target": attempt.layer_targets()[0], "deviceHash": rebuilt.layers[0],
        "mountPathRegex": "/run/layers/p[0-9]+-[0-9]+-[0-9]+"})
    assert not decision.allowed and decision.errors == ["deviceHash not found"]
