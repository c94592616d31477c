"""`ccr emulators start/stop`: detached stand-ins, endpoints.json, stopping exactly what was started."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from azure.keyvault.secrets import SecretClient

from sidecars.common.devtokens import DevTokenCredential
from sidecars.common.errors import ConfigError
from sidecars.common.process import is_running
from sidecars.emulators import runner

KEYVAULT_ONLY = [entry for entry in runner.REGISTRY if entry.name == "keyvault"]


def test_start_writes_endpoints_refuses_a_second_start_and_stop_stops_exactly_them(tmp_path):
    lines: list[str] = []
    endpoints = runner.start(tmp_path, registry=KEYVAULT_ONLY, progress=lines.append)
    try:
        assert json.loads((tmp_path / "endpoints.json").read_text()) == endpoints
        assert endpoints["keyvault_url"].startswith("https://127.0.0.1:")
        assert os.path.exists(endpoints["ca_bundle"])
        assert any("keyvault ready at" in line for line in lines)
        secrets = SecretClient(endpoints["keyvault_url"], DevTokenCredential.from_dir(endpoints["dev_tokens_dir"]),
                               connection_verify=endpoints["ca_bundle"], verify_challenge_resource=False)
        assert secrets.set_secret("probe", "v").value == "v"
        records = runner.running(tmp_path)
        assert [r.name for r in records] == ["keyvault"]
        with pytest.raises(ConfigError, match="already running"):
            runner.start(tmp_path, registry=KEYVAULT_ONLY)
    finally:
        assert runner.stop(tmp_path) == 1
    assert not any(is_running(r) for r in records)
    assert not (tmp_path / "endpoints.json").exists()
    with pytest.raises(ConfigError, match="no emulators"):
        runner.stop(tmp_path)


def test_a_stand_in_that_fails_to_start_leaves_nothing_running(tmp_path):
    broken = runner.StandIn("broken", "broken_url",
                            lambda ctx, tls, ready: [sys.executable, "-c", "import sys; sys.exit('no config')"])
    lines: list[str] = []
    with pytest.raises(Exception, match="broken exited"):
        runner.start(tmp_path, registry=[*KEYVAULT_ONLY, broken], progress=lines.append)
    keyvault_pid = int(re.search(r"keyvault ready at .* \(pid (\d+),", "\n".join(lines)).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(keyvault_pid, 0)
    assert runner.running(tmp_path) == [] and not (tmp_path / "endpoints.json").exists()


def test_cli_stop_without_start_is_one_line_and_exit_1(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sidecars", "emulators", "stop", "--run-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no emulators were started" in result.stderr


def test_cli_start_status_stop_with_every_stand_in(tmp_path):
    run = str(tmp_path / "run")
    started = subprocess.run([sys.executable, "-m", "sidecars", "emulators", "start", "--run-dir", run],
                             capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stderr
        endpoints = json.loads((tmp_path / "run" / "endpoints.json").read_text())
        assert {"maa_endpoint", "keyvault_url", "ca_bundle", "mock_platform_dir"} <= set(endpoints)
        for name in [entry.name for entry in runner.REGISTRY]:
            assert f"starting {name}" in started.stdout and f"{name} ready at" in started.stdout
        status = subprocess.run([sys.executable, "-m", "sidecars", "emulators", "status", "--run-dir", run],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and status.stdout.count(" running") == len(runner.REGISTRY)
        again = subprocess.run([sys.executable, "-m", "sidecars", "emulators", "start", "--run-dir", run],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stopped = subprocess.run([sys.executable, "-m", "sidecars", "emulators", "stop", "--run-dir", run],
                                 capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and stopped.stdout.count("stopped ") == len(runner.REGISTRY)
