"""`ccr sidecar run NAME` in a container: options from the environment the container group model sets."""

import json
from pathlib import Path

import pytest

from sidecars.common.errors import ConfigError
from sidecars.localroom import container
from sidecars.localroom.container import options_from_environment
from sidecars.renderings.containers import render_group
from sidecars.spec import load_spec

HOST_DATA = "ab" * 32


@pytest.fixture
def room(repo, tmp_path, monkeypatch):
    endpoints = {"maa_endpoint": "https://127.0.0.1:9001", "keyvault_url": "https://127.0.0.1:9002",
                 "cgs_endpoint": "https://127.0.0.1:9003", "entra_endpoint": "https://127.0.0.1:9004",
                 "storage_url": "https://127.0.0.1:9005/devstoreaccount1", "ca_bundle": "/emu/ca/ca.pem",
                 "mock_platform_dir": "/emu/mock-platform", "entra_tenant_id": "tenant-1"}
    endpoints_file = tmp_path / "endpoints.json"
    endpoints_file.write_text(json.dumps(endpoints))
    spec = load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=endpoints)
    group = render_group(spec)
    attached = []
    monkeypatch.setattr(container, "_attach_own_netns", attached.append)
    extras = {"CCR_ENDPOINTS": str(endpoints_file), "CCR_HOST_DATA": HOST_DATA, "CCR_RUN_DIR": str(tmp_path / "run"),
              "CCR_MOUNT_ROOT": str(tmp_path / "remote")}

    def env(name: str) -> dict[str, str]:
        return {**group.container(f"ccr-{name}").env_dict, **extras}

    return env, spec, tmp_path, attached


def _option(options: list[str], flag: str) -> str:
    return options[options.index(flag) + 1]


@pytest.mark.parametrize("name", ["firewall", "telemetry", "skr", "governance", "identity", "volumes", "launcher",
                                  "proxy"])
def test_every_sidecar_of_the_group_configures_itself(room, name):
    env, spec, tmp_path, _ = room
    options = options_from_environment(name, env(name))
    assert _option(options, "--ready-file") == str(tmp_path / "run" / "ready" / f"{name}.json")
    if "--spec" in options:
        assert load_spec(_option(options, "--spec")) == spec


def test_options_are_the_ones_ccr_up_derives(room):
    env, spec, tmp_path, attached = room
    skr = options_from_environment("skr", env("skr"))
    assert _option(skr, "--host-data") == HOST_DATA
    assert _option(skr, "--mock-platform-dir") == "/emu/mock-platform"
    assert _option(skr, "--port") == "8284"
    volumes = options_from_environment("volumes", env("volumes"))
    launcher = options_from_environment("launcher", env("launcher"))
    # the volumes sidecar mounts where the launcher looks: the shared remote volume
    assert _option(volumes, "--mount-root") == _option(launcher, "--mount-root") == str(tmp_path / "remote")
    assert attached == [_option(launcher, "--netns")]
    governance = options_from_environment("governance", env("governance"))
    assert _option(governance, "--contract-id") == spec.contract.id
    assert _option(governance, "--cgs-ca-bundle") == "/emu/ca/ca.pem"


def test_sidecars_share_one_token(room):
    env, _, _, _ = room
    files = {_option(options_from_environment(n, env(n)), "--sidecar-token-file") for n in ("governance", "identity")}
    (token_file,) = files
    first = Path(token_file).read_text()
    options_from_environment("launcher", env("launcher"))
    assert Path(token_file).read_text() == first and len(first) > 30


@pytest.mark.parametrize("change, message", [
    ({"CCR_ENDPOINTS": ""}, "CCR_ENDPOINTS is not set"),
    ({"CCR_HOST_DATA": "not-hex"}, "CCR_HOST_DATA must be"),
    ({"CCR_PORT": "9999"}, "CCR_PORT is 9999 but skr listens on 8284"),
    ({"CCR_SPEC": "{not json"}, "CCR_SPEC is not JSON"),
    ({"CCR_SPEC": "{}"}, "CCR_SPEC: "),
])
def test_wrong_environment_is_one_clear_error(room, change, message):
    env, _, _, _ = room
    with pytest.raises(ConfigError, match=message):
        options_from_environment("skr", {**env("skr"), **change})


def test_cli_without_options_reads_the_environment(room):
    import os
    import subprocess
    import sys

    env, _, _, _ = room
    bad = {**os.environ, **env("skr"), "CCR_ENDPOINTS": ""}
    result = subprocess.run([sys.executable, "-m", "sidecars", "sidecar", "run", "skr"], env=bad, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ccr: error: CCR_ENDPOINTS is not set: the mounted endpoints.json of the stand-ins"]
