"""One mount = one process (pyfuse3 serves one filesystem per process): get the key, mount, serve.

    python -m sidecars.volumes.mount (--storage-url URL --container C | --s3-store JSON) --mountpoint DIR
        [--writable] (--dek-file FILE | --secret NAME --vault-url URL --kek NAME --maa-endpoint URL --skr-url URL)
        [--mode CSE|CPK|SSE-C|SSE] [--status-file FILE] [--uid N --gid N] [--ca-bundle PEM]
        [--manifest-sha256 HEX]                                       (a datasource bound to its manifest)
        [--governance-url URL [--sidecar-token-file F] | --manifest-key PEM --manifest-cert PEM | --no-manifest]
                                                                      (a datasink: who signs its manifest)

The volumes sidecar starts one per datasource/datasink. `--status-file` receives one JSON object:
`{"state": "mounted", "files": N}` once the mount is live, or `{"state": "failed", "reason": "..."}`
(key not released, container missing, ...) before the process exits with code 1. `--dek-file` (the
owner's local DEK file) is for the owner's own checks and the benchmarks, not for rooms.

Manifests (see manifest.py): a datasource with `--manifest-sha256` fetches the container's manifest, checks
it against that pin and fails to mount if an object it names is missing; the mount shows only its objects
and refuses (EIO) any other version of one. A datasink gets a signing key endorsed by the contract CA
through governance at start (no CA, no mount) and, when it stops, writes the manifest of the objects this
run committed, signed. `--manifest-key/--manifest-cert` give the key and certificate directly (tests,
standalone use); `--no-manifest` writes none, and `ccr data download` then refuses the sink as unsigned.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import uuid
from pathlib import Path

import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..common.azure_clients import container_client, default_credential
from ..common.deks import load_dek_file
from ..common.errors import CcrError, ConfigError
from ..common.governance_client import GovernanceClient
from ..common.keyflow import fetch_dek
from ..common.logs import configure_logging
from ..common.otel import attach_parent_from_env, setup_telemetry, step_span
from ..common.room import read_sidecar_token
from ..common.s3_credentials import S3KeyPair, WebIdentity, key_pair_from_secret, room_credentials
from ..spec import EncryptionMode, S3Store
from . import manifest as mf
from .fs import VolumeFilesystem, run
from .store import Volume, customer_key_material
from .stores import ObjectStore, StoreAccess, open_store
from .stores.azure_blob import AzureBlobStore

log = logging.getLogger("ccr.volumes.mount")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sidecars.volumes.mount", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="volume", help="the volume's name (logs, fsname)")
    p.add_argument("--storage-url", help="an Azure Blob volume: the blob service URL")
    p.add_argument("--container", help="an Azure Blob volume: the container")
    p.add_argument("--s3-store", metavar="JSON", help="an S3 volume: the spec's store (kind s3), as JSON")
    p.add_argument("--s3-credentials-file", type=Path, metavar="FILE",
                   help="an S3 volume outside a room (tests, benchmarks): JSON {access_key_id, secret_access_key}; "
                        "in a room the credentials come through --governance-url only")
    p.add_argument("--mode", type=EncryptionMode, choices=list(EncryptionMode), default=EncryptionMode.CSE)
    p.add_argument("--mountpoint", required=True, type=Path)
    p.add_argument("--writable", action="store_true", help="a datasink (default: read-only datasource)")
    p.add_argument("--dek-file", type=Path)
    p.add_argument("--secret", help="Key Vault secret with the wrapped DEK")
    p.add_argument("--secret-vault-url", help="vault of the secret (default: --vault-url)")
    p.add_argument("--vault-url", help="vault of the KEK")
    p.add_argument("--kek", help="KEK name")
    p.add_argument("--maa-endpoint")
    p.add_argument("--skr-url", help="the skr sidecar, which releases the KEK (needed unless --dek-file)")
    p.add_argument("--identity-url", help="IMDS-shaped token endpoint for Key Vault and storage")
    p.add_argument("--client-id", help="the identity (client id) to ask the token endpoint for")
    p.add_argument("--dev-tokens-dir", help="the local emulation's dev token issuer (instead of --identity-url)")
    p.add_argument("--ca-bundle")
    p.add_argument("--account-key", default=os.environ.get("AZURE_STORAGE_KEY"))
    p.add_argument("--uid", type=int, default=os.getuid(), help="owner shown for files (the app's uid)")
    p.add_argument("--gid", type=int, default=os.getgid())
    p.add_argument("--cache-mb", type=int, default=64)
    p.add_argument("--readahead-blocks", type=int, default=4)
    p.add_argument("--status-file", type=Path)
    p.add_argument("--storage-retries", type=int,
                   help="retries per storage request (default 3, after about 1, 3 and 5 s: a write to "
                        "unreachable storage fails in about 10 s)")
    p.add_argument("--manifest-sha256", metavar="HEX", help="a datasource: the sha256 of its manifest (the spec's pin)")
    p.add_argument("--contract-id", help="a datasink: the contract its signed manifest names")
    p.add_argument("--governance-url", help="a datasink: the governance sidecar, which gets its manifest key "
                                            "endorsed by the contract CA")
    p.add_argument("--sidecar-token-file", type=Path, help="the sidecars' token for governance")
    p.add_argument("--manifest-key", type=Path, help="a datasink: PEM private key that signs its manifest")
    p.add_argument("--manifest-cert", type=Path, help="a datasink: PEM certificate of --manifest-key")
    p.add_argument("--no-manifest", action="store_true",
                   help="a datasink: write no signed manifest (benchmarks; consumers then refuse the sink)")
    return p


def _write_status(path: Path | None, status: dict) -> None:
    if path is None:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)


def _data_key(args: argparse.Namespace):
    if args.mode is EncryptionMode.SSE:
        return None
    if args.dek_file:
        return load_dek_file(args.dek_file)
    missing = [f"--{n.replace('_', '-')}" for n in ("secret", "vault_url", "kek", "maa_endpoint", "skr_url")
               if not getattr(args, n)]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (or --dek-file)")
    return fetch_dek(skr_url=args.skr_url, maa_endpoint=args.maa_endpoint, kek_vault_url=args.vault_url,
                     kek_name=args.kek, secret_vault_url=args.secret_vault_url or args.vault_url,
                     secret_name=args.secret, ca_bundle=args.ca_bundle,
                     credential=default_credential(args.identity_url, args.dev_tokens_dir, subject="volumes",
                                                   client_id=args.client_id))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    attach_parent_from_env()
    telemetry = setup_telemetry("ccr-volumes")
    tracer = telemetry.tracer
    try:
        return _mount(args, tracer)
    except CcrError as exc:
        log.error("%s: mount failed: %s", args.name, exc)
        _write_status(args.status_file, {"state": "failed", "reason": str(exc)})
        return 1
    finally:
        telemetry.shutdown()


def _mount(args: argparse.Namespace, tracer) -> int:
    session_started = dt.datetime.now(dt.UTC)
    with step_span(tracer, "release key", volume=args.name):
        dek = _data_key(args)
    if not args.mountpoint.is_dir():
        raise ConfigError(f"mount point {args.mountpoint} is not a directory")
    with step_span(tracer, "storage credentials", volume=args.name):
        volume = Volume(_object_store(args, dek), args.mode, dek)
    audit = _auditor(args)
    manifest = signer = None
    if args.writable:
        with step_span(tracer, "manifest key", volume=args.name):
            signer = _signer(args)
        _abort_stale_uploads(volume.store, session_started, args.name)
    elif args.manifest_sha256:
        where = f"{volume.account}/{volume.container}"
        try:
            manifest = mf.pinned_dataset(volume.get_small(mf.MANIFEST_BLOB, mf.MAX_MANIFEST_BYTES),
                                         args.manifest_sha256, account=volume.account, container=volume.container,
                                         where=where)
        except mf.ManifestRefused as exc:
            _audit_quietly(audit, {"event": "mount-refused", "volume": args.name, "reason": str(exc)[:500]})
            raise
    fs = VolumeFilesystem(volume, writable=args.writable, uid=args.uid, gid=args.gid,
                          cache_bytes=args.cache_mb * 1024 * 1024, readahead_blocks=args.readahead_blocks,
                          manifest=manifest, audit=audit)
    with step_span(tracer, "mount", volume=args.name):
        try:
            files = fs.load_tree()
        except mf.ManifestRefused as exc:
            _audit_quietly(audit, {"event": "mount-refused", "volume": args.name, "reason": str(exc)[:500]})
            raise

    def mounted() -> None:
        log.info("%s: %s mounted at %s (%d files, %s%s)", args.name, volume.container, args.mountpoint, files,
                 args.mode.value, "" if args.writable else ", read-only")
        _write_status(args.status_file, {"state": "mounted", "files": files, "pid": os.getpid(),
                                         "mountpoint": str(args.mountpoint)})

    run_id = uuid.uuid4().hex
    trio.run(lambda: run(fs, str(args.mountpoint), fsname=f"ccr-{args.name}", on_mounted=mounted))
    if signer is not None:
        _write_sink_manifest(volume, args, fs, signer, run_id, audit)
    _write_status(args.status_file, {"state": "unmounted", "tamper_errors": fs.errors})
    return 0


def _abort_stale_uploads(store: ObjectStore, session_started: dt.datetime, name: str) -> None:
    """Before a sink writes: earlier sessions' uploads whose abort failed. Their staged parts cost storage,
    not correctness (nothing completed them), so a store refusing this does not stop the mount."""
    try:
        aborted = store.abort_stale_uploads(session_started)
    except CcrError as exc:
        log.warning("%s: earlier sessions' incomplete uploads not aborted: %s", name, exc)
        return
    if aborted:
        log.info("%s: aborted %d incomplete upload(s) earlier sessions left in %s", name, aborted, store.container)


def _object_store(args: argparse.Namespace, dek) -> ObjectStore:
    """The volume's store: an Azure container, or an S3 bucket with the room's credentials for it."""
    material = customer_key_material(args.mode, dek)
    if args.s3_store is None:
        if not (args.storage_url and args.container):
            raise ConfigError("missing --storage-url and --container (an Azure Blob volume) or --s3-store")
        # Not through the spec's BlobStore: standalone (tests, benchmarks) Azurite may be plain http.
        container = container_client(args.storage_url, args.container, ca_bundle=args.ca_bundle,
                                     account_key=args.account_key, retry_total=args.storage_retries,
                                     credential=default_credential(args.identity_url, args.dev_tokens_dir, "volumes",
                                                                   client_id=args.client_id))
        return AzureBlobStore(container, material)
    try:
        store = S3Store.model_validate_json(args.s3_store)
    except ValueError:
        raise ConfigError("--s3-store is not an S3 store of the spec (kind s3)") from None
    access = StoreAccess(ca_bundle=args.ca_bundle, retries=args.storage_retries,
                         s3_credentials=lambda s3: _s3_credentials(args, s3))
    return open_store(store, access, material)


def _s3_credentials(args: argparse.Namespace, store: S3Store) -> S3KeyPair | WebIdentity:
    if args.s3_credentials_file is not None:
        try:
            return key_pair_from_secret(args.s3_credentials_file.read_text(), f"{args.s3_credentials_file}")
        except OSError as exc:
            raise ConfigError(f"{args.s3_credentials_file}: {exc.strerror}") from None
    if not args.governance_url:
        raise ConfigError(f"bucket {store.bucket}: no credentials (--governance-url, or --s3-credentials-file "
                          "outside a room)")
    token = read_sidecar_token(args.sidecar_token_file)
    with GovernanceClient(args.governance_url, scope="volumes", token=token, start_wait_s=30) as gov:
        return room_credentials(store, gov)


def _auditor(args: argparse.Namespace):
    """A function recording an event in the contract's audit log through governance (None without it)."""
    if not args.governance_url:
        return None
    token = read_sidecar_token(args.sidecar_token_file)
    gov = GovernanceClient(args.governance_url, scope="volumes", token=token)

    def audit(event: dict) -> None:
        gov.audit({"volume": args.name, **event})

    return audit


def _audit_quietly(audit, event: dict) -> None:
    if audit is None:
        return
    try:
        audit(event)
    except CcrError as exc:
        log.warning("not audited (%s): %s", exc, event)


def _signer(args: argparse.Namespace) -> mf.Signer | None:
    """The key that signs this datasink's manifest, endorsed by the contract CA (via governance), or given."""
    if args.no_manifest:
        log.warning("%s: --no-manifest: this sink's results will carry no signed manifest", args.name)
        return None
    if args.manifest_key and args.manifest_cert:
        key = serialization.load_pem_private_key(args.manifest_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"--manifest-key {args.manifest_key}: not an EC private key")
        return mf.Signer(key, args.manifest_cert.read_text())
    if not args.governance_url:
        raise ConfigError("a datasink needs --governance-url (its manifest is signed with a key the contract CA "
                          "endorses), or --manifest-key and --manifest-cert, or --no-manifest")
    key = mf.new_signing_key()
    token = read_sidecar_token(args.sidecar_token_file)
    with GovernanceClient(args.governance_url, scope="volumes", token=token, start_wait_s=30) as gov:
        try:
            endorsed = gov.endorsed_cert(mf.public_pem(key), subject_name=f"CN={mf.sink_signer_name(args.name)}",
                                         validity_days=7)
        except CcrError as exc:
            raise ConfigError(f"the contract CA did not endorse this sink's manifest key ({exc}); enable it with "
                              "`ccr governance ca propose CONTRACT` and the members' votes") from None
    return mf.Signer(key, endorsed["cert"])


def _write_sink_manifest(volume: Volume, args: argparse.Namespace, fs: VolumeFilesystem, signer: mf.Signer,
                         run_id: str, audit) -> None:
    """The objects this run committed, signed, as the container's MANIFEST_BLOB. A failure is logged: the
    consumer then finds no (or an older run's) manifest and refuses the sink."""
    manifest = mf.Manifest("sink", volume.account, volume.container, args.mode.value, dict(fs.written),
                           contract=args.contract_id or "", run=run_id,
                           finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    try:
        volume.put_small(mf.MANIFEST_BLOB, signer.sign(manifest))
    except CcrError as exc:
        log.error("%s: the signed manifest could not be stored: %s", args.name, exc)
        return
    log.info("%s: signed manifest of %d object(s) stored (run %s)", args.name, len(fs.written), run_id)
    # On the contract's hash-chained audit log, a consumer can tell this run's manifest from an earlier run's.
    _audit_quietly(audit, {"event": "sink-manifest", "run": run_id, "objects": len(fs.written),
                           "manifest_sha256": manifest.sha256()})


if __name__ == "__main__":
    sys.exit(main())
