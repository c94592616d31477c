"""`ccr workspace start` as a party runs it: a real uvicorn on loopback acting for a member certificate, its
OpenAPI served; a non-loopback address or a half-given option refused in one line."""

from __future__ import annotations

import json
import sys

import httpx
import pytest

from sidecars.cli import main
from sidecars.common.process import ManagedProcess, file_exists

from .conftest import register_consortium, start_cgs

pytestmark = pytest.mark.slow


def test_the_workspace_serves_its_api_on_loopback_for_the_party(tmp_path, server_tls, platform_dir, local_ca):
    cgs = start_cgs(tmp_path, server_tls, platform_dir)
    try:
        register_consortium(cgs, local_ca, tmp_path / "members", ("northwind",))
        ready = tmp_path / "workspace.ready"
        proc = ManagedProcess("wsid-workspace", [
            sys.executable, "-m", "sidecars", "workspace", "start",
            "--identity", str(tmp_path / "members" / "northwind"),
            "--cgs", cgs.url, "--ca-bundle", str(local_ca.cert_file), "--port", "0", "--ready-file", str(ready)],
            ready=file_exists(ready), ready_timeout=30, log_path=tmp_path / "workspace.log")
        proc.start()
        try:
            url = json.loads(ready.read_text())["url"]
            assert url.startswith("http://127.0.0.1:")
            with httpx.Client(base_url=url, timeout=10) as http:
                me = http.get("/api/me").json()
                assert me["name"] == "northwind" and me["mode"] == "certificate" and me["signedIn"]
                paths = http.get("/api/openapi.json").json()["paths"]
                assert "/api/collaborations/{collaboration_id}/report.html" in paths
                unknown = http.get("/api/nothing-here")
                assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] is None
        finally:
            proc.stop()
    finally:
        cgs.proc.stop()


@pytest.mark.parametrize("args, says", [
    (["--identity", "/nonexistent", "--cgs", "https://127.0.0.1:1", "--host", "0.0.0.0"], "loopback only"),
    (["--entra", "https://127.0.0.1:1/tenant", "--cgs", "https://127.0.0.1:1"], "--key-dir"),
    (["--identity", "/nonexistent", "--cgs", "https://127.0.0.1:1", "--room", "https://127.0.0.1:2"], "--contract-ca"),
    (["--identity", "/nonexistent"], "no CGS endpoint"),
])
def test_bad_options_are_one_line(args, says, monkeypatch, capsys):
    monkeypatch.delenv("CCR_CGS_ENDPOINT", raising=False)
    assert main(["workspace", "start", *args]) != 0
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
