"""The room's network namespace and the loopback forwarders, for real (root)."""

import os
import socket
import subprocess
import sys
import threading

import pytest

from sidecars.common.process import ManagedProcess, file_exists
from sidecars.localroom.netns import create_room_network, delete_room_network, netns_exists

pytestmark = pytest.mark.root


@pytest.fixture
def room():
    name = f"ccr-t{os.getpid()}"
    net = create_room_network(name)
    yield net
    delete_room_network(name)


def in_room(net, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", net.netns, sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_room_has_v4_and_v6_link_to_host(room, family):
    host = room.host_v4 if family == socket.AF_INET else room.host_v6
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind((host, 0))
        server.listen()
        port = server.getsockname()[1]
        threading.Thread(target=lambda: server.accept()[0].sendall(b"ok"), daemon=True).start()
        result = in_room(room, f"import socket;s=socket.create_connection(('{host}',{port}),timeout=5);"
                               "print(s.recv(2).decode())")
    assert result.stdout.strip() == "ok", result.stderr


def test_forwarder_makes_host_loopback_port_reachable_inside(room, tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer():
            conn, _ = server.accept()
            conn.sendall(b"hello " + conn.recv(5))
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        before = in_room(room, f"import socket;socket.create_connection(('127.0.0.1',{port}),timeout=2)")
        assert before.returncode != 0, "the room's loopback is its own: nothing listens there yet"
        ready = tmp_path / "ready"
        with ManagedProcess("forward", [sys.executable, "-m", "sidecars.localroom.forward", "--netns", room.netns,
                                        "--port", str(port), "--ready-file", str(ready)],
                            ready=file_exists(ready), ready_timeout=10, log_path=tmp_path / "f.log"):
            result = in_room(room, f"import socket;s=socket.create_connection(('127.0.0.1',{port}),timeout=5);"
                                   "s.sendall(b'world');print(s.recv(64).decode())")
    assert result.stdout.strip() == "hello world", result.stderr


def test_delete_removes_netns_and_host_link(room):
    assert delete_room_network(room.netns)
    assert not netns_exists(room.netns)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert room.host_if + ":" not in links and room.host_if + "@" not in links
    assert delete_room_network(room.netns) is False
