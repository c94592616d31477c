"""A sidecar configures itself from the room it is in: the container group's environment, nothing else."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecars.common.errors import ConfigError
from sidecars.common.room import Placement, Room
from sidecars.room.group import render_group
from sidecars.room.registry import REGISTRY
from sidecars.spec import load_spec

HOST_DATA = "ab" * 32


@pytest.fixture
def room(repo, tmp_path):
    endpoints = {"maa_endpoint": "https://127.0.0.1:9001", "keyvault_url": "https://127.0.0.1:9002",
                 "cgs_endpoint": "https://127.0.0.1:9003", "entra_endpoint": "https://127.0.0.1:9004",
                 "storage_url": "https://127.0.0.1:9005/devstoreaccount1", "ca_bundle": "/emu/ca/ca.pem",
                 "mock_platform_dir": "/emu/mock-platform", "entra_tenant_id": "tenant-1"}
    endpoints_file = tmp_path / "endpoints.json"
    endpoints_file.write_text(json.dumps(endpoints))
    spec = load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=endpoints)
    group = render_group(spec)
    extras = {"CCR_ENDPOINTS": str(endpoints_file), "CCR_HOST_DATA": HOST_DATA, "CCR_RUN_DIR": str(tmp_path / "run"),
              "CCR_MOUNT_ROOT": str(tmp_path / "remote")}

    def env(name: str) -> dict[str, str]:
        return {**group.container(f"ccr-{name}").env_dict, **extras}

    def configure(name: str, environ: dict[str, str] | None = None):
        return REGISTRY.get(name).configure(Room.from_environment(environ or env(name), REGISTRY.layout()))

    return env, configure, spec, tmp_path


@pytest.mark.parametrize("name", REGISTRY.names)
def test_every_sidecar_of_the_group_configures_itself(room, name):
    _, configure, spec, tmp_path = room
    config = configure(name)
    if hasattr(config, "ready_file"):
        assert config.ready_file == tmp_path / "run" / "ready" / f"{name}.json"
    if getattr(config, "spec", None) is not None:
        assert config.spec == spec


def test_configurations_are_the_rooms(room):
    _, configure, spec, tmp_path = room
    skr = configure("skr")
    assert skr.host_data == bytes.fromhex(HOST_DATA) and skr.platform == "mock"
    assert skr.mock_platform_dir == "/emu/mock-platform" and skr.port == REGISTRY.get("skr").port()
    # the volumes sidecar mounts where the launcher looks: the shared remote volume
    assert configure("volumes").mount_root == configure("launcher").mount_root == tmp_path / "remote"
    governance = configure("governance")
    assert governance.contract_id == spec.contract.id
    # the stand-ins' CA joins the system store in the room's one bundle
    assert governance.cgs_ca_bundle == str(tmp_path / "run/trust/ca-bundle.pem")
    assert governance.skr_url == f"http://127.0.0.1:{REGISTRY.get('skr').port()}"
    launcher = configure("launcher")
    assert set(launcher.sidecar_status_urls) == set(REGISTRY.names) - {"launcher", "firewall"}
    identity = configure("identity")
    assert identity.tenant_id == "tenant-1" and identity.entra_endpoint == "https://127.0.0.1:9004"


def test_sidecars_share_one_token(tmp_path):
    placement = Placement(run_dir=tmp_path)
    first = placement.ensure_sidecar_token().read_text()
    assert Placement(run_dir=tmp_path).ensure_sidecar_token().read_text() == first and len(first) > 30
    assert oct(placement.sidecar_token_file.stat().st_mode & 0o777) == "0o600"


def test_a_group_on_confidential_aci_needs_no_placement(room):
    """No stand-ins, no run directory given: the sidecars take the group's volumes and the real platform."""
    env, configure, _, _ = room
    bare = {k: v for k, v in env("skr").items() if k in ("CCR_SPEC", "CCR_SIDECAR")}
    skr = configure("skr", bare)
    assert skr.platform == "auto" and skr.mock_platform_dir is None and skr.ca_bundle is None
    assert configure("volumes", {**bare, "CCR_SIDECAR": "volumes"}).mount_root == Path("/mnt/remote")


@pytest.mark.parametrize("change, message", [
    ({"CCR_HOST_DATA": "not-hex"}, "CCR_HOST_DATA must be"),
    ({"CCR_HOST_DATA": ""}, "needs the room's HOST_DATA"),
    ({"CCR_SPEC": "{not json"}, "CCR_SPEC is not JSON"),
    ({"CCR_SPEC": "{}"}, "CCR_SPEC: "),
    ({"CCR_FIREWALL_BACKEND": "pf"}, "CCR_FIREWALL_BACKEND is 'pf'"),
])
def test_wrong_environment_is_one_clear_error(room, change, message):
    env, configure, _, _ = room
    with pytest.raises(ConfigError, match=message):
        configure("skr", {**env("skr"), **change})


def test_cli_without_options_reads_the_room(room):
    env, _, _, _ = room
    bad = {**os.environ, **env("skr"), "CCR_HOST_DATA": ""}
    result = subprocess.run([sys.executable, "-m", "sidecars", "sidecar", "run", "skr"], env=bad, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ccr: error: the stand-ins' mock SEV-SNP platform needs the room's HOST_DATA (CCR_HOST_DATA, "
        "`ccr spec render policy-hash SPEC`)"]


def test_a_container_runs_only_its_own_sidecar(room):
    env, _, _, _ = room
    wrong = {**os.environ, **env("governance")}
    result = subprocess.run([sys.executable, "-m", "sidecars", "sidecar", "run", "skr"], env=wrong, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "CCR_SIDECAR is 'governance': this container runs that sidecar, not skr" in result.stderr
