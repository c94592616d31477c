"""The HTML report, from a real export, rendered by headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sidecars.cli import main as ccr
from sidecars.common.process import ManagedProcess

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium(tmp_path, name: str, *args: str) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run `make setup` (scripts/setup.sh installs Debian's chromium)")
    profile = tmp_path / f"chromium-profile-{name}"
    process = ManagedProcess(f"chromium-{name}", [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                             log_path=tmp_path / f"chromium-{name}.log")
    process.start()
    try:
        assert process.popen.wait(timeout=90) == 0, process.output_tail()
    finally:
        process.stop()
    return process.output()


def test_html_report_renders_in_headless_chromium(start_room, governance, tmp_path, capsys):
    room = start_room()
    governance.consent.update(telemetry="enabled", logging="enabled")
    room.emit_startup(fail_at="launch")
    started = datetime.now(UTC)
    room.hand_over_app_output([
        ((started + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z"), stream, line)
        for ms, stream, line in [(5, "stdout", "loading model weights from /mnt/remote/model"),
                                 (40, "stderr", "warning: <script>alert(1)</script> is not a column"),
                                 (90, "stdout", "serving on :8080")]])
    for path in ("/gov/exportTelemetry", "/gov/exportLogs"):
        assert httpx.post(room.http_url + path, timeout=30).status_code == 200
    out = tmp_path / "download"
    assert ccr(["telemetry", "download", "--spec", str(room.spec), "--endpoints", str(room.endpoints),
                "--dek-file", str(room.telemetry_key), "-o", str(out)]) == 0
    assert ccr(["logs", "download", "--spec", str(room.spec), "--endpoints", str(room.endpoints),
                "--dek-file", str(room.log_key), "-o", str(out)]) == 0
    report = tmp_path / "report.html"
    assert ccr(["telemetry", "show", str(out), "-o", str(report), "--title", "demo-room telemetry"]) == 0
    capsys.readouterr()

    html = report.read_text()
    for external in ("src=", "href=", "url(", "@import", "<script"):  # self-contained, and nothing injected
        assert external not in html, external

    dom = chromium(tmp_path, "dom", "--dump-dom", report.as_uri())
    dom = dom[dom.index("<html"):dom.rindex("</html>")]
    names = re.findall(r'<div class="name"[^>]*>(?:<span class="tree">[^<]*</span>)?([^<]+)<', dom)
    assert set(names) >= {"room.startup", "firewall", "attest", "snp.report", "maa.token", "consent",
                          "key-release orders", "key-release results", "mount", "proxy", "launch"}
    assert "launch failed: key release denied" in dom
    assert "serving on :8080" in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom

    screenshot = tmp_path / "report.png"
    chromium(tmp_path, "shot", "--window-size=1400,1100", "--hide-scrollbars", f"--screenshot={screenshot}",
             report.as_uri())
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
