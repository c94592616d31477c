"""A room to attack: two network namespaces this test builds (never the host's own rules).

    room netns  veth 10.231.0.1/24, fd0c:c000::1/64, default routes via the outside host
    outside     veth 10.231.0.2/24, fd0c:c000::2/64, and 169.254.169.254 (a metadata endpoint)

The outside host listens on TCP 22, 53, 80, 443, 5432 (IPv4 and IPv6) and UDP 53, and records every
connection and datagram. In the room, small listeners stand in for the proxy (15001 inbound, 15002
HTTP, 15003 TCP; each answers with the original destination read with SO_ORIGINAL_DST) and for a
sidecar on 127.0.0.1:8284. The app is uid 1000 (setpriv); `attacks.py` holds what it tries.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from sidecars.common.process import ManagedProcess
from sidecars.firewall import Firewall
from sidecars.firewall.netns import run_in_netns
from sidecars.room.registry import layout
from sidecars.spec import CleanRoomSpec, parse_spec

HERE = Path(__file__).resolve().parent
ATTACKS = HERE / "attacks.py"
REPO = HERE.parents[2]
ROOM_V4, OUTSIDE_V4 = "10.231.0.1", "10.231.0.2"
ROOM_V6, OUTSIDE_V6 = "fd0c:c000::1", "fd0c:c000::2"
ROOM_MAC, OUTSIDE_MAC = "02:cc:00:00:00:01", "02:cc:00:00:00:02"
METADATA = "169.254.169.254"
APP_UID = 1000
APP_PORT = 8080
SIDECAR_PORT = 8284
OUTSIDE_TCP_PORTS = (22, 53, 80, 443, 5432)
PROXY_PORTS = {15001: "inbound", 15002: "http", 15003: "tcp"}
SO_ORIGINAL_DST = 80
VARIABLES = {"cgs_endpoint": "https://127.0.0.1:9001", "maa_endpoint": "https://127.0.0.1:9002",
             "storage_url": "https://127.0.0.1:9003/devstoreaccount1", "keyvault_url": "https://127.0.0.1:9004"}
BACKENDS = ("nftables", "iptables")
_counter = itertools.count()


def sh(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def spec_data(egress: dict | None = None, sidecar_apis: tuple[str, ...] = ()) -> dict:
    data = yaml.safe_load((REPO / "examples/cleanroomhello-api/spec.yaml").read_text())
    data["endpoints"] = [{"name": "hello", "port": APP_PORT}]
    data["egress"] = egress or {"allow": []}
    data["application"]["sidecar_apis"] = list(sidecar_apis)
    return data


def make_spec(egress: dict | None = None, sidecar_apis: tuple[str, ...] = ()) -> CleanRoomSpec:
    return parse_spec(spec_data(egress, sidecar_apis), variables=VARIABLES)


EGRESS = {"dns": "tcp", "allow": [
    {"host": "plain.example.com", "port": 80, "protocol": "http"},
    {"host": "api.example.com", "port": 443, "protocol": "https"},
    {"host": OUTSIDE_V4, "port": 5432, "protocol": "tcp"},
]}


@dataclass
class Recorder:
    """A listener in a namespace, recording who reached it (and with which original destination)."""

    label: str
    sockets: list[socket.socket]
    seen: list[dict] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    def wait_seen(self, count: int, timeout: float = 5.0) -> list[dict]:
        """What it saw once it saw `count` (or at `timeout`): the kernel answers a ping before the recorder's
        thread reads its copy from the raw socket, so a reply can come back before the record exists."""
        deadline = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.seen

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _original_destination(conn: socket.socket) -> str | None:
    if conn.family != socket.AF_INET:
        return None
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port, = struct.unpack("!H", raw[2:4])
    return f"{socket.inet_ntoa(raw[4:8])}:{port}"


def _serve_tcp(recorder: Recorder, sock: socket.socket) -> None:
    while not recorder.closed.is_set():
        try:
            conn, peer = sock.accept()
        except OSError:
            return
        with conn:
            original = _original_destination(conn)
            recorder.seen.append({"peer": peer[0], "local": conn.getsockname()[0], "original": original})
            with contextlib.suppress(OSError):
                # Read the caller's greeting first: closing with unread data would send a reset, which
                # a proxy in between may pass on before our answer.
                conn.settimeout(5)
                conn.recv(1024)
                conn.sendall(f"{recorder.label} original={original}\n".encode())


def _serve_udp(recorder: Recorder, sock: socket.socket) -> None:
    while not recorder.closed.is_set():
        try:
            data, peer = sock.recvfrom(2048)
        except OSError:
            return
        if peer is None:  # shut down
            return
        recorder.seen.append({"peer": peer[0], "bytes": len(data)})


def _serve_icmp(recorder: Recorder, sock: socket.socket) -> None:
    """Echo requests carrying the attack's marker (raw sockets see every ICMP packet, ND too)."""
    while not recorder.closed.is_set():
        try:
            data, peer = sock.recvfrom(2048)
        except OSError:
            return
        if peer is None:
            return
        message = data if sock.family == socket.AF_INET6 else data[(data[0] & 0x0F) * 4:]
        if message[:1] in (b"\x08", b"\x80") and message.endswith(b"ccr"):
            recorder.seen.append({"peer": peer[0]})


def listen_icmp(netns: str) -> Recorder:
    def bind() -> list[socket.socket]:
        return [socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)]

    sockets = run_in_netns(netns, bind)
    recorder = Recorder("outside-icmp", sockets)
    for sock in sockets:
        threading.Thread(target=_serve_icmp, args=(recorder, sock), daemon=True).start()
    return recorder


def listen(netns: str, label: str, host: str, port: int, *, udp: bool = False) -> Recorder:
    def bind() -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        if not udp:
            sock.listen(16)
        return sock

    sock = run_in_netns(netns, bind)
    recorder = Recorder(label, [sock])
    threading.Thread(target=_serve_udp if udp else _serve_tcp, args=(recorder, sock), daemon=True).start()
    return recorder


def listening(netns: str, port: int) -> bool:
    """Whether a TCP socket listens on `port` in `netns` (the thread's own /proc view of the namespace)."""
    def read() -> bool:
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/thread-self/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                    return True
        return False

    return run_in_netns(netns, read)


@dataclass
class Room:
    name: str
    outside: str
    outside_tcp: dict[int, Recorder]
    outside_udp: Recorder
    outside_icmp: Recorder
    proxy: dict[int, Recorder]
    sidecar: Recorder

    def firewall(self, backend: str, spec: CleanRoomSpec | None = None, **options) -> Firewall:
        return Firewall.from_spec(spec or make_spec(), layout(), backend=backend, netns=self.name, **options)

    def attack(self, *args: str, uid: int | None = APP_UID, netns: str | None = None) -> dict:
        """Run one attack (attacks.py) in the room as `uid` (None: as root); its JSON verdict."""
        prefix = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] if uid is not None else []
        argv = ["ip", "netns", "exec", netns or self.name, *prefix, sys.executable, str(ATTACKS), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        assert done.returncode == 0, f"attack {args} crashed: {done.stderr}"
        return json.loads(done.stdout)

    def app(self, *args: str, ready_port: int) -> ManagedProcess:
        """A long-running attacks.py (uid 1000) in the room, ready once `ready_port` listens there."""
        argv = ["ip", "netns", "exec", self.name, "setpriv", "--reuid", str(APP_UID), "--regid", str(APP_UID),
                "--clear-groups", sys.executable, str(ATTACKS), *args]
        # Not a test connection: the firewall would (rightly) reset the app's answer on most ports.
        return ManagedProcess(f"app-{ready_port}", argv, ready=lambda: listening(self.name, ready_port),
                              ready_timeout=10)

    def attack_in_container(self, image: str, attacks: list[list[str]]) -> list[dict]:
        """The attacks from inside a hardened podman container (uid 1000, no capabilities) in the room."""
        name = f"ccrfw-attacker-{os.getpid()}-{next(_counter)}"
        done = podman("run", "--rm", "--name", name, "--user", f"{APP_UID}:{APP_UID}", "--read-only",
                      "--cap-drop=ALL", "--security-opt", "no-new-privileges",
                      "--network", f"ns:/run/netns/{self.name}",
                      "-v", "/usr:/usr:ro", "-v", f"{ATTACKS}:/attacks.py:ro", image,
                      "/usr/bin/python3", "/attacks.py", "batch", json.dumps(attacks))
        assert done.returncode == 0, f"container attack failed: {done.stderr.decode()}"
        return json.loads(done.stdout)

    def from_outside(self, *args: str) -> dict:
        return self.attack(*args, uid=None, netns=self.outside)

    def outside_saw_nothing(self) -> bool:
        return (not any(r.seen for r in self.outside_tcp.values()) and not self.outside_udp.seen
                and not self.outside_icmp.seen)

    def routes(self) -> str:
        done = subprocess.run(["ip", "-n", self.name, "route", "show"], capture_output=True, text=True)
        return done.stdout


def _build_namespaces(room: str, outside: str) -> None:
    sh("ip", "netns", "add", room)
    sh("ip", "netns", "add", outside)
    sh("ip", "link", "add", "veth-room", "address", ROOM_MAC, "netns", room, "type", "veth",
       "peer", "name", "veth-out", "address", OUTSIDE_MAC, "netns", outside)
    for ns, dev, v4, v6 in ((room, "veth-room", ROOM_V4, ROOM_V6), (outside, "veth-out", OUTSIDE_V4, OUTSIDE_V6)):
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
        sh("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
        sh("ip", "-n", ns, "link", "set", dev, "up")
    # Static neighbours: the first packet of a test must not wait for address resolution (a first IPv6
    # neighbour solicitation sent while the peer's link comes up is lost and retried only after 1 s).
    for ns, dev, peer_v4, peer_v6, mac in ((room, "veth-room", OUTSIDE_V4, OUTSIDE_V6, OUTSIDE_MAC),
                                           (outside, "veth-out", ROOM_V4, ROOM_V6, ROOM_MAC)):
        for address in (peer_v4, peer_v6):
            sh("ip", "-n", ns, "neigh", "replace", address, "lladdr", mac, "dev", dev, "nud", "permanent")
    sh("ip", "-n", outside, "addr", "add", f"{METADATA}/32", "dev", "lo")
    sh("ip", "-n", room, "route", "add", "default", "via", OUTSIDE_V4)
    sh("ip", "-n", room, "-6", "route", "add", "default", "via", OUTSIDE_V6)
    # Unprivileged ICMP echo sockets for every gid, so an ICMP attempt is real rather than refused by caps.
    sh("ip", "netns", "exec", room, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")


@pytest.fixture
def room() -> Iterator[Room]:
    suffix = f"{os.getpid()}-{next(_counter)}"
    name, outside = f"ccrfw-room-{suffix}", f"ccrfw-out-{suffix}"
    recorders: list[Recorder] = []
    try:
        _build_namespaces(name, outside)
        outside_tcp = {p: listen(outside, f"outside:{p}", "::", p) for p in OUTSIDE_TCP_PORTS}
        outside_udp = listen(outside, "outside-udp:53", "::", 53, udp=True)
        outside_icmp = listen_icmp(outside)
        proxy = {p: listen(name, f"proxy:{p}", "127.0.0.1" if p != 15001 else "0.0.0.0", p) for p in PROXY_PORTS}
        sidecar = listen(name, "sidecar", "127.0.0.1", SIDECAR_PORT)
        recorders = [*outside_tcp.values(), outside_udp, outside_icmp, *proxy.values(), sidecar]
        yield Room(name, outside, outside_tcp, outside_udp, outside_icmp, proxy, sidecar)
    finally:
        for recorder in recorders:
            recorder.close()
        for ns in (name, outside):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


CONTAINERS_CONF = REPO / "images" / "containers.conf"


def podman(*args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], input=input, capture_output=True, timeout=timeout,
                          env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)})


@pytest.fixture(scope="session")
def attacker_image(tmp_path_factory) -> Iterator[str]:
    """A minimal image (busybox sh, /lib links) that runs the host's Python from a read-only /usr mount,
    so the container runs the very same attacks.py. Imported locally; no registry."""
    root = tmp_path_factory.mktemp("attacker-rootfs")
    for sub in ("bin", "etc", "tmp", "proc", "sys", "dev", "usr"):
        (root / sub).mkdir()
    (root / "bin/busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (root / "bin/busybox").chmod(0o755)
    (root / "bin/sh").symlink_to("busybox")
    for link in ("lib", "lib64", "sbin"):
        (root / link).symlink_to(f"usr/{link}")
    (root / "etc/passwd").write_text(f"root:x:0:0::/:/bin/sh\napp:x:{APP_UID}:{APP_UID}::/tmp:/bin/sh\n")
    (root / "etc/group").write_text(f"root:x:0:\napp:x:{APP_UID}:\n")
    tag = f"localhost/ccr-fw-attacker:{os.getpid()}"
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
    imported = podman("import", "-", tag, input=tar)
    assert imported.returncode == 0, imported.stderr.decode()
    yield tag
    podman("rmi", "--force", tag)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param
