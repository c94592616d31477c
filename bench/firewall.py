"""firewall_apply_ms: the median time to put the job demo's rules in force in a fresh network namespace.

Each round creates a namespace, applies the rules and deletes the namespace. The figure is the time
from opening the backend to the commit returning, i.e. until the rules are in force; the whole
`apply()` call also enters the namespace and closes the backend's netlink socket afterwards (measured
at ~10 ms, spent in the kernel after the rules are in force) and is printed beside it. Reported for
both backends; the figure is nftables (the default). Needs root.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

from sidecars.firewall import BACKENDS, Firewall
from sidecars.room.registry import layout
from sidecars.spec import load_spec

ROUNDS = 15
JOB_SPEC = Path(__file__).resolve().parent.parent / "examples/cleanroomhello-job/spec.yaml"
# The demo's endpoints do not change its firewall rules; any well-formed values do.
VARIABLES = {"cgs_endpoint": "https://127.0.0.1:9001", "maa_endpoint": "https://127.0.0.1:9002",
             "keyvault_url": "https://127.0.0.1:9003", "storage_url": "https://127.0.0.1:9004/devstoreaccount1"}


def _netns(*args: str) -> None:
    subprocess.run(["ip", "netns", *args], check=True, capture_output=True)


def apply_times(backend: str, rounds: int = ROUNDS) -> tuple[list[float], list[float], list[float]]:
    """In ms: first apply in a fresh namespace (until the rules are in force), the whole `apply()` call
    (entering the namespace and closing the backend's socket too), re-apply over rules in force."""
    spec = load_spec(JOB_SPEC, variables=VARIABLES)
    times, calls, again = [], [], []
    for i in range(rounds):
        name = f"ccr-bench-fw-{os.getpid()}-{i}"
        _netns("add", name)
        try:
            firewall = Firewall.from_spec(spec, layout(), backend=backend, netns=name)
            started = time.perf_counter()
            times.append(firewall.apply())
            calls.append((time.perf_counter() - started) * 1000)
            again.append(firewall.apply())
            if not firewall.verify().ok:
                raise RuntimeError(f"{backend}: rules not in force after apply in {name}")
        finally:
            _netns("del", name)
    return times, calls, again


def run() -> dict:
    if os.geteuid() != 0:
        raise SystemExit("bench firewall: needs root (network namespaces)")
    figures = {}
    for backend in BACKENDS:
        times, calls, again = apply_times(backend)
        median = statistics.median(times)
        print(f"   {backend}: rules in force after median {median:.2f} ms (min {min(times):.2f}, max "
              f"{max(times):.2f}, {len(times)} fresh namespaces); whole apply() call "
              f"{statistics.median(calls):.2f} ms; re-apply {statistics.median(again):.2f} ms")
        figures["firewall_apply_ms" if backend == "nftables" else f"firewall_apply_ms_{backend}"] = round(median, 3)
    return figures
