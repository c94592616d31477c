"""The launcher's watchdog against real loopback servers: a sidecar that answers (even 503) is alive; one
that refuses or freezes is lost once, after `lost_after_s`, with its own failure policy; a frozen one delays
no other."""

from __future__ import annotations

import asyncio
import socket

from sidecars.common.sidecar import FailurePolicy
from sidecars.launcher.watchdog import SidecarLoss, Watchdog


async def _serve(status: int) -> tuple[asyncio.base_events.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\n{{}}".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dead_and_frozen_sidecars_are_lost_once_with_their_policy_live_ones_never():
    async def scenario() -> tuple[list[SidecarLoss], dict[str, float]]:
        healthy, healthy_port = await _serve(200)
        sick, sick_port = await _serve(503)
        dying, dying_port = await _serve(200)
        frozen = socket.socket()  # listens, never reads: a SIGSTOPped sidecar
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(8)
        urls = {"healthy": f"http://127.0.0.1:{healthy_port}/status",
                "sick": f"http://127.0.0.1:{sick_port}/status",
                "dying": f"http://127.0.0.1:{dying_port}/status",
                "frozen": f"http://127.0.0.1:{frozen.getsockname()[1]}/status",
                "refused": f"http://127.0.0.1:{_closed_port()}/status"}
        lost: list[SidecarLoss] = []
        when: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def on_lost(loss: SidecarLoss) -> None:
            lost.append(loss)
            when[loss.sidecar] = loop.time() - started

        watchdog = Watchdog(urls, {"dying": "report", "frozen": "stop-app"}, interval_s=0.05, lost_after_s=0.4,
                            on_lost=on_lost)
        task = asyncio.create_task(watchdog.run())
        await asyncio.sleep(0.5)
        dying.close()
        await dying.wait_closed()
        await asyncio.sleep(1.5)
        task.cancel()
        for server in (healthy, sick):
            server.close()
        frozen.close()
        return lost, when

    lost, when = asyncio.run(scenario())
    by_name = {loss.sidecar: loss for loss in lost}
    assert sorted(loss.sidecar for loss in lost) == ["dying", "frozen", "refused"]  # each once
    assert by_name["dying"].policy is FailurePolicy.REPORT
    # not named in the policies: fail closed
    assert by_name["frozen"].policy is by_name["refused"].policy is FailurePolicy.STOP_APP
    assert "ConnectError" in by_name["refused"].error and "Timeout" in by_name["frozen"].error
    assert 0.4 <= when["refused"] < 1.2 and 0.4 <= when["frozen"] < 1.5
    # died at 0.5 s: lost 0.4 s after its last answer, which came at most one interval before
    assert 0.8 <= when["dying"] < 1.8
