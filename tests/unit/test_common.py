from __future__ import annotations

import socket
import ssl
import sys
import threading
import time

import httpx
import pytest
from pydantic import BaseModel

from sidecars.common.errors import Forbidden, ProcessError
from sidecars.common.http import create_app, plain_error_body, serve
from sidecars.common.otel import setup_telemetry, telemetry_enabled
from sidecars.common.process import ManagedProcess, is_running, port_open, stop_recorded
from sidecars.common.tls import LocalCA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_process_ready_output_and_stop(tmp_path):
    port = free_port()
    code = (f"import socket,sys,time;s=socket.socket();s.bind(('127.0.0.1',{port}));s.listen();"
            "print('listening',flush=True);time.sleep(60)")
    with ManagedProcess("sleeper", [sys.executable, "-c", code], ready=port_open("127.0.0.1", port),
                        ready_timeout=10, log_path=tmp_path / "sleeper.log") as proc:
        record = proc.record()
        assert is_running(record)
        deadline = time.monotonic() + 5
        while "listening" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "listening" in proc.output()
    assert not is_running(record)
    assert stop_recorded(record) is False


def test_stop_reports_how_the_process_really_ended(tmp_path):
    """The stop reaps the process itself, so Popen alone would report 0 for one the SIGTERM killed."""
    ready = tmp_path / "ready"
    killed = ManagedProcess("killed", [sys.executable, "-c", f"open({str(ready)!r}, 'w');import time;time.sleep(60)"],
                            ready=ready.exists, ready_timeout=10, log_path=tmp_path / "k.log")
    killed.start()
    assert killed.stop() == -15
    ready.unlink()
    code = (f"import signal,sys,time;signal.signal(signal.SIGTERM,lambda *_: sys.exit(0));open({str(ready)!r},'w');"
            "time.sleep(60)")
    clean = ManagedProcess("clean", [sys.executable, "-c", code], ready=ready.exists, ready_timeout=10,
                           log_path=tmp_path / "c.log")
    clean.start()
    assert clean.stop() == 0


def test_process_dies_before_ready_reports_output(tmp_path):
    proc = ManagedProcess("crasher", [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"],
                          ready=lambda: False, ready_timeout=10, log_path=tmp_path / "c.log")
    with pytest.raises(ProcessError) as info:
        proc.start()
    assert "exited with code 3" in str(info.value) and "boom: bad config" in str(info.value)


def test_process_not_ready_in_time_is_stopped(tmp_path):
    proc = ManagedProcess("slow", [sys.executable, "-c", "import time; time.sleep(60)"],
                          ready=lambda: False, ready_timeout=0.3, log_path=tmp_path / "s.log")
    with pytest.raises(ProcessError, match="not ready after 0.3 s"):
        proc.start()
    assert not proc.running()


def test_missing_binary_is_clear():
    with pytest.raises(ProcessError, match="cannot start ghost"):
        ManagedProcess("ghost", ["/nonexistent/binary"]).start()


def test_otel_is_noop_without_endpoint():
    assert not telemetry_enabled({})
    assert not telemetry_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
    assert telemetry_enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x"})


class Echo(BaseModel):
    runtime_data: str


def test_app_factory_errors_and_tls(tmp_path):
    app = create_app("t", error_body=plain_error_body)

    @app.post("/echo")
    async def echo(body: Echo):
        if body.runtime_data == "deny":
            raise Forbidden("claim x-ms-sevsnpvm-hostdata does not match")
        return {"echo": body.runtime_data}

    ca = LocalCA.create(tmp_path / "ca")
    tls = ca.issue_server_cert("t")
    ready = threading.Event()
    ports: list[int] = []

    def on_ready(port: int) -> None:
        ports.append(port)
        ready.set()

    thread = threading.Thread(target=serve, args=(app, "127.0.0.1", 0), kwargs={"tls": tls, "on_ready": on_ready},
                              daemon=True)
    thread.start()
    assert ready.wait(10)
    base = f"https://127.0.0.1:{ports[0]}"
    ctx = ssl.create_default_context(cafile=str(ca.cert_file))
    with httpx.Client(verify=ctx) as client:
        assert client.post(f"{base}/echo", json={"runtime_data": "x"}).json() == {"echo": "x"}
        bad = client.post(f"{base}/echo", json={})
        assert bad.status_code == 400 and bad.json() == {"error": "runtime_data: Field required"}
        denied = client.post(f"{base}/echo", json={"runtime_data": "deny"})
        assert denied.status_code == 403 and "hostdata" in denied.json()["error"]
    with pytest.raises(httpx.ConnectError), httpx.Client() as untrusting:
        untrusting.get(f"{base}/echo")
    assert setup_telemetry("t").enabled is False
