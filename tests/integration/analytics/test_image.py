"""The analytics app's image, built for real (debootstrap once, then podman) and run as the launcher runs an
app: uid 1000, read-only root, every capability dropped, no network but loopback. Inside it Spark starts, the
run API serves, and the escapes an app might try are refused."""

from __future__ import annotations

import json
import os

import pytest

from sidecars.launcher.images import build_app_image
from sidecars.launcher.podman import Podman

pytestmark = [pytest.mark.root, pytest.mark.slow]

PROBE = r"""
import json, os, socket, threading, time, urllib.error, urllib.request, argparse
started = time.monotonic()
from sidecars.analytics.service import cmd_serve
report = {"uid": os.getuid()}
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
def probe():
    while True:
        try:
            report["status"] = json.loads(urllib.request.urlopen("http://127.0.0.1:8080/status", timeout=1).read())
            report["serving_s"] = round(time.monotonic() - started, 2)
            break
        except OSError:
            time.sleep(0.1)
    try:
        urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8080/queries/q1/run", data=b"{}"))
    except urllib.error.HTTPError as exc:
        report["unsigned"] = exc.code
    print("REPORT " + json.dumps(report), flush=True)
    os._exit(0)
threading.Thread(target=probe, daemon=True).start()
cmd_serve(argparse.Namespace(port=8080, host="127.0.0.1", mount_root="/mnt/remote", scratch="/tmp/ccr-analytics",
                             governance_url="http://127.0.0.1:9"))
"""


def test_the_analytics_image_serves_warm_spark_as_uid_1000_with_no_network(repo):
    built = build_app_image(repo / "images/ccr-analytics")
    podman = Podman()
    assert podman.image_inspect(built.pinned_ref)["Config"]["User"] == "1000:1000"
    out = podman.run_cli([
        "run", "--rm", "--name", f"ccr-test-analytics-{os.getpid()}", "--network", "none", "--user", "1000:1000",
        "--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges",
        "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m,mode=1777",
        "--entrypoint", "/opt/ccr/bin/python", built.pinned_ref, "-c", PROBE], timeout=180)
    report = json.loads(next(line for line in out.splitlines() if line.startswith("REPORT "))[7:])
    assert report["uid"] == 1000
    assert report["root_writable"] is False
    assert report["outbound"] == "Network is unreachable"
    assert report["status"] == {"status": "ok"}  # Spark was started before the port opened
    assert report["unsigned"] == 401
    assert report["serving_s"] < 120
