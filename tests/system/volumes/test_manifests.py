"""Storage that lies, caught by manifests: an older authentic version written back, an object deleted, one
added, two swapped, the manifest replaced. Each is refused by the mount (EIO at open, or no mount at all) and
by `ccr data download`; a datasink's results come with the room's signed manifest, and a download refuses
anything it does not vouch for."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sidecars.cli import main
from sidecars.common.process import wait_until
from sidecars.volumes import manifest as mf

pytestmark = pytest.mark.root
S = 64 * 1024


@pytest.fixture(params=["azure_blob", "s3"])
def store_kind(request) -> str:
    """Every attack over Azure Blob and over S3."""
    return request.param


def download(bucket, dest, *extra) -> int:
    return main(["data", "download", "-o", str(dest), *bucket.download_args(), "--secret", "unused",
                 "--dek-file", str(bucket.dek_file), *extra])


def published(bucket) -> tuple[dict[str, bytes], dict[str, bytes], str]:
    """Four objects published, then "a" published again: returns the data, the raw *older* version of "a",
    and the pin of the manifest naming the current version."""
    data = {"a": os.urandom(3 * S + 5), "b": os.urandom(S), "c": os.urandom(S), "dir/d": b"d" * 100}
    for name, value in data.items():
        bucket.publish(name, value)
    older = {"a": bucket.raw("a")}
    data["a"] = os.urandom(3 * S + 5)  # same size: only the version differs
    bucket.publish("a", data["a"])
    return data, older, bucket.publish_manifest()


def start_failing(proc, status) -> dict:
    """A mount that must refuse to start: its verdict (status file) once the process has exited."""
    proc.start()  # ready as soon as the status file exists, which a refusal writes too
    proc.popen.wait(timeout=30)
    assert proc.popen.returncode == 1
    return json.loads(status.read_text())


def open_errno(path) -> int | None:
    try:
        with open(path, "rb") as f:
            f.read()
    except OSError as exc:
        return exc.errno
    return None


class AuditSink:
    """Stands in for the governance sidecar's `PUT /events`: records what the mount audits."""

    def __init__(self):
        events = self.events = []

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):  # noqa: N802 (http.server's spelling)
                events.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def audit_sink():
    sink = AuditSink()
    yield sink
    sink.server.shutdown()


def test_the_mount_refuses_a_rollback_and_an_addition_and_a_swap(bucket, tmp_path, audit_sink) -> None:
    data, older, pin = published(bucket)
    bucket.put_raw("a", older["a"])               # roll "a" back to its older, authentic version
    b, c = bucket.raw("b"), bucket.raw("c")
    bucket.put_raw("b", c)                         # swap two objects of one size
    bucket.put_raw("c", b)
    bucket.put("planted.csv", b"x,y\n")            # add one (encrypted with the right DEK, even)
    mnt = bucket.mount(extra=["--manifest-sha256", pin, "--governance-url", audit_sink.url])
    assert sorted(os.listdir(mnt)) == ["a", "b", "c", "dir"]  # the manifest's objects only
    assert open_errno(mnt / "a") == errno.EIO      # authentic, but not the version the manifest names
    assert open_errno(mnt / "b") == errno.EIO
    assert open_errno(mnt / "c") == errno.EIO
    assert (mnt / "dir/d").read_bytes() == data["dir/d"]
    log = bucket.log()
    assert "a: not the version the manifest names" in log and "planted.csv: it is not in the manifest" in log
    assert open_errno(mnt / "a") == errno.EIO  # again: audited once, not once per attempt
    wait_until(lambda: len(audit_sink.events) >= 3, 10, "the refusals to be audited")
    refused = sorted(e["reason"].split(":")[0].rsplit("/", 1)[-1] for e in audit_sink.events)
    assert refused == ["a", "b", "c"] and {e["event"] for e in audit_sink.events} == {"object-refused"}
    # Without the pin the rollback passes: what the manifest adds.
    unpinned = bucket.mount()
    assert (unpinned / "a").read_bytes() != data["a"]

    out = tmp_path / "out"
    assert download(bucket, out, "--manifest-sha256", pin) == 1
    # All or nothing: the intact object is not written either, so no partial dataset looks complete.
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_a_deleted_object_or_a_replaced_manifest_fails_the_mount(bucket, tmp_path, capsys, audit_sink) -> None:
    _, _, pin = published(bucket)
    bucket.delete("c")
    proc, _, status = bucket.start_mount(["--manifest-sha256", pin, "--governance-url", audit_sink.url])
    verdict = start_failing(proc, status)
    assert verdict["state"] == "failed" and "/c: named by the manifest but missing" in verdict["reason"]
    assert [e["event"] for e in audit_sink.events] == ["mount-refused"]
    assert "/c: named by the manifest but missing" in audit_sink.events[0]["reason"]
    assert download(bucket, tmp_path / "out", "--manifest-sha256", pin) != 0
    assert "object c named by the manifest is missing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    # Storage swaps in a manifest of its own making (one that does not name the deleted object).
    del bucket.entries["c"]
    bucket.publish_manifest()
    proc, _, status = bucket.start_mount(["--manifest-sha256", pin])
    verdict = start_failing(proc, status)
    assert verdict["state"] == "failed" and "not the" in verdict["reason"]


def test_download_checks_the_digest_of_every_byte(bucket, tmp_path) -> None:
    data, older, pin = published(bucket)
    out = tmp_path / "ok"
    assert download(bucket, out, "--manifest-sha256", pin) == 0
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == data
    bucket.put_raw("a", older["a"])
    assert download(bucket, tmp_path / "rolled", "--manifest-sha256", pin) == 1
    assert not (tmp_path / "rolled" / "a").exists()


def test_a_sink_download_needs_the_rooms_signed_manifest(bucket, tmp_path, capsys, audit_sink) -> None:
    mnt = bucket.mount(writable=True, extra=["--governance-url", audit_sink.url])
    (mnt / "result.json").write_text('{"answer": 42}')
    first = os.urandom(2 * S)
    (mnt / "model.bin").write_bytes(first)
    older = bucket.raw("model.bin")
    (mnt / "model.bin").write_bytes(os.urandom(2 * S))   # the app rewrites it: the manifest names this one
    (mnt / "scratch").write_text("gone")
    os.unlink(mnt / "scratch")
    bucket.unmount_all()                                 # the run ends: the room signs its manifest
    ca = str(bucket.keys.ca_file)
    # The manifest's hash is on the contract's audit log: a whole earlier run written back would not match it.
    signed = json.loads(bucket.raw(mf.MANIFEST_BLOB))
    [event] = [e for e in audit_sink.events if e["event"] == "sink-manifest"]
    assert event["manifest_sha256"] == hashlib.sha256(mf.canonical(signed["manifest"])).hexdigest()
    assert event["run"] == signed["manifest"]["run"] and event["objects"] == 2

    def fetch(name: str, *extra) -> int:
        return download(bucket, tmp_path / name, "--contract-ca", ca, "--contract", "collab", *extra)

    def refused(name: str, *extra) -> str:
        capsys.readouterr()
        assert fetch(name, *extra) != 0
        assert not (tmp_path / name / "model.bin").exists() and not (tmp_path / name / "result.json").exists()
        return capsys.readouterr().err

    assert fetch("ok") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["verified"] is True
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["model.bin", "result.json"]

    bucket.put_raw("model.bin", older)                   # rolled back to the first version
    assert "model.bin: not the version the manifest names" in refused("rolled")
    bucket.delete("model.bin")               # deleted
    assert "model.bin named by the manifest is missing" in refused("deleted")
    bucket.put_raw("model.bin", older)
    bucket.put("extra.csv", b"1")                        # added after the run
    assert "extra.csv is not in the manifest" in refused("added")
    # Downloading anyway is explicit and marked.
    capsys.readouterr()
    assert fetch("untrusted", "--untrusted") == 0
    captured = capsys.readouterr()
    assert "--untrusted" in captured.err and json.loads(captured.out.strip().splitlines()[-1])["verified"] is False
    assert "for contract 'collab', not 'other'" in refused("other", "--contract", "other")
    bucket.delete("extra.csv")

    signed = bucket.raw(mf.MANIFEST_BLOB)
    bucket.put_raw(mf.MANIFEST_BLOB, signed[:-10])        # truncated
    assert "malformed" in refused("truncated")
    bucket.delete(mf.MANIFEST_BLOB)          # absent
    assert "no signed manifest" in refused("absent")


def test_the_app_cannot_write_the_reserved_manifest_folder(bucket) -> None:
    mnt = bucket.mount(writable=True)
    with pytest.raises(OSError) as info:
        (mnt / ".ccr").mkdir()
    assert info.value.errno == errno.EPERM
    with pytest.raises(OSError) as info:
        (mnt / ".ccr").write_text("forged")
    assert info.value.errno == errno.EPERM
    (mnt / ".ccr-not-reserved").write_text("fine")
    bucket.unmount_all()
    assert mf.is_reserved(mf.MANIFEST_BLOB) and bucket.raw(".ccr-not-reserved")
