"""S3 volumes through the mount in each mode (CSE, SSE-C, SSE), and the room's S3 credentials: read from a CGS
secret through governance only (never in the mount's command line, environment or log), or a role assumed
with the room's federated token; a refusal is one line naming the bucket and the secret, and no mount."""

from __future__ import annotations

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sidecars.common.process import ManagedProcess
from sidecars.spec import EncryptionMode, S3Credentials, S3Store

pytestmark = pytest.mark.root
MIB = 1024 * 1024
SECRET_ID = "s3core0member_publisher-s3"
ROLE = "arn:aws:iam::123456789012:role/s3core-room"
CONTRACT = "s3core-contract"
#: The key pair the owner stored for the room (the owner's own, in the test's environment, is another).
ROOM_KEYS = {"access_key_id": "s3core-room", "secret_access_key": "s3core-room-only-secret"}


@pytest.fixture
def store_kind() -> str:
    return "s3"


class Governance:
    """Stands in for the room's governance sidecar: releases one secret, issues federated tokens, audits."""

    def __init__(self, secrets: dict[str, str]):
        self.calls: list[str] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict | None = None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 (http.server's spelling)
                calls.append(self.path)
                if self.path.startswith("/secrets/"):
                    value = secrets.get(self.path.removeprefix("/secrets/"))
                    if value is None:
                        return self._answer(403, {"error": {"code": "ConsentDenied",
                                                            "message": "execution consent is disabled"}})
                    return self._answer(200, {"value": value})
                if self.path.startswith("/oauth/token"):
                    return self._answer(200, {"value": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjb250cmFjdCJ9.c2ln"})
                return self._answer(404, {"error": {"code": "NotFound", "message": self.path}})

            def do_GET(self):  # noqa: N802
                calls.append(self.path)
                if self.path == "/status":
                    return self._answer(200, {"contractId": CONTRACT})
                return self._answer(404, {"error": {"code": "NotFound", "message": self.path}})

            def do_PUT(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self._answer(204)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def governance():
    gov = Governance({SECRET_ID: json.dumps(ROOM_KEYS)})
    yield gov
    gov.server.shutdown()


def room_mount(bucket, governance, credentials: S3Credentials, *extra: str) -> tuple[ManagedProcess, Path, Path]:
    """Mount as the volumes sidecar does in a room: the store as the spec says, credentials from governance."""
    bucket.store = S3Store.model_validate({**bucket.store.model_dump(), "credentials": credentials.model_dump()})
    proc, mountpoint, status = bucket.start_mount(["--governance-url", governance.url, *extra])
    # start_mount gave the test's credentials file: a room has none.
    at = proc.argv.index("--s3-credentials-file")
    del proc.argv[at:at + 2]
    return proc, mountpoint, status


@pytest.mark.slow
@pytest.mark.parametrize("mode", [EncryptionMode.CSE, EncryptionMode.SSE_C, EncryptionMode.SSE])
def test_each_mode_writes_and_reads_through_the_mount(make_bucket, mode) -> None:
    bucket = make_bucket(mode)
    big, small = os.urandom(16 * MIB + 4321), b"answer,42\n"  # three 8 MiB parts, and one PutObject
    sink = bucket.mount(writable=True)
    sink_process = bucket.mounts[-1][0]
    (sink / "model.bin").write_bytes(big)
    (sink / "out" / "result.csv").parent.mkdir()
    (sink / "out" / "result.csv").write_bytes(small)
    bucket.unmount_all()
    stored = bucket.sizes()
    assert set(stored) == {"model.bin", "out/result.csv", ".ccr/manifest.json"}
    raw = bucket.raw("out/result.csv")
    if mode is EncryptionMode.CSE:
        assert small not in raw  # the provider holds ciphertext only
    else:
        assert raw == small  # SSE-C, SSE: S3 sees clear text (moto stores it as is, ignoring the SSE-C key)
    source = bucket.mount()
    assert (source / "model.bin").read_bytes() == big and (source / "out/result.csv").read_bytes() == small
    if mode is EncryptionMode.SSE_C:
        key_b64 = base64.b64encode(bucket.dek.export_material()).decode()
        assert key_b64 not in sink_process.output() + bucket.log()


def test_a_sink_aborts_the_uploads_an_earlier_session_left(make_bucket) -> None:
    """A write whose abort failed (the store unreachable then) leaves its parts, billed, until aborted: the
    next datasink mount of the volume aborts it before it writes; a read-only mount changes nothing."""
    bucket = make_bucket(EncryptionMode.SSE)
    key = bucket.key("out.bin")
    left = bucket.s3.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
    bucket.s3.upload_part(Bucket=bucket.name, Key=key, UploadId=left, PartNumber=1, Body=b"x" * 1024)
    source = bucket.mount()
    assert list(source.iterdir()) == []  # nothing of an incomplete upload shows
    bucket.unmount_all()
    assert [u["UploadId"] for u in bucket.s3.list_multipart_uploads(Bucket=bucket.name)["Uploads"]] == [left]
    sink = bucket.mount(writable=True)
    sink_process = bucket.mounts[-1][0]
    (sink / "out.bin").write_bytes(b"this run's result")
    bucket.unmount_all()
    assert bucket.s3.list_multipart_uploads(Bucket=bucket.name).get("Uploads", []) == []
    assert "aborted 1 incomplete upload(s) earlier sessions left" in sink_process.output()
    assert bucket.raw("out.bin") == b"this run's result"


def test_the_room_reads_its_key_pair_from_governance_and_nowhere_else(bucket, governance) -> None:
    bucket.put("data.csv", b"a,b\n1,2\n")
    proc, mountpoint, _ = room_mount(bucket, governance, S3Credentials(secret=SECRET_ID))
    proc.start()
    bucket.mounts.append((proc, mountpoint))
    assert (mountpoint / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert governance.calls == [f"/secrets/{SECRET_ID}"]
    pid = proc.popen.pid
    for where in (f"/proc/{pid}/cmdline", f"/proc/{pid}/environ"):
        assert ROOM_KEYS["secret_access_key"].encode() not in Path(where).read_bytes(), where
    bucket.unmount_all()
    assert ROOM_KEYS["secret_access_key"] not in proc.output()


def test_the_room_assumes_its_role_with_its_federated_token(bucket, governance) -> None:
    bucket.put("data.csv", b"x")
    proc, mountpoint, _ = room_mount(bucket, governance, S3Credentials(role_arn=ROLE))
    proc.start()
    bucket.mounts.append((proc, mountpoint))
    assert (mountpoint / "data.csv").read_bytes() == b"x"
    # The sidecars' subject, which the role's trust names: never the app's (the contract id).
    assert governance.calls == ["/status",
                                f"/oauth/token?tenantId=common&aud=sts.amazonaws.com&sub={CONTRACT}%2Fccr-sidecars"]
    assert "eyJhbGciOiJSUzI1NiJ9" not in proc.output()  # the token is no log line either


@pytest.mark.slow
@pytest.mark.parametrize(("secret", "why"), [
    ("s3core0member_other", "governance: S3 credentials for bucket {bucket}: CGS secret s3core0member_other not "
                            "released (ConsentDenied: execution consent is disabled)"),
    ("s3core0member_malformed", "S3 credentials for bucket {bucket}: CGS secret s3core0member_malformed: not JSON"),
])
def test_credentials_the_room_does_not_get_are_one_line_and_no_mount(bucket, secret, why) -> None:
    gov = Governance({"s3core0member_malformed": "AKIA-not-json-s3core"})
    try:
        proc, _, status = room_mount(bucket, gov, S3Credentials(secret=secret))
        proc.start()
        proc.popen.wait(timeout=30)
        assert proc.popen.returncode == 1
        reason = json.loads(status.read_text())["reason"]
        assert reason.startswith(why.format(bucket=bucket.name)) and "\n" not in reason, reason
        assert "AKIA-not-json-s3core" not in reason + proc.output()
    finally:
        gov.server.shutdown()


@pytest.mark.parametrize("writable", [False, True])
def test_a_bucket_that_does_not_exist_is_one_line_and_no_mount(bucket, writable) -> None:
    # A datasource's room refuses to start; a datasink's too, before the app writes anything.
    bucket.store = S3Store.model_validate({**bucket.store.model_dump(), "bucket": "s3core-no-such-bucket"})
    proc, _, status = bucket.start_mount(["--writable", "--no-manifest"] if writable else [])
    proc.start()
    proc.popen.wait(timeout=30)
    assert proc.popen.returncode == 1
    reason = json.loads(status.read_text())["reason"]
    assert reason == f"S3: bucket s3core-no-such-bucket does not exist ({bucket.s3_endpoints['s3_endpoint']})"
