"""skr_release_ms: the median of full secure key releases (report -> MAA -> Key Vault -> unwrap) against
the local stand-ins, and where the time goes per step.

The release path is the skr sidecar's own (`KeyReleaser`), run in this process; MAA and Key Vault are the
stand-ins as `ccr emulators start` runs them. Each release uses a fresh wrapping key, as the sidecar
does; keys are generated ahead of time by its pool (the bench waits for the pool between releases, as
releases in a room are minutes apart), and the generation time is reported separately.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time

RELEASES = 60
WARMUP = 3
HOST_DATA = "ab" * 32


def run() -> dict[str, float]:
    from azure.keyvault.keys import KeyClient, KeyReleasePolicy

    from sidecars.attestation import MockPlatform, MockSnpProvider
    from sidecars.common.devtokens import DevTokenCredential
    from sidecars.common.release_policy import sevsnp_policy
    from sidecars.emulators import runner
    from sidecars.skr.flow import KeyReleaser
    from sidecars.skr.wrapping import WrappingKey

    run_dir = tempfile.mkdtemp(prefix="ccr-bench-skr-")
    needed = [entry for entry in runner.REGISTRY if entry.name in ("maa", "keyvault")]
    endpoints = runner.start(run_dir, registry=needed, progress=lambda line: print(f"   {line}", flush=True))
    try:
        credential = DevTokenCredential.from_dir(endpoints["dev_tokens_dir"])
        keys = KeyClient(endpoints["keyvault_url"], credential, connection_verify=endpoints["ca_bundle"],
                         verify_challenge_resource=False)
        # The stand-ins' MAA gives their mock platform's UVM `ccr-mock-uvm`, never `azure-compliant-uvm`.
        policy = sevsnp_policy(endpoints["maa_endpoint"], HOST_DATA, accept_mock_uvm=True)
        keys.create_rsa_key("bench-kek", hardware_protected=True, exportable=True,
                            release_policy=KeyReleasePolicy(json.dumps(policy).encode()))
        platform = MockPlatform.load(endpoints["mock_platform_dir"])
        provider = MockSnpProvider(platform, host_data=bytes.fromhex(HOST_DATA))
        releaser = KeyReleaser(provider, ca_bundle=endpoints["ca_bundle"],
                               token_source=lambda scope: credential.get_token(scope).token)
        totals, steps = asyncio.run(_releases(releaser, endpoints))
        keygen = []
        for _ in range(10):
            began = time.perf_counter()
            WrappingKey.generate()
            keygen.append((time.perf_counter() - began) * 1000)
    finally:
        runner.stop(run_dir)
    median = statistics.median(totals)
    print(f"   {len(totals)} releases: median {median:.1f} ms, p90 {sorted(totals)[int(len(totals) * 0.9)]:.1f} ms, "
          f"min {min(totals):.1f} ms")
    print("   where the time goes (median per step):")
    for name, values in steps.items():
        print(f"     {name:<14} {statistics.median(values):6.2f} ms")
    print(f"   off the critical path: RSA-2048 wrapping key generation, median {statistics.median(keygen):.1f} ms")
    print(f"   (load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return {"skr_release_ms": round(median, 2)}


async def _releases(releaser, endpoints) -> tuple[list[float], dict[str, list[float]]]:
    totals: list[float] = []
    steps: dict[str, list[float]] = {}
    try:
        for i in range(WARMUP + RELEASES):
            releaser.wrapping_keys.wait_full()
            began = time.perf_counter()
            release = await releaser.release(endpoints["maa_endpoint"], endpoints["keyvault_url"], "bench-kek")
            elapsed = (time.perf_counter() - began) * 1000
            if i < WARMUP:
                continue
            totals.append(elapsed)
            for name, value in release.timings.items():
                steps.setdefault(name, []).append(value)
    finally:
        await releaser.aclose()
    return totals, steps
