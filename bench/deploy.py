"""policy_generate_s: CCE policy for the job demo's group, from local images, with an empty layer cache.

`az confcom acipolicygen` takes 10-15 minutes for such a group (it pulls and converts every layer in a
helper binary). Here the same work (tar -> ext4 -> dm-verity for every layer, then the Rego) runs on
stand-in images built into podman for the run, generated from a fixed seed so every run hashes the same
bytes, shaped like the real ones: the sidecar runtime image (a Debian base with Python and the
project's virtualenv: 12,000 files, 320 MB), the proxy image (Envoy: a few files, 100 MB) and a small
app image. Also reported: the same generation with the layer cache warm, which is what `ccr room up` and
`ccr spec render` pay after the first run.
"""

from __future__ import annotations

import io
import os
import random
import resource
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from sidecars.renderings.layers import PodmanImages
from sidecars.renderings.render import render
from sidecars.spec import load_spec

REPO = Path(__file__).resolve().parent.parent
VARIABLES = {"cgs_endpoint": "https://cgs.bench.test", "maa_endpoint": "https://maa.bench.test",
             "storage_url": "https://storage.bench.test/devstoreaccount1", "keyvault_url": "https://kv.bench.test"}


def _layer(path: Path, seed: int, files: int, total_bytes: int) -> int:
    """A layer tar of `files` files whose sizes follow a long-tailed distribution summing to about
    `total_bytes`, with directories as a package tree has them."""
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.2) for _ in range(files)]
    scale = total_bytes / sum(weights)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()
        for i, weight in enumerate(weights):
            directory = f"usr/lib/pkg{i % 97}/mod{i % 13}"
            for depth in range(1, directory.count("/") + 2):
                parent = "/".join(directory.split("/")[:depth])
                if parent not in dirs:
                    dirs.add(parent)
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1700000000
                    tar.addfile(info)
            body = rng.randbytes(max(1, int(weight * scale)))
            info = tarfile.TarInfo(f"{directory}/file{i}.py")
            info.size, info.mode, info.mtime = len(body), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(body))
    return path.stat().st_size


def _import(tar: Path, name: str) -> str:
    subprocess.run(["podman", "import", str(tar), name], check=True, capture_output=True)
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{.Digest}}", name],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run() -> dict[str, float]:
    if shutil.which("podman") is None:
        raise RuntimeError("podman is needed to build the stand-in images")
    tag = f"ccr-bench-{os.getpid()}"
    registry = f"localhost/{tag}"
    work = Path(tempfile.mkdtemp(prefix="ccr-bench-deploy-"))
    names = []
    try:
        sizes = {}
        for seed, (image, files, total) in enumerate((("ccr-runtime", 12_000, 320_000_000),
                                                      ("ccr-proxy", 8, 100_000_000),
                                                      ("app", 20, 1_000_000))):
            tar = work / f"{image}.tar"
            sizes[image] = _layer(tar, seed, files, total)
            reference = f"{registry}/{image}:0.1.0"
            digest = _import(tar, reference)
            names.append(reference)
            if image == "app":
                app_reference = f"{registry}/app@{digest}"
            tar.unlink()
        total_mb = sum(sizes.values()) / 1e6
        print("   stand-in images: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items()))

        spec = load_spec(REPO / "examples/cleanroomhello-job/spec.yaml", variables=VARIABLES)
        spec = spec.model_copy(update={"application": spec.application.model_copy(update={"image": app_reference})})

        started, cpu_started = time.perf_counter(), _cpu_seconds()
        cold = render(spec, PodmanImages(work / "cache"), registry=registry)
        cold_s, cold_cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu_started

        started = time.perf_counter()
        warm = render(spec, PodmanImages(work / "cache"), registry=registry)
        warm_s = time.perf_counter() - started
        assert warm.policy == cold.policy, "policy generation must be deterministic"

        print(f"   cold: {cold_s:.2f} s wall, {cold_cpu_s:.2f} s CPU (this process and podman) for "
              f"{total_mb:.0f} MB of layers ({total_mb / cold_cpu_s:.0f} MB per CPU second), "
              f"{len(cold.group.containers)} containers; warm cache: {warm_s * 1000:.0f} ms")
        print(f"   load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(wall time grows with other work on the machine; CPU time does not)")
        print(f"   HOST_DATA {cold.host_data}; confcom acipolicygen: 600-900 s for such a group "
              f"(ratio {600 / cold_s:.0f}x or more)")
        return {"policy_generate_s": round(cold_s, 3), "policy_generate_cpu_s": round(cold_cpu_s, 3),
                "policy_generate_cached_s": round(warm_s, 4)}
    finally:
        for name in names:
            subprocess.run(["podman", "rmi", "-f", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(run())
