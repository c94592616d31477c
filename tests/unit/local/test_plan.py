"""`ccr up`'s plan: every sidecar that reads the spec reads it with the same variables."""

from pathlib import Path

from sidecars.local.plan import RoomPlan
from sidecars.spec import load_spec

ENDPOINTS = {"maa_endpoint": "https://127.0.0.1:9001", "keyvault_url": "https://127.0.0.1:9002",
             "cgs_endpoint": "https://127.0.0.1:9003", "storage_url": "https://127.0.0.1:9005/devstoreaccount1",
             "mock_platform_dir": "/emu/mock-platform"}


def test_var_values_reach_every_sidecar_that_reads_the_spec(repo, tmp_path):
    variables = {"db_host": "10.204.0.1", "db_config_secret": "abc_db-config"}
    spec_path = repo / "examples/db-access/spec.yaml"
    spec = load_spec(spec_path, variables={**ENDPOINTS, **variables})
    plan = RoomPlan(spec_path=spec_path, spec=spec, endpoints_file=Path("/emu/endpoints.json"), endpoints=ENDPOINTS,
                    run_dir=tmp_path, netns="ccr-test", host_data="ab" * 32, variables=variables)
    readers = {name: launch.options for name, launch in plan.sidecars().items() if "--spec" in launch.options}
    # skr reads it too: it contacts only the attestation services and vaults the spec names
    assert set(readers) == {"firewall", "telemetry", "skr", "volumes", "proxy", "launcher"}
    for options in readers.values():
        pairs = [options[i + 1] for i, flag in enumerate(options) if flag == "--var"]
        assert pairs == ["db_config_secret=abc_db-config", "db_host=10.204.0.1"]
