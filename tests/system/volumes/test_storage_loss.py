"""A datasink whose storage goes away mid-run: the app is told (EIO on fsync, close and every later write),
never a success for bytes that did not reach storage, and storage holds no object that looks complete.

Storage is "unplugged" by routing the mount through a TCP relay on loopback that the test closes: existing
connections are cut and new ones refused, as when the storage service stops or the network path drops.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest

pytestmark = pytest.mark.root
MIB = 1024 * 1024


class Relay:
    """Forwards loopback TCP connections to `target` until `unplug()`."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.unplugged = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.unplugged:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(256 * 1024):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def unplug(self) -> None:
        self.unplugged = True
        # shutdown wakes the thread blocked in accept(); close alone would leave the socket listening.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@pytest.fixture(params=["azure_blob", "s3"])
def store_kind(request) -> str:
    """Storage lost under Azure Blob and under S3."""
    return request.param


@pytest.fixture
def relay(bucket):
    parts = urlsplit(bucket.service_url)
    relay = Relay((parts.hostname, parts.port))
    yield relay, urlunsplit(parts._replace(netloc=f"{parts.hostname}:{relay.port}"))
    relay.unplug()


def expect_eio(call) -> None:
    with pytest.raises(OSError) as info:
        call()
    assert info.value.errno == errno.EIO, info.value


def test_storage_lost_mid_file_is_eio_on_fsync_write_and_close(bucket, relay) -> None:
    proxy, url = relay
    mnt = bucket.mount(writable=True, storage_url=url, extra=["--storage-retries", "0"])
    (mnt / "before.txt").write_text("reached storage")  # committed while storage is there
    fd = os.open(mnt / "out.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    second = os.dup(fd)  # `sh -c 'cmd > f'`: two descriptors of one open file
    os.write(fd, os.urandom(5 * MIB))  # Blob: one 4 MiB block staged through the relay
    proxy.unplug()
    os.write(fd, os.urandom(4 * MIB))  # the next block's (S3: the first 8 MiB part's) staging fails in the background
    expect_eio(lambda: os.fsync(fd))
    expect_eio(lambda: os.write(fd, b"more"))  # never acknowledged after a loss
    expect_eio(lambda: os.close(fd))
    expect_eio(lambda: os.close(second))  # every close says so, not only the first
    assert "out.bin" not in bucket.sizes()  # nothing half-written under the name
    assert bucket.raw("before.txt")  # what was committed before the loss stays
    assert "EIO" in bucket.log() and "out.bin" in bucket.log()


def test_a_small_file_written_while_storage_is_away_fails_its_close(bucket, relay) -> None:
    proxy, url = relay
    mnt = bucket.mount(writable=True, storage_url=url, extra=["--storage-retries", "0"])
    proxy.unplug()
    fd = os.open(mnt / "result.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert os.write(fd, b'{"answer": 42}') == 14  # buffered in the room: not yet a promise
    expect_eio(lambda: os.close(fd))
    assert os.stat(mnt / "result.json").st_size == 0  # the tree shows what storage holds: nothing
    assert "result.json" not in bucket.sizes()
