"""The handlers of `ccr data publish|download` (registered in cli.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError
from tqdm import tqdm

from ..cliargs import spec_variables
from ..common import objectformat as fmt
from ..common.azure_clients import account_name_of, container_client, default_credential, secret_client
from ..common.deks import Kek, default_dek_file, load_dek_file, save_dek_file, unwrap_dek
from ..common.errors import CcrError, ConfigError
from ..common.keyflow import read_wrapped
from ..spec import Datasink, EncryptionMode, S3Credentials, S3Store, describe_validation_error, load_spec
from . import manifest as mf
from . import owner
from .owner import kek_from_vault
from .store import Volume, customer_key_material
from .stores import StoreAccess, open_store

#: An S3 object's account in manifests and DEK file names (stores/s3.py ACCOUNT; not imported: that loads boto3).
S3_ACCOUNT = "s3"


@dataclass
class Target:
    storage_url: str
    #: the container, or for an S3 store the bucket (and prefix): what messages and manifests name
    container: str
    mode: EncryptionMode
    vault_url: str | None
    secret: str | None
    kek_name: str | None
    ca_bundle: str | None
    dev_tokens_dir: str | None = None
    #: "datasource"/"datasink" when the spec says which; None for a container named by flags
    kind: str | None = None
    manifest_sha256: str | None = None
    contract_id: str | None = None
    #: the spec's S3 store, when the volume is in S3 (the owner's AWS credentials come from boto3's chain)
    s3: S3Store | None = None

    @property
    def account(self) -> str:
        return S3_ACCOUNT if self.s3 is not None else account_name_of(self.storage_url)


    def dek_file(self, given: Path | None) -> Path:
        """--dek-file, else the owner's default copy for this account and container (or bucket and prefix)."""
        return given or default_dek_file(self.account, self.container.replace("/", "--"))

    def credential(self):
        return default_credential(dev_tokens_dir=self.dev_tokens_dir, subject="data-owner")

    def secrets(self):
        if not self.vault_url:
            raise ConfigError("missing --vault-url (or keyvault_url in --endpoints)")
        return secret_client(self.vault_url, ca_bundle=self.ca_bundle, credential=self.credential())


def _resolve(args: argparse.Namespace) -> Target:
    variables = spec_variables(args)
    storage_url = args.storage_url
    container = args.container
    mode = args.mode
    vault_url = args.vault_url
    secret = args.secret
    kek_name = None
    kind = manifest_sha256 = contract_id = None
    s3: S3Store | None = None
    if args.spec:
        if not args.volume:
            raise ConfigError("--spec needs --volume NAME (which datasource/datasink)")
        spec = load_spec(args.spec, variables=variables)
        try:
            volume = spec.volume(args.volume)
        except KeyError:
            names = [v.name for _, v in spec.volumes_with_location()]
            raise ConfigError(f"no volume {args.volume!r} in {args.spec}; it has: {', '.join(names)}") from None
        kind = "datasink" if isinstance(volume, Datasink) else "datasource"
        manifest_sha256 = getattr(volume, "manifest_sha256", None)
        contract_id = spec.contract.id
        if isinstance(volume.store, S3Store):
            if storage_url or container:
                raise ConfigError(f"volume {volume.name} is in S3 (bucket {volume.store.bucket}): --storage-url and "
                                  "--container name an Azure container")
            s3 = volume.store
            storage_url = s3.endpoint_url
            container = f"{s3.bucket}/{s3.prefix}" if s3.prefix else s3.bucket
        else:
            storage_url = storage_url or str(volume.store.account_url)
            container = container or volume.store.container
        mode = mode or volume.encryption.mode
        if volume.encryption.key:
            vault_url = vault_url or volume.encryption.key.dek_vault_url
            secret = secret or volume.encryption.key.dek_secret_name
            kek_name = volume.encryption.key.kek_name
    if getattr(args, "s3", None):
        if args.spec or storage_url or container:
            raise ConfigError("--s3 names the bucket itself: not with --spec, --storage-url or --container")
        s3 = _s3_from_flags(args, variables)
        storage_url, container = s3.endpoint_url, f"{s3.bucket}/{s3.prefix}" if s3.prefix else s3.bucket
    storage_url = storage_url or variables.get("storage_url")
    vault_url = vault_url or variables.get("keyvault_url")
    missing = [flag for flag, value in (("--storage-url", storage_url), ("--container", container)) if not value]
    mode = mode or EncryptionMode.CSE
    if mode is not EncryptionMode.SSE and not secret:
        missing.append("--secret")
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (or --spec SPEC --volume NAME, --endpoints FILE)")
    return Target(storage_url, container, mode, vault_url, secret, kek_name,
                  args.ca_bundle or variables.get("ca_bundle"), variables.get("dev_tokens_dir"), kind,
                  manifest_sha256, contract_id, s3)


def _s3_from_flags(args: argparse.Namespace, variables: dict[str, str]) -> S3Store:
    """--s3 s3://BUCKET[/PREFIX] with its endpoint and region, checked by the spec's own rules."""
    parts = urlsplit(args.s3)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"--s3 {args.s3!r}: write s3://BUCKET or s3://BUCKET/PREFIX")
    endpoint = args.s3_endpoint or variables.get("s3_endpoint")
    host = urlsplit(endpoint).hostname or "" if endpoint else ""
    path_style = host == "localhost" or host.replace(".", "").isdigit() or "." in parts.netloc
    try:
        # The owner signs with boto3's chain: the store's `credentials` are the room's, unused here.
        return S3Store(kind="s3", endpoint=endpoint, region=args.s3_region or variables.get("s3_region", "us-east-1"),
                       bucket=parts.netloc, prefix=parts.path, addressing="path" if path_style else "virtual",
                       credentials=S3Credentials(secret="owner"))
    except ValidationError as exc:
        raise ConfigError("; ".join(f"--s3: {p}" for p in describe_validation_error(exc))) from None


#: who else hears of the bytes `publish` has done, `(done, total)` (the workspace's progress bar; the command
#: line has only tqdm's)
PROGRESS: ContextVar[Callable[[int, int], None] | None] = ContextVar("ccr_data_progress", default=None)


class _ReportingBar(tqdm):
    listener: Callable[[int, int], None] | None = None

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        if self.listener is not None:
            self.listener(int(self.n), int(self.total or 0))
        return shown


def _progress(total: int, what: str):
    bar = _ReportingBar(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=what, file=sys.stderr,
                        disable=None, leave=False)
    bar.listener = PROGRESS.get()
    return bar


def _load_kek(arg: str | None, target: Target):
    """--kek: a JWK or PEM file, a Key Vault key URL, or (no flag) the spec's kek_name in its vault."""
    if arg and not arg.startswith("https://"):
        return Kek.from_file(Path(arg))
    if arg:
        vault, _, rest = arg.partition("/keys/")
        name, _, version = rest.partition("/")
    else:
        vault, name, version = target.vault_url or "", target.kek_name or "", ""
    if not vault or not name:
        raise ConfigError("--kek is needed (a JWK/PEM file or a Key Vault key URL)")
    return kek_from_vault(vault, name, version or None, credential=target.credential(), ca_bundle=target.ca_bundle)


def _volume_for(target: Target, account_key: str | None, dek):
    if target.s3 is not None:  # signed with the owner's own AWS credentials (boto3's chain)
        store = open_store(target.s3, StoreAccess(ca_bundle=target.ca_bundle), customer_key_material(target.mode, dek))
        return Volume(store, target.mode, dek)
    container = container_client(target.storage_url, target.container, ca_bundle=target.ca_bundle,
                                 account_key=account_key)
    return Volume(container, target.mode, dek)


def publish(args: argparse.Namespace) -> int:
    session_started = dt.datetime.now(dt.UTC)
    target = _resolve(args)
    if args.key_only and args.data_only:
        raise ConfigError("--key-only and --data-only exclude each other")
    if (args.dir is None) != bool(args.key_only):
        raise ConfigError("give DIR to publish, or --key-only (and no DIR) to only store the wrapped DEK")
    if args.pin and not args.volume:
        raise ConfigError("--pin needs --spec and --volume (the datasource whose manifest it pins)")
    files = owner.files_to_publish(args.dir) if args.dir is not None else []
    mode = target.mode
    dek = None
    if mode is not EncryptionMode.SSE and args.data_only:
        dek = _local_dek(args, target)
    elif mode is not EncryptionMode.SSE:
        kek = _load_kek(args.kek, target)
        dek_file = target.dek_file(args.dek_file)
        choice = owner.ensure_dek(secrets=target.secrets(),
                                  secret_name=target.secret, kek=kek, dek_file=dek_file, mode=mode)
        dek = choice.dek
        print(f"DEK {dek.fingerprint} {'created' if choice.created else 'reused'}; local copy {dek_file}; "
              f"wrapped with {kek.kid} ({kek.algorithm}) in secret {target.secret}", file=sys.stderr)
    if args.key_only:
        return 0
    volume = _volume_for(target, args.account_key, dek)
    volume.store.ensure_container()
    try:  # an earlier publish's uploads whose abort failed: storage they cost, not a reason to stop this one
        aborted = volume.store.abort_stale_uploads(session_started)
    except CcrError as exc:
        aborted = 0
        print(f"ccr: warning: earlier incomplete uploads not aborted: {exc}", file=sys.stderr)
    if aborted:
        print(f"aborted {aborted} incomplete upload(s) an earlier session left in {target.container}", file=sys.stderr)
    total = sum(p.stat().st_size for p in files)
    entries: dict[str, mf.Entry] = {}
    with _progress(total, f"publish {target.container}") as bar:
        for path in files:
            name = owner.blob_name_for(args.dir, path)
            bar.set_postfix_str(name[-40:], refresh=False)
            entries[name] = owner.publish_file(volume, path, name, bar.update)
    print(f"published {len(files)} file(s), {total} bytes, to {target.container} ({mode.value})")
    if not files:
        return 0  # an empty DIR sets up the key only (a datasink's owner); a sink's manifest is the room's
    manifest = owner.publish_manifest(volume, entries)
    print(f"manifest sha256 {manifest.sha256()} ({len(entries)} objects)")
    if args.pin:
        changed = owner.pin_manifest(Path(args.pin), args.volume, manifest.sha256())
        print(f"{args.pin}: datasource {args.volume} manifest_sha256 {'pinned' if changed else 'already'} "
              f"{manifest.sha256()}")
    return 0


def _local_dek(args: argparse.Namespace, target: Target) -> fmt.DataKey:
    """--data-only: the owner's local DEK, created if there is none yet (it is wrapped later, with --key-only)."""
    dek_file = target.dek_file(args.dek_file)
    if dek_file.exists():
        return load_dek_file(dek_file)
    dek = fmt.DataKey.generate()
    save_dek_file(dek_file, dek)
    print(f"DEK {dek.fingerprint} created; local copy {dek_file} (not yet stored wrapped: publish --key-only "
          "once the KEK exists)", file=sys.stderr)
    return dek


def download(args: argparse.Namespace) -> int:
    target = _resolve(args)
    mode = target.mode
    dek = None
    if mode is not EncryptionMode.SSE:
        dek_file = target.dek_file(args.dek_file)
        if dek_file.exists():
            dek = load_dek_file(dek_file)
        elif args.kek and target.vault_url:
            stored = read_wrapped(target.secrets(), target.secret)
            if stored is None:
                raise ConfigError(f"secret {target.secret} does not exist in {target.vault_url}")
            dek = unwrap_dek(stored, _load_kek(args.kek, target))
        else:
            raise ConfigError(f"no DEK: {dek_file} does not exist; pass --dek-file, or --kek PRIVATE_KEY_FILE")
    volume = _volume_for(target, args.account_key, dek)
    listed = [o for o in volume.list_objects(args.prefix) if not mf.is_reserved(o.name)]
    manifest = _checked_manifest(args, target, volume, listed)
    if manifest is not None:
        listed = [o for o in listed if o.name in manifest.entries]
    failures = []
    # Checked against a manifest, the result is all or nothing: every object is verified before any is in place.
    verified: list[tuple[Path, Path]] = []
    with _progress(sum(o.plaintext_size for o in listed), f"download {target.container}") as bar:
        for info in listed:
            try:
                dest = owner.safe_target(args.output, info.name)
                tmp = owner.download_object(volume, info.name, info.stored_size, dest, bar.update,
                                            manifest.entries[info.name] if manifest is not None else None,
                                            rename=manifest is None)
                verified.append((tmp, dest))
            except (fmt.TamperedObject, mf.ManifestRefused, ConfigError, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                failures.append(f"{info.name}: {reason}")
                print(f"ccr: error: {info.name}: {reason} (nothing written)", file=sys.stderr)
    if manifest is not None:
        for tmp, dest in verified:
            if failures:
                tmp.unlink()
            else:
                os.replace(tmp, dest)
    summary = {"downloaded": 0 if manifest is not None and failures else len(listed) - len(failures),
               "failed": len(failures),
               "verified": manifest is not None and not failures}
    if manifest is not None and manifest.kind == "sink":
        summary.update(contract=manifest.contract, run=manifest.run, finished=manifest.finished)
    print(json.dumps(summary))
    if failures:
        raise owner.DownloadFailed(f"{len(failures)} object(s) failed verification; see above"
                                   + ("; nothing written (the manifest's objects come all or none)"
                                      if manifest is not None else ""))
    return 0


def _checked_manifest(args: argparse.Namespace, target: Target, volume: Volume,
                      listed: list) -> mf.Manifest | None:
    """The manifest the download must match (refused, one line, before anything is written), or None for an
    unverified download: --untrusted, or a container that no spec or flag binds to a manifest."""
    where = f"{volume.account}/{target.container}"
    pin = args.manifest_sha256 or target.manifest_sha256
    ca_file = args.contract_ca
    sink = target.kind == "datasink" or (target.kind is None and ca_file is not None)
    if args.untrusted:
        print(f"ccr: warning: {where}: --untrusted: downloaded WITHOUT checking its manifest; the result may be "
              "partial, rolled back or added to", file=sys.stderr)
        return None
    if sink:
        if ca_file is None:
            raise mf.ManifestRefused(f"{where}: a datasink's results are checked against the room's signed "
                                     "manifest: pass --contract-ca PEM (`ccr governance ca show CONTRACT`), or "
                                     "--untrusted")
        raw = volume.get_small(mf.MANIFEST_BLOB, mf.MAX_MANIFEST_BYTES)
        manifest = mf.signed_sink(raw, _ca_pem(ca_file), contract=args.contract or target.contract_id,
                                  account=volume.account, container=target.container, where=where,
                                  volume=args.volume if target.kind == "datasink" else None)
    elif pin:
        raw = volume.get_small(mf.MANIFEST_BLOB, mf.MAX_MANIFEST_BYTES)
        manifest = mf.pinned_dataset(raw, pin, account=volume.account, container=target.container, where=where)
    else:
        print(f"ccr: warning: {where}: no manifest pinned (spec manifest_sha256 or --manifest-sha256): a rolled "
              "back or deleted object would go unnoticed", file=sys.stderr)
        return None
    if args.prefix:
        manifest = mf.Manifest(manifest.kind, manifest.account, manifest.container, manifest.mode,
                               {n: e for n, e in manifest.entries.items() if n.startswith(args.prefix)},
                               manifest.contract, manifest.run, manifest.finished)
    extras = mf.compare(manifest, {o.name: o.stored_size for o in listed}, where,
                        extras_allowed=manifest.kind == "dataset")
    for name in extras:
        print(f"ccr: warning: {where}: {name} is not in the dataset's manifest: not downloaded", file=sys.stderr)
    return manifest


def _ca_pem(path: Path) -> bytes:
    """The contract CA certificate from a PEM file (what `ccr governance ca show` prints is accepted as is)."""
    try:
        text = path.read_text(errors="replace")  # a DER file, say: "no PEM certificate in it"
    except OSError as exc:
        raise ConfigError(f"--contract-ca {path}: {exc.strerror}") from None
    start = text.find("-----BEGIN CERTIFICATE-----")
    if start < 0:
        raise ConfigError(f"--contract-ca {path}: no PEM certificate in it")
    return text[start:].encode()
