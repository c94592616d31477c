"""The telemetry sidecar end to end, with real attempts: OTLP from processes using sidecars.common.otel,
the app's output handed over, export to Azurite gated by a governance endpoint, and the viewer."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
from datetime import UTC, datetime

import httpx

from sidecars.cli import main as ccr
from sidecars.common.deks import save_dek_file
from sidecars.common.objectformat import DataKey
from sidecars.common.process import wait_until

STARTUP_SPANS = {"room.startup", "firewall", "attest", "snp.report", "maa.token", "consent", "key-release orders",
                 "key-release results", "mount", "proxy", "launch"}


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def download(room, kind: str, out) -> int:
    key = room.telemetry_key if kind == "telemetry" else room.log_key
    return ccr([kind, "download", "--spec", str(room.spec), "--endpoints", str(room.endpoints),
                "--dek-file", str(key), "-o", str(out)])


def test_consent_disabled_nothing_leaves(start_room, governance):
    room = start_room("--export-interval", "0.2")
    room.emit_startup()
    room.hand_over_app_output([(now(), "stdout", "secret result 42")])

    for path, option in (("/gov/exportTelemetry", "telemetry"), ("/gov/exportLogs", "logging")):
        response = httpx.post(room.http_url + path, timeout=30)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "PolicyDenied"
        assert f"{option} export is disabled" in response.json()["error"]["message"]
    # Let the continuous exporter ask governance several times; each time it must send nothing.
    wait_until(lambda: governance.checks.count("telemetry") >= 4 and governance.checks.count("logging") >= 4,
               15, "continuous export ticks")
    assert room.azurite.blobs(room.telemetry_container) == {}
    assert room.azurite.blobs(room.log_container) == {}
    assert governance.events == []


def test_enabled_exports_encrypted_objects_that_decrypt_to_the_startup_trace(start_room, governance, tmp_path,
                                                                            capsys):
    room = start_room()
    room.emit_startup(fail_at="mount")
    governance.consent["telemetry"] = "enabled"

    response = httpx.post(room.http_url + "/gov/exportTelemetry", timeout=30)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "exported" and result["records"] >= 4

    stored = room.azurite.blobs(room.telemetry_container)
    assert sorted(stored) == sorted(result["objects"])
    assert {name.split("/")[1] for name in stored} == {"traces", "metrics", "logs"}
    for data in stored.values():  # ciphertext only: no span name, no log text in any object
        assert b"room.startup" not in data and b"key-release" not in data and b"step firewall" not in data
    # The export was audited, naming exactly the objects that left.
    assert [(e["scope"], e["data"]["step"]) for e in governance.events] == [("telemetry", "export")]
    assert governance.events[0]["data"]["objects"] == result["objects"]

    out = tmp_path / "download"
    assert download(room, "telemetry", out) == 0
    capsys.readouterr()
    assert ccr(["telemetry", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    tree = shown.split("Metrics")[0]
    for name in STARTUP_SPANS - {"proxy", "launch"}:  # the room stopped at mount
        assert f" {name} " in tree, name
    assert "proxy" not in tree
    assert "mount failed: key release denied by policy" in tree
    # Indentation: skr's attest (a child process, joined through TRACEPARENT) sits under the launcher's.
    lines = [line for line in tree.splitlines() if line.strip().startswith(("attest", "snp.report"))]
    indents = [len(line) - len(line.lstrip()) for line in lines]
    assert indents == sorted(indents) and len(set(indents)) == 3, lines
    assert "ccr.startup.steps" in shown and "ccr.startup.step.duration" in shown
    assert "room startup failed: mount failed" in shown


def test_export_now_while_running_and_continuous(start_room, governance):
    room = start_room("--export-interval", "0.3")
    governance.consent["telemetry"] = "enabled"
    room.emit_startup()
    # The continuous exporter ships the startup without anyone asking.
    wait_until(lambda: any("/traces/" in n for n in room.azurite.blobs(room.telemetry_container)), 15,
               "continuous export of the startup trace")
    first = set(room.azurite.blobs(room.telemetry_container))

    # More telemetry while the room runs; export now ships only what is new.
    room.emit_startup(protocol="grpc")
    response = httpx.post(room.http_url + "/gov/exportTelemetry", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    if body["status"] == "nothing-new":  # the interval export won the race to the new records
        wait_until(lambda: len(room.azurite.blobs(room.telemetry_container)) > len(first), 10, "second export")
    else:
        assert set(body["objects"]).isdisjoint(first)
    assert len(room.azurite.blobs(room.telemetry_container)) > len(first)
    assert httpx.post(room.http_url + "/gov/exportTelemetry", timeout=30).json()["status"] == "nothing-new"

    # Revoked while running: nothing more leaves, neither on request nor on the interval.
    governance.consent["telemetry"] = "disabled"
    before = set(room.azurite.blobs(room.telemetry_container))
    room.emit_startup()
    assert httpx.post(room.http_url + "/gov/exportTelemetry", timeout=30).status_code == 403
    checks = governance.checks.count("telemetry")
    wait_until(lambda: governance.checks.count("telemetry") >= checks + 3, 10, "interval ticks after revocation")
    assert set(room.azurite.blobs(room.telemetry_container)) == before


def test_job_logs_exported_after_exit(start_room, governance, tmp_path, capsys):
    room = start_room()
    governance.consent["logging"] = "enabled"  # telemetry stays disabled
    lines = [(now(), "stdout", "job started"), (now(), "stderr", "warning: 3 rows skipped"),
             (now(), "stdout", "wrote 1200 rows to /mnt/remote/results")]
    room.hand_over_app_output(lines[:2])
    room.hand_over_app_output(lines[2:])
    room.emit_startup()

    # The job exited: the launcher stops the room, and the sidecar's final export ships the logs.
    room.process.popen.send_signal(signal.SIGTERM)
    assert room.process.popen.wait(timeout=30) == 0, room.process.output()
    assert room.azurite.blobs(room.telemetry_container) == {}  # no consent for telemetry: nothing
    assert not room.buffer_dir.joinpath("buffer.bin").exists()
    logs = room.azurite.blobs(room.log_container)
    assert len(logs) == 1 and "/applogs/" in next(iter(logs))
    assert [e["data"]["trigger"] for e in governance.events] == ["final"]

    out = tmp_path / "logs"
    assert download(room, "logs", out) == 0
    capsys.readouterr()
    assert ccr(["logs", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    printed = [line for line in shown.splitlines() if "demo-app/" in line]
    assert [line.split("  ")[-1] for line in printed] == [text for _t, _s, text in lines]
    assert "demo-app/stderr" in printed[1]


def test_tampered_object_refused_by_viewer(start_room, governance, tmp_path, capsys):
    room = start_room()
    governance.consent["telemetry"] = "enabled"
    room.emit_startup()
    objects = httpx.post(room.http_url + "/gov/exportTelemetry", timeout=30).json()["objects"]
    container = room.azurite.service().get_container_client(room.telemetry_container)
    victim = next(name for name in objects if "/traces/" in name)
    original = container.download_blob(victim).readall()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    copy = victim.replace("/traces/", "/traces/copy-")
    other_key = tmp_path / "other-dek.json"
    save_dek_file(other_key, DataKey.generate())
    attacks = {
        "flip-byte": lambda: container.upload_blob(victim, bytes(flipped), overwrite=True),
        "truncate": lambda: container.upload_blob(victim, original[:-1], overwrite=True),
        "moved": lambda: container.upload_blob(copy, original),  # a valid object copied to another name
        "wrong-key": lambda: None,
    }
    out = tmp_path / "download"
    for attack, apply in attacks.items():
        apply()
        capsys.readouterr()
        key = other_key if attack == "wrong-key" else room.telemetry_key
        code = ccr(["telemetry", "download", "--spec", str(room.spec), "--endpoints", str(room.endpoints),
                    "--dek-file", str(key), "-o", str(out)])
        error = capsys.readouterr().err
        assert code == 1, attack
        assert "failed verification" in error and "refused" in error, (attack, error)
        assert (copy if attack == "moved" else victim) in error, attack
        assert not out.exists() or not any(out.rglob("*.binpb")), attack
        container.upload_blob(victim, original, overwrite=True)
        if attack == "moved":
            container.delete_blob(copy)
    # Untouched again: the same download succeeds.
    assert download(room, "telemetry", out) == 0


def test_sink_key_released_at_export_time_and_nothing_leaves_without_it(start_room, governance):
    """Without a DEK file the room releases the sink's DEK (Key Vault secret + skr) at the first export:
    the sidecar starts and receives before skr is up, and an export whose key cannot be released fails
    before anything is audited or sent."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    try:
        room = start_room("--skr-url", f"http://127.0.0.1:{port}", "--identity-url", f"http://127.0.0.1:{port}",
                          dek_files=False)
        room.emit_startup()
        governance.consent["telemetry"] = "enabled"
        response = httpx.post(room.http_url + "/gov/exportTelemetry", timeout=60)
    finally:
        closed.close()
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert "Key Vault" in message and "telemetry-dek" in message, message  # names the service and the secret
    assert governance.events == []
    assert room.azurite.blobs(room.telemetry_container) == {}


def test_failed_audit_blocks_export(start_room, governance):
    room = start_room()
    governance.consent["telemetry"] = "enabled"
    governance.audit_fails = True
    room.emit_startup()
    response = httpx.post(room.http_url + "/gov/exportTelemetry", timeout=30)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "AuditNotAcknowledged"
    assert room.azurite.blobs(room.telemetry_container) == {}
    # Once audit works again, the same records are exported (the failed export did not lose them).
    governance.audit_fails = False
    assert httpx.post(room.http_url + "/gov/exportTelemetry", timeout=30).json()["status"] == "exported"


def test_otlp_json_and_grpc_are_received_and_nothing_is_clear_on_disk(start_room, governance, tmp_path, capsys):
    room = start_room()
    room.emit_startup(protocol="grpc")
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    start = datetime.now(UTC).timestamp()
    payload = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-client"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "json-span-unmistakable", "kind": 1,
            "startTimeUnixNano": str(int(start * 1e9)), "endTimeUnixNano": str(int(start * 1e9) + 5_000_000),
            "status": {"code": 2, "message": "boom"}, "someFutureField": 1}]}]}]}
    response = httpx.post(room.http_url + "/v1/traces", json=payload)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    bad = httpx.post(room.http_url + "/v1/traces", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert httpx.post(room.http_url + "/v1/traces", content=b"x", headers={"Content-Type": "text/plain"}
                      ).status_code == 415

    # On disk there is only ciphertext: neither span names nor ids appear in the buffer.
    on_disk = b"".join(p.read_bytes() for p in room.buffer_dir.rglob("*") if p.is_file())
    assert len(on_disk) > 1000
    for needle in (b"json-span-unmistakable", b"room.startup", b"maa.token", bytes.fromhex(span_id),
                   span_id.encode(), base64.b64encode(bytes.fromhex(trace_id))):
        assert needle not in on_disk

    governance.consent["telemetry"] = "enabled"
    assert httpx.post(room.http_url + "/gov/exportTelemetry", timeout=30).status_code == 200
    out = tmp_path / "download"
    assert download(room, "telemetry", out) == 0
    capsys.readouterr()
    assert ccr(["telemetry", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"trace {trace_id[:16]}" in shown and "json-span-unmistakable" in shown and "FAILED: boom" in shown
    assert " maa.token " in shown  # the gRPC startup trace arrived as well


def test_app_log_handover_rejects_malformed_lines(start_room):
    room = start_room()
    cases = {b'{"time": "2026-11-24T05:00:00Z", "stream": "stdin", "line": "x"}': "stream",
             b'{"time": "yesterday", "stream": "stdout", "line": "x"}': "time",
             b'not json': "line 1",
             b'{"time": 1, "stream": "stdout", "line": "ok"}\n{"time": 2, "stream": "stdout"}': "line 2"}
    for body, named in cases.items():
        response = httpx.post(room.http_url + "/logs/app", content=body)
        assert response.status_code == 400
        assert named in response.json()["error"]["message"]
    assert room.records() == 0
    response = httpx.post(room.http_url + "/logs/app?app=demo-app", content=json.dumps(
        {"time": 1_700_000_000_000_000_000, "stream": "stderr", "line": "x"}))
    assert response.json() == {"accepted": 1} and room.records() == 1


def test_keep_alive_requests_are_not_delayed(start_room):
    """A sidecar built on sidecars/common/http.py answers keep-alive requests without a delayed-ACK stall
    (~40 ms each when TCP_NODELAY is missing), which is what the launcher's log hand-over relies on."""
    import http.client
    import statistics
    import time
    from urllib.parse import urlparse

    room = start_room()
    url = urlparse(room.http_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        connection.request("POST", "/logs/app?app=a", body=b'{"time": 1, "stream": "stdout", "line": "x"}')
        response = connection.getresponse()
        assert response.status == 200 and response.read()
        timings.append(time.perf_counter() - started)
    connection.close()
    assert statistics.median(timings) < 0.02, timings
