"""What a data owner does outside the room: publish a folder encrypted, download and verify objects.

The DEK of a container is created once. The owner keeps it in a local key file (mode 0600; the KEK's
private half never leaves the vault, so the wrapped copy cannot be unwrapped outside a room) and stores
it wrapped with the KEK as a Key Vault secret for the room. Re-running publish reuses that DEK; a secret
holding a different DEK is refused (one DEK per datasource), never overwritten.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from azure.core.exceptions import HttpResponseError
from azure.keyvault.secrets import SecretClient

from ..common import objectformat as fmt
from ..common.azure_clients import key_client
from ..common.deks import Kek, load_dek_file, save_dek_file, unwrap_dek, wrap_dek
from ..common.errors import CcrError, ConfigError, Conflict, RemoteServiceError
from ..common.keyflow import read_wrapped
from ..spec import EncryptionMode, read_spec_document, rewrite_spec_line
from .manifest import MANIFEST_BLOB, RESERVED_PREFIX, Entry, Manifest, ManifestRefused, is_reserved
from .store import Volume

log = logging.getLogger("ccr.volumes.owner")
READ_CHUNK = 4 * 1024 * 1024
Progress = Callable[[int], None]


def kek_from_vault(vault_url: str, name: str, version: str | None, *, credential, ca_bundle: str | None) -> Kek:
    """The public half of a KEK kept in Key Vault (enough to wrap; only an attested room can unwrap)."""

    try:
        key = key_client(vault_url, ca_bundle=ca_bundle, credential=credential).get_key(name, version)
    except HttpResponseError as exc:
        raise RemoteServiceError("Key Vault", f"reading KEK {name}: {exc.message}", status=exc.status_code) from None
    kty = key.key.kty
    jwk = {"kty": str(getattr(kty, "value", kty))}
    for field in ("n", "e", "k"):
        value = getattr(key.key, field, None)
        if value:
            jwk[field] = base64.urlsafe_b64encode(value).rstrip(b"=").decode()
    return Kek.from_jwk(jwk, kid=name)


@dataclass
class DekChoice:
    dek: fmt.DataKey
    created: bool


def ensure_dek(*, secrets: SecretClient, secret_name: str, kek: Kek, dek_file: Path, mode: EncryptionMode) -> DekChoice:
    """The container's one DEK: the existing one (local file, or unwrapped when the KEK allows), or a new
    one saved locally first and then stored wrapped."""
    stored = read_wrapped(secrets, secret_name)
    local = load_dek_file(dek_file) if dek_file.exists() else None
    if stored is not None:
        if local is None:
            if kek.oct is None and kek.rsa_private is None:
                raise Conflict(f"secret {secret_name} already holds a DEK (fingerprint {stored.fingerprint}) but "
                               f"its local copy {dek_file} is missing; pass --dek-file with it (a second DEK "
                               "for one container is refused)")
            local = unwrap_dek(stored, kek)
            save_dek_file(dek_file, local)
        if local.fingerprint != stored.fingerprint:
            raise Conflict(f"secret {secret_name} holds another DEK (fingerprint {stored.fingerprint}) than "
                           f"{dek_file} ({local.fingerprint}); refusing to mix two keys in one container")
        if stored.mode is not mode:
            raise Conflict(f"secret {secret_name} is for mode {stored.mode.value}, not {mode.value}")
        return DekChoice(local, created=False)
    created = local is None
    dek = local or fmt.DataKey.generate()
    if created:
        save_dek_file(dek_file, dek)
    try:
        secrets.set_secret(secret_name, wrap_dek(dek, kek, mode=mode).to_json(),
                           content_type="application/vnd.ccr.wrapped-dek+json")
    except HttpResponseError as exc:
        raise RemoteServiceError("Key Vault", f"storing secret {secret_name}: {exc.message}",
                                 status=exc.status_code) from None
    return DekChoice(dek, created=created)


def blob_name_for(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def files_to_publish(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    for path in files:
        if is_reserved(blob_name_for(root, path)):
            raise ConfigError(f"{path}: {RESERVED_PREFIX} is reserved for the container's manifest")
    return files


def publish_file(volume: Volume, path: Path, name: str, progress: Progress) -> Entry:
    """Upload one file; returns its manifest entry (stored size, sha256 of what was uploaded, CSE header)."""
    if is_reserved(name):
        raise ConfigError(f"{path}: {RESERVED_PREFIX} is reserved for the container's manifest")
    writer = volume.writer(name)
    try:
        with open(path, "rb") as src:
            while chunk := src.read(READ_CHUNK):
                writer.write(chunk)
                progress(len(chunk))
        writer.commit()
        return writer.entry()
    except BaseException:
        writer.abort()
        raise


def publish_manifest(volume: Volume, entries: dict[str, Entry]) -> Manifest:
    """The dataset manifest of what was just published, stored as MANIFEST_BLOB; its sha256 is what the spec
    pins. Written last: until then the pin (if any) still names the previous manifest."""
    manifest = Manifest("dataset", volume.account, volume.container, volume.mode.value, entries)
    volume.put_small(MANIFEST_BLOB, manifest.to_bytes())
    return manifest


def pin_manifest(spec_path: Path, volume_name: str, sha256: str) -> bool:
    """Set `manifest_sha256` of datasource `volume_name` in the spec file, editing or adding that one line
    (comments and layout kept). False if it already had this value."""
    text, document = read_spec_document(spec_path)
    try:
        sources = document.get("datasources") or []
        source = next(s for s in sources if isinstance(s, dict) and s.get("name") == volume_name)
    except (AttributeError, StopIteration):
        raise ConfigError(f"{spec_path}: no datasource {volume_name!r} to pin a manifest to") from None
    current = source.get("manifest_sha256")
    if current == sha256:
        return False
    if current:
        line = re.compile(rf"^(\s*manifest_sha256:\s*)([\"']?){re.escape(str(current))}\2(\s*(#.*)?)$", re.MULTILINE)
        rewrite_spec_line(spec_path, text, line, lambda m: f"{m.group(1)}{sha256}{m.group(3)}",
                          f"to pin datasource {volume_name!r}'s manifest")
    else:
        line = re.compile(rf"^(\s*)- name:\s*([\"']?){re.escape(volume_name)}\2\s*(#.*)?$", re.MULTILINE)
        rewrite_spec_line(spec_path, text, line, lambda m: f"{m.group(0)}\n{m.group(1)}  manifest_sha256: {sha256}",
                          f"to pin datasource {volume_name!r}'s manifest")
    return True


def safe_target(target: Path, name: str) -> Path:
    """The local path for blob `name`, refusing names that would escape `target`."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or name.endswith("/"):
        raise ConfigError(f"object name {name!r} cannot be written safely under {target}")
    return target.joinpath(*pure.parts)


def download_object(volume: Volume, name: str, stored_size: int, dest: Path, progress: Progress,
                    expected: Entry | None = None, *, rename: bool = True) -> Path:
    """Decrypt into a temporary file next to `dest` and rename only once every segment verified (and, with
    `expected`, the whole object's digest is the manifest's): a tampered or replaced object leaves nothing of
    itself in clear. `rename=False` leaves the verified temporary file for the caller (returned), so that a
    whole result set is moved into place only once all of it verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            reader = volume.reader(name, stored_size,
                                   expected_header=expected.header_bytes if expected is not None else None)
            for plaintext in reader.read_all(stored=digest.update):
                out.write(plaintext)
                progress(len(plaintext))
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and digest.hexdigest() != expected.sha256:
            raise ManifestRefused(f"{volume.location(name)}: its sha256 is not the manifest's "
                                  "(replaced or rolled back)")
        if rename:
            os.replace(tmp, dest)
        return Path(tmp)
    except BaseException:
        os.unlink(tmp)
        raise


class DownloadFailed(CcrError):
    code = "DownloadFailed"
