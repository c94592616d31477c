"""Telemetry and log sinks in S3 (moto's server over TLS, as `ccr emulators start` runs it; boto3): the export
is consent-gated, audited and client-side encrypted exactly as to Azure Blob, bound to the bucket and key;
the owner's `ccr telemetry download` verifies every object; a missing bucket, a CGS secret that is not a key
pair, an object tampered or moved in storage are each refused in one line naming the store or the object."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from sidecars.cli import main as ccr
from sidecars.common.deks import save_dek_file
from sidecars.common.errors import ConfigError, RemoteServiceError
from sidecars.common.governance_client import ConsentStatus
from sidecars.common.objectformat import DataKey
from sidecars.spec import parse_spec
from sidecars.telemetry import s3access
from sidecars.telemetry.buffer import EncryptedBuffer
from sidecars.telemetry.export import Exporter, SinkConfig
from sidecars.telemetry.signals import Signal, SinkKind

KEY_PAIR = {"access_key_id": "S3EDGEROOMKEY", "secret_access_key": "s3edge-room-secret-value"}
ROLE = "arn:aws:iam::123456789012:role/s3edge-telemetry-writer"
SECRET_PAYLOAD = b"span: mount step for s3edge, payload 4242"


class Governance:
    """The governance sidecar as the exporter meets it: consent, audit, the CGS secret, the room's token."""

    def __init__(self, secret_value: str = json.dumps(KEY_PAIR)):
        self.secret_value = secret_value
        self.audited: list[dict] = []
        self.secrets_read: list[str] = []
        self.assertions: list[str] = []

    def consent_check(self, option: str) -> ConsentStatus:
        return ConsentStatus("enabled")

    def audit(self, event: dict, *, id: str | None = None) -> None:
        self.audited.append(event)

    def secret(self, secret_id: str) -> str:
        self.secrets_read.append(secret_id)
        return self.secret_value

    def contract_id(self) -> str:
        return "s3edge-contract"

    def client_assertion(self, tenant_id: str, *, sub: str | None = None, aud: str = "") -> str:
        self.assertions.append(f"{sub} {aud}")
        return "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzM2VkZ2UtdGVzdCJ9."


def spec_of(endpoints: dict, bucket: str, credentials: dict, prefix: str = "rooms/s3edge"):
    store = {"kind": "s3", "endpoint": endpoints["s3_endpoint"], "region": endpoints["s3_region"], "bucket": bucket,
             "prefix": prefix, "addressing": "path", "credentials": credentials}
    key = {"vault_url": "https://127.0.0.1:9/", "kek_name": "kek", "dek_secret_name": "telemetry-dek",
           "maa_endpoint": "https://127.0.0.1:9/"}
    return {"apiVersion": "ccr/v1", "name": "s3edge-room",
            "contract": {"id": "s3edge-contract", "governance": {"endpoint": "https://127.0.0.1:9/"}},
            "maa_endpoint": "https://127.0.0.1:9/",
            "application": {"name": "app", "image": "localhost/app@sha256:" + "0" * 64,
                            "resources": {"cpu": 1, "memory_gb": 1}},
            "telemetry": {"telemetry_sink": {"store": store, "encryption": {"mode": "CSE", "key": key}}}}


def exporter(tmp_path: Path, endpoints: dict, bucket: str, governance: Governance, key: DataKey,
             credentials: dict | None = None) -> Exporter:
    spec = parse_spec(spec_of(endpoints, bucket, credentials or {"secret": "s3edge-aws"}))
    store = spec.telemetry.telemetry_sink.store
    buffer = EncryptedBuffer(tmp_path / f"buffer-{uuid.uuid4().hex[:8]}.bin")
    buffer.append(Signal.TRACES, SECRET_PAYLOAD)
    buffer.append(Signal.LOGS, b"sidecar log line for s3edge")
    sink = SinkConfig(SinkKind.TELEMETRY, s3access.s3_location(store), lambda: key,
                      connect=s3access.connector(store, ca_bundle=endpoints["ca_bundle"]))
    return Exporter(buffer, governance, [sink], room="s3edge-room")  # type: ignore[arg-type]


def download(tmp_path: Path, endpoints: dict, bucket: str, key: DataKey, monkeypatch, out: Path) -> int:
    """`ccr telemetry download --spec` as the bucket's owner: boto3's own chain (here AWS_* variables)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_of(endpoints, bucket, {"secret": "s3edge-aws"})))
    dek = tmp_path / "dek.json"
    if not dek.exists():
        save_dek_file(dek, key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "s3edge-owner")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3edge-owner-secret")
    return ccr(["telemetry", "download", "--spec", str(spec), "--dek-file", str(dek), "-o", str(out),
                "--ca-bundle", endpoints["ca_bundle"]])


def test_export_to_s3_is_ciphertext_the_owner_downloads_and_verifies(s3_emulation, s3, bucket, tmp_path,
                                                                    monkeypatch, capsys):
    key = DataKey.generate()
    governance = Governance()
    result = exporter(tmp_path, s3_emulation, bucket, governance, key).export(SinkKind.TELEMETRY)
    assert result.records == 2 and len(result.objects) == 2
    assert governance.secrets_read == ["s3edge-aws"], "the key pair comes from CGS, through governance"
    assert [e["step"] for e in governance.audited] == ["export"] and governance.audited[0]["sink"] == \
        f"s3://{bucket}/rooms/s3edge"
    stored = {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
              for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert sorted(stored) == sorted(f"rooms/s3edge/{name}" for name in result.objects)
    for data in stored.values():
        assert b"s3edge" not in data and b"4242" not in data, "storage holds ciphertext only"

    out = tmp_path / "out"
    assert download(tmp_path, s3_emulation, bucket, key, monkeypatch, out) == 0
    traces = [p for p in out.rglob("*") if p.is_file() and "/traces/" in str(p)]
    assert len(traces) == 1 and traces[0].read_bytes() == SECRET_PAYLOAD
    assert "verified and decrypted 2 objects" in capsys.readouterr().out


def test_an_object_tampered_or_moved_in_the_bucket_refuses_the_download(s3_emulation, s3, bucket, tmp_path,
                                                                        monkeypatch, capsys):
    key = DataKey.generate()
    result = exporter(tmp_path, s3_emulation, bucket, Governance(), key).export(SinkKind.TELEMETRY)
    traces = next(name for name in result.objects if "/traces/" in name)
    stored = s3.get_object(Bucket=bucket, Key=f"rooms/s3edge/{traces}")["Body"].read()
    flipped = bytearray(stored)
    flipped[-20] ^= 1
    s3.put_object(Bucket=bucket, Key=f"rooms/s3edge/{traces}", Body=bytes(flipped))
    assert download(tmp_path, s3_emulation, bucket, key, monkeypatch, tmp_path / "out") == 1
    error = capsys.readouterr().err.splitlines()[-1]  # after the progress lines: one line naming the object
    assert "refused: 1 of 2 objects failed verification" in error and traces in error
    assert not (tmp_path / "out").exists(), "nothing is written when one object fails"

    # The authentic object, moved to another bucket under the same key: bound to its bucket, it does not decrypt.
    other = f"s3edge-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=other)
    for name in result.objects:
        s3.copy_object(Bucket=other, Key=f"rooms/s3edge/{name}",
                       CopySource={"Bucket": bucket, "Key": f"rooms/s3edge/{name}"})
    s3.put_object(Bucket=other, Key=f"rooms/s3edge/{traces}", Body=stored)
    assert download(tmp_path, s3_emulation, other, key, monkeypatch, tmp_path / "moved") == 1
    assert "refused: 2 of 2 objects failed verification" in capsys.readouterr().err.splitlines()[-1]


def test_a_bucket_that_does_not_exist_fails_the_export_visibly_and_it_is_retried_whole(s3_emulation, s3,
                                                                                       tmp_path):
    key = DataKey.generate()
    missing = f"s3edge-{uuid.uuid4().hex[:16]}"
    governance = Governance()
    export = exporter(tmp_path, s3_emulation, missing, governance, key)
    with pytest.raises(RemoteServiceError) as caught:
        export.export(SinkKind.TELEMETRY)
    assert caught.value.message.count("\n") == 0
    assert f"s3://{missing}/rooms/s3edge" in caught.value.message and "does not exist" in caught.value.message
    s3.create_bucket(Bucket=missing)
    result = export.export(SinkKind.TELEMETRY)
    assert result.records == 2, "the failed export's records were kept for the next one"
    assert len(s3.list_objects_v2(Bucket=missing)["Contents"]) == 2


def test_a_cgs_secret_that_is_not_a_key_pair_is_named_never_shown(s3_emulation, bucket, tmp_path):
    governance = Governance(secret_value="AKIAS3EDGELEAKED:hunter2-s3edge")
    with pytest.raises(ConfigError) as caught:
        exporter(tmp_path, s3_emulation, bucket, governance, DataKey.generate()).export(SinkKind.TELEMETRY)
    message = caught.value.message
    assert "CGS secret s3edge-aws" in message and "\n" not in message
    assert "AKIAS3EDGELEAKED" not in message and "hunter2" not in message


def test_an_existing_object_is_never_replaced(s3_emulation, s3, bucket, tmp_path):
    store = parse_spec(spec_of(s3_emulation, bucket, {"secret": "s3edge-aws"})).telemetry.telemetry_sink.store
    sink = s3access.connector(store, ca_bundle=s3_emulation["ca_bundle"])(Governance())
    sink.upload("room/traces/one.binpb", b"first")
    with pytest.raises(RemoteServiceError, match="an object of that name exists already"):
        sink.upload("room/traces/one.binpb", b"second")
    assert s3.get_object(Bucket=bucket, Key="rooms/s3edge/room/traces/one.binpb")["Body"].read() == b"first"


def test_a_role_is_assumed_with_the_rooms_token_for_sts(s3_emulation, s3, bucket, tmp_path):
    governance = Governance()
    result = exporter(tmp_path, s3_emulation, bucket, governance, DataKey.generate(),
                      credentials={"role_arn": ROLE}).export(SinkKind.TELEMETRY)
    assert len(result.objects) == 2
    # The sidecars' subject, which the role's trust names (never the app's, the contract id).
    assert governance.assertions == ["s3edge-contract/ccr-sidecars sts.amazonaws.com"]
    assert governance.secrets_read == [], "no key pair read: the role's temporary credentials signed the export"

