"""The S3 store backend against the S3 stand-in, through boto3 as the mount uses it.

SSE-C is checked against S3's published rules on what the client sends, since moto does not enforce the
key (it serves an SSE-C object without it): every request that reads or writes an object's data carries
x-amz-server-side-encryption-customer-algorithm AES256, the key base64-encoded and the base64 MD5 of the
key, and no URL carries the key. Multipart uploads show nothing under the name before completion and leave
no upload behind when aborted. CSE objects are bound to bucket and key."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import sys
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from sidecars.common import objectformat as fmt
from sidecars.common.errors import NotFound, RemoteServiceError
from sidecars.common.process import ManagedProcess
from sidecars.common.s3_clients import s3_client
from sidecars.common.s3_credentials import key_pair_from_secret
from sidecars.common.tls import LocalCA
from sidecars.spec import EncryptionMode, S3Credentials, S3Store
from sidecars.volumes.store import Volume, customer_key_material
from sidecars.volumes.stores.s3 import S3ObjectStore

from .conftest import s3_client as owner_client

S = fmt.SEGMENT_SIZE
PART = S3ObjectStore.part_segments * S
KEYS = key_pair_from_secret('{"access_key_id": "s3core-room", "secret_access_key": "s3core-room-secret"}', "test")


def store_of(endpoints: dict, bucket: str, prefix: str = "in") -> S3Store:
    return S3Store(kind="s3", endpoint=endpoints["s3_endpoint"], region="us-east-1", bucket=bucket, prefix=prefix,
                   addressing="path", credentials=S3Credentials(secret="owner_s3"))


class Recorder:
    """Every request the client sends, as it leaves (method, URL, headers)."""

    def __init__(self, client):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        client.meta.events.register("before-send.s3.*", self._record)

    def _record(self, request, **_):
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
        self.requests.append((request.method, request.url, headers))


def volume_of(endpoints, bucket, mode, dek, prefix="in"):
    client = s3_client(store_of(endpoints, bucket, prefix), KEYS, ca_bundle=endpoints["ca_bundle"])
    recorder = Recorder(client)
    store = S3ObjectStore(client, store_of(endpoints, bucket, prefix), customer_key_material(mode, dek))
    return Volume(store, mode, dek), recorder


def write(volume, name, data):
    writer = volume.writer(name)
    writer.write(data)
    writer.commit()
    return writer.entry()


def test_sse_c_sends_the_key_its_md5_and_the_algorithm_on_every_data_request_and_never_in_a_url(s3_emulation, bucket):
    dek = fmt.DataKey.generate()
    volume, recorder = volume_of(s3_emulation, bucket, EncryptionMode.SSE_C, dek)
    big = os.urandom(2 * PART + 12345)  # three parts: CreateMultipartUpload, UploadPart ×3, Complete
    write(volume, "big.bin", big)
    write(volume, "small.bin", b"tiny")  # one PutObject
    volume.put_small("manifest.json", b"{}")
    assert volume.get_small("manifest.json", 100) == b"{}"
    reader = volume.reader("big.bin", len(big))
    assert b"".join(reader.read_all()) == big
    assert volume.get_range("small.bin", 1, 3) == b"in"
    material = dek.export_material()
    key_b64 = base64.b64encode(material).decode()
    md5_b64 = base64.b64encode(hashlib.md5(material).digest()).decode()
    data_requests = [r for r in recorder.requests if "list-type=2" not in r[1] and r[0] != "DELETE"]
    kinds = {(m, "uploadId=" in u and "partNumber=" in u, "uploads" in u) for m, u, _ in data_requests}
    assert ("PUT", True, False) in kinds and ("POST", False, True) in kinds  # UploadPart, CreateMultipartUpload
    assert {m for m, _, _ in data_requests} >= {"GET", "HEAD", "PUT", "POST"}
    for method, url, headers in data_requests:
        assert headers.get("x-amz-server-side-encryption-customer-algorithm") == "AES256", (method, url)
        assert headers.get("x-amz-server-side-encryption-customer-key") == key_b64, (method, url)
        assert headers.get("x-amz-server-side-encryption-customer-key-md5") == md5_b64, (method, url)
    for _, url, _ in recorder.requests:
        assert key_b64 not in url and material.hex() not in url and "X-Amz-Credential" not in url
    # What storage holds (moto ignores the key): the plain bytes, which S3 encrypts under the customer key.
    assert owner_client(s3_emulation).get_object(Bucket=bucket, Key="in/small.bin")["Body"].read() == b"tiny"


@pytest.mark.parametrize("mode", [EncryptionMode.CSE, EncryptionMode.SSE])
def test_other_modes_send_no_customer_key(s3_emulation, bucket, mode):
    dek = fmt.DataKey.generate() if mode is EncryptionMode.CSE else None
    volume, recorder = volume_of(s3_emulation, bucket, mode, dek)
    write(volume, "x", b"abc" * 1000)
    assert b"".join(volume.reader("x", volume.store.client.head_object(
        Bucket=bucket, Key="in/x")["ContentLength"]).read_all()) == b"abc" * 1000
    assert not any(k.startswith("x-amz-server-side-encryption-customer") for _, _, h in recorder.requests for k in h)


def test_nothing_is_under_the_name_until_the_upload_completes_and_an_abort_leaves_no_parts(s3_emulation, bucket):
    dek = fmt.DataKey.generate()
    volume, _ = volume_of(s3_emulation, bucket, EncryptionMode.CSE, dek)
    owner = owner_client(s3_emulation)
    writer = volume.writer("result.bin")
    writer.write(os.urandom(3 * PART))  # two parts staged, the third waits for the commit
    writer._pool.shutdown(wait=True)  # the staged parts have reached storage
    assert owner.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert len(owner.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    writer.abort()
    assert owner.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert owner.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_cse_objects_are_bound_to_bucket_and_key(s3_emulation, bucket):
    dek = fmt.DataKey.generate()
    volume, _ = volume_of(s3_emulation, bucket, EncryptionMode.CSE, dek)
    entry = write(volume, "a.csv", os.urandom(3 * S))
    owner = owner_client(s3_emulation)
    owner.copy_object(Bucket=bucket, Key="in/b.csv", CopySource={"Bucket": bucket, "Key": "in/a.csv"})
    other = f"s3core-{uuid.uuid4().hex[:12]}"
    owner.create_bucket(Bucket=other)
    owner.copy_object(Bucket=other, Key="in/a.csv", CopySource={"Bucket": bucket, "Key": "in/a.csv"})
    elsewhere, _ = volume_of(s3_emulation, other, EncryptionMode.CSE, dek)
    moved, _ = volume_of(s3_emulation, bucket, EncryptionMode.CSE, dek, prefix="in2")
    owner.copy_object(Bucket=bucket, Key="in2/a.csv", CopySource={"Bucket": bucket, "Key": "in/a.csv"})
    for vol, name in ((volume, "b.csv"), (elsewhere, "a.csv"), (moved, "a.csv")):
        with pytest.raises(fmt.TamperedObject) as info:
            list(vol.reader(name, entry.size).read_all())
        assert str(vol.location(name)) in str(info.value)  # names the store and the object
    assert len(b"".join(volume.reader("a.csv", entry.size).read_all())) == 3 * S


def test_a_missing_bucket_is_one_line_naming_it(s3_emulation):
    volume, _ = volume_of(s3_emulation, "s3core-no-such-bucket", EncryptionMode.SSE, None)
    with pytest.raises(NotFound) as info:
        list(volume.list_objects())
    assert str(info.value) == (f"S3: bucket s3core-no-such-bucket does not exist ({s3_emulation['s3_endpoint']})")
    writer = volume.writer("out.bin")
    writer.write(b"x")
    with pytest.raises(NotFound):
        writer.commit()


def test_an_unreachable_service_is_one_line_naming_the_object(s3_emulation, bucket):
    store = S3Store(kind="s3", endpoint="https://127.0.0.1:9", region="us-east-1", bucket=bucket, addressing="path",
                    credentials=S3Credentials(secret="owner_s3"))
    volume = Volume(S3ObjectStore(s3_client(store, KEYS, retries=0), store), EncryptionMode.SSE, None)
    with pytest.raises(RemoteServiceError) as info:
        volume.get_range("a.csv", 0, 10)
    assert str(info.value).startswith(f"S3: s3://{bucket}/a.csv: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["", "not json", '{"access_key_id": "AKIA"}', '["a", "b"]',
                                   '{"access_key_id": 1, "secret_access_key": 2}'])
def test_a_malformed_secret_is_one_line_that_does_not_repeat_it(value):
    with pytest.raises(Exception) as info:
        key_pair_from_secret(value, "S3 credentials for bucket b: CGS secret m_s3")
    assert str(info.value).startswith("S3 credentials for bucket b: CGS secret m_s3: not JSON")
    assert "AKIA" not in str(info.value)


def test_a_key_pair_never_prints_its_secret():
    assert "s3core-room-secret" not in repr(KEYS) and "s3core-room-secret" not in str(KEYS)


@pytest.fixture(scope="module")
def enforcing_s3(s3_emulation, tmp_path_factory):
    """The S3 stand-in with moto's own IAM enforcement on (INITIAL_NO_AUTH_ACTION_COUNT=0): every request must
    be signed by a key moto's IAM knows. moto's feature, not ours; off in `ccr emulators start`, where it
    would also refuse the unsigned AssumeRoleWithWebIdentity."""
    root = tmp_path_factory.mktemp("s3core-enforcing")
    tls = LocalCA.create(Path(s3_emulation["ca_bundle"]).parent).issue_server_cert("s3-enforcing", directory=root)
    ready = root / "ready.json"
    proc = ManagedProcess("s3-enforcing", [sys.executable, "-m", "sidecars.emulators.s3", "--cert", tls.cert_file,
                                           "--key", tls.key_file, "--ready-file", str(ready)],
                          env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}, ready=ready.exists,
                          log_path=root / "s3.log")
    proc.start()
    yield {**s3_emulation, "s3_endpoint": json.loads(ready.read_text())["url"]}
    proc.stop()


def test_wrong_credentials_are_one_line_naming_the_store(enforcing_s3):
    volume, _ = volume_of(enforcing_s3, "s3core-publisher-input", EncryptionMode.SSE, None)
    with pytest.raises(RemoteServiceError) as info:
        list(volume.list_objects())
    message = str(info.value)
    assert message.startswith("S3: listing s3://s3core-publisher-input/in: InvalidAccessKeyId: "), message
    assert "\n" not in message and KEYS.secret_access_key not in message


def test_an_upload_whose_abort_failed_is_aborted_by_a_later_session(s3_emulation, bucket):
    """The store unreachable when a write fails: the abort fails too and the parts stay (S3 keeps and bills
    them). The next session that writes aborts the uploads under its volume's prefix, and no other prefix's
    (in2/ starts as in does). (moto lists every upload as initiated in 2010: which are older than the session
    is `test_only_uploads_begun_before_the_session_are_aborted`.)"""
    owner = owner_client(s3_emulation)
    theirs = owner.create_multipart_upload(Bucket=bucket, Key="in2/theirs.bin")["UploadId"]
    earlier = S3ObjectStore(s3_client(store_of(s3_emulation, bucket), KEYS, ca_bundle=s3_emulation["ca_bundle"],
                                      retries=0), store_of(s3_emulation, bucket))
    writer = Volume(earlier, EncryptionMode.SSE, None).writer("result.bin")
    writer.write(os.urandom(3 * PART))  # two parts staged, the third waits for the commit
    writer._pool.shutdown(wait=True)  # the staged parts have reached storage

    def unreachable(**_):
        raise EndpointConnectionError(endpoint_url=s3_emulation["s3_endpoint"])

    earlier.client.meta.events.register("before-send.s3.AbortMultipartUpload", unreachable)
    writer.abort()  # fails quietly, as it must: the write's own error is what the caller hears
    left = owner.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert {u["Key"] for u in left} == {"in/result.bin", "in2/theirs.bin"}
    staged = next(u["UploadId"] for u in left if u["Key"] == "in/result.bin")
    assert len(owner.list_parts(Bucket=bucket, Key="in/result.bin", UploadId=staged)["Parts"]) == 2
    later, _ = volume_of(s3_emulation, bucket, EncryptionMode.SSE, None)
    assert later.store.abort_stale_uploads(dt.datetime.now(dt.UTC)) == 1
    assert [u["UploadId"] for u in owner.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [theirs]
    assert later.store.abort_stale_uploads(dt.datetime.now(dt.UTC)) == 0
    write(later, "result.bin", b"the later session's result")
    assert later.get_small("result.bin", 100) == b"the later session's result"


def test_only_uploads_begun_before_the_session_are_aborted():
    """By S3's `Initiated` (whole seconds): a writer that began in the session's first second, or after,
    keeps its upload; one gone from the list meanwhile (completed, aborted) is no error."""
    store = S3Store(kind="s3", region="us-east-1", bucket="hard-stale", prefix="in", addressing="path",
                    credentials=S3Credentials(secret="owner_s3"))
    client = s3_client(store, KEYS)
    session_started = dt.datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=dt.UTC)
    uploads = [{"Key": "in/old.bin", "UploadId": "old", "Initiated": session_started - dt.timedelta(hours=3)},
               {"Key": "in/gone.bin", "UploadId": "gone", "Initiated": session_started - dt.timedelta(seconds=2)},
               {"Key": "in/same-second.bin", "UploadId": "same", "Initiated": session_started.replace(microsecond=0)},
               {"Key": "in/new.bin", "UploadId": "new", "Initiated": session_started + dt.timedelta(seconds=1)}]
    with Stubber(client) as stub:
        stub.add_response("list_multipart_uploads", {"Uploads": uploads}, {"Bucket": "hard-stale", "Prefix": "in/"})
        stub.add_response("abort_multipart_upload", {}, {"Bucket": "hard-stale", "Key": "in/old.bin",
                                                         "UploadId": "old"})
        stub.add_client_error("abort_multipart_upload", "NoSuchUpload", http_status_code=404,
                              expected_params={"Bucket": "hard-stale", "Key": "in/gone.bin", "UploadId": "gone"})
        assert S3ObjectStore(client, store).abort_stale_uploads(session_started) == 1
        stub.assert_no_pending_responses()


def test_aborting_stale_uploads_of_an_unreachable_store_is_one_line_naming_it(s3_emulation, bucket):
    store = S3Store(kind="s3", endpoint="https://127.0.0.1:9", region="us-east-1", bucket=bucket, prefix="in",
                    addressing="path", credentials=S3Credentials(secret="owner_s3"))
    with pytest.raises(RemoteServiceError) as info:
        S3ObjectStore(s3_client(store, KEYS, retries=0), store).abort_stale_uploads(dt.datetime.now(dt.UTC))
    assert str(info.value).startswith(f"S3: aborting stale uploads in s3://{bucket}/in: ")
    assert "\n" not in str(info.value)
