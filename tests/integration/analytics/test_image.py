"""The analytics app's image, built for real (debootstrap once, then podman) and run as the launcher runs an
app: uid 1000, read-only root, every capability dropped, no network but loopback, its own command
(`ccr analytics serve`). Inside it Spark starts before the port opens, the run API refuses an unsigned
request, and the escapes an app might try are refused."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from sidecars.common.errors import ProcessError
from sidecars.launcher.images import build_app_image
from sidecars.launcher.podman import Podman

pytestmark = [pytest.mark.root, pytest.mark.slow]

PROBE = r"""
import json, os, socket, urllib.error, urllib.request
report = {"uid": os.getuid(), "status": json.loads(urllib.request.urlopen("http://127.0.0.1:8080/status").read())}
try:
    open("/opt/ccr/lib/evil.py", "w")
    report["root_writable"] = True
except OSError:
    report["root_writable"] = False
try:
    socket.create_connection(("192.0.2.1", 80), timeout=2)
    report["outbound"] = "connected"
except OSError as exc:
    report["outbound"] = exc.strerror
try:
    urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8080/queries/q1/run", data=b"{}"))
except urllib.error.HTTPError as exc:
    report["unsigned"] = exc.code
print(json.dumps(report))
"""
READY = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/status', timeout=1)"


def test_the_analytics_image_serves_warm_spark_as_uid_1000_with_no_network(repo):
    built = build_app_image(repo / "images/ccr-analytics")
    podman = Podman()
    assert podman.image_inspect(built.pinned_ref)["Config"]["User"] == "1000:1000"
    name = f"ccr-test-analytics-{os.getpid()}"
    podman.remove_container(name)
    started = time.monotonic()
    podman.run_cli(["run", "--detach", "--name", name, "--network", "none", "--user", "1000:1000", "--read-only",
                    "--cap-drop=ALL", "--security-opt", "no-new-privileges",
                    "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m,mode=1777",
                    # governance is not needed until a member's request arrives
                    "--env", "CCR_GOVERNANCE_URL=http://127.0.0.1:9", built.pinned_ref])
    try:
        while True:
            try:
                podman.run_cli(["exec", name, "/opt/ccr/bin/python", "-c", READY], timeout=30)
                break
            except ProcessError:
                assert time.monotonic() - started < 120, podman.run_cli(["logs", name])
                time.sleep(0.5)
        serving_s = time.monotonic() - started
        report = json.loads(podman.run_cli(["exec", name, "/opt/ccr/bin/python", "-c", PROBE], timeout=60))
        # podman logs replays the app's stderr on its own stderr
        logs = subprocess.run([podman.binary, "logs", name], env=podman.env(), capture_output=True, text=True).stderr
    finally:
        podman.remove_container(name)
    print(f"podman run → run API serving with a warm Spark session: {serving_s:.1f} s")
    assert "Spark session warm in" in logs  # started before the port opened, so /status means warm
    assert report["uid"] == 1000 and report["status"] == {"status": "ok"}
    assert report["root_writable"] is False
    assert report["outbound"] == "Network is unreachable"
    assert report["unsigned"] == 401
