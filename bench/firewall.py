"""firewall_apply_ms: the median time to put the job demo's rules in force in a fresh network namespace.

Each round creates a namespace, applies the rules (`Firewall.apply`: enter the namespace, open the
backend, replace the rules, commit) and deletes the namespace. Reported for both backends; the figure
is nftables (the default). The first rule set in a namespace pays for starting connection tracking
there (the NAT chains need it); a re-apply over rules in force is printed for comparison. Needs root.
"""

from __future__ import annotations

import os
import statistics
import subprocess
from pathlib import Path

from sidecars.firewall import BACKENDS, Firewall
from sidecars.spec import load_spec

ROUNDS = 15
JOB_SPEC = Path(__file__).resolve().parent.parent / "examples/cleanroomhello-job/spec.yaml"
# The demo's endpoints do not change its firewall rules; any well-formed values do.
VARIABLES = {"cgs_endpoint": "https://127.0.0.1:9001", "maa_endpoint": "https://127.0.0.1:9002",
             "keyvault_url": "https://127.0.0.1:9003", "storage_url": "https://127.0.0.1:9004/devstoreaccount1"}


def _netns(*args: str) -> None:
    subprocess.run(["ip", "netns", *args], check=True, capture_output=True)


def apply_times(backend: str, rounds: int = ROUNDS) -> tuple[list[float], list[float]]:
    """(first apply in a fresh namespace, re-apply over rules already in force), in ms."""
    spec = load_spec(JOB_SPEC, variables=VARIABLES)
    times, again = [], []
    for i in range(rounds):
        name = f"ccr-bench-fw-{os.getpid()}-{i}"
        _netns("add", name)
        try:
            firewall = Firewall.from_spec(spec, backend=backend, netns=name)
            times.append(firewall.apply())
            again.append(firewall.apply())
            if not firewall.verify().ok:
                raise RuntimeError(f"{backend}: rules not in force after apply in {name}")
        finally:
            _netns("del", name)
    return times, again


def run() -> dict:
    if os.geteuid() != 0:
        raise SystemExit("bench firewall: needs root (network namespaces)")
    figures = {}
    for backend in BACKENDS:
        times, again = apply_times(backend)
        median = statistics.median(times)
        print(f"   {backend}: apply median {median:.2f} ms, min {min(times):.2f}, max {max(times):.2f} "
              f"({len(times)} fresh namespaces); re-apply median {statistics.median(again):.2f} ms")
        figures["firewall_apply_ms" if backend == "nftables" else f"firewall_apply_ms_{backend}"] = round(median, 3)
    return figures
