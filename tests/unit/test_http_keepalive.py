"""Keep-alive requests to a served app must not wait for delayed ACKs (a missing TCP_NODELAY costs ~40 ms
per request on Linux: the response's header and body writes are split across two segments)."""

from __future__ import annotations

import statistics
import threading
import time

import httpx

from sidecars.common.http import create_app, serve


def test_keep_alive_requests_do_not_wait_for_delayed_acks():
    app = create_app("keepalive")

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    ready = threading.Event()
    ports: list[int] = []
    threading.Thread(target=serve, args=(app, "127.0.0.1", 0),
                     kwargs={"on_ready": lambda port: (ports.append(port), ready.set())}, daemon=True).start()
    assert ready.wait(30)
    with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}") as client:
        client.get("/ping")
        samples = []
        for _ in range(7):
            started = time.perf_counter()
            assert client.get("/ping").status_code == 200
            samples.append(time.perf_counter() - started)
    assert statistics.median(samples) < 0.025, f"median keep-alive request {statistics.median(samples) * 1000:.1f} ms"
