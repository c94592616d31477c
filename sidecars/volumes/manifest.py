"""Manifests: what a container must hold, object by object, so that storage cannot roll back, delete or add.

The object format detects any change to an object, but an *older authentic version* of the same object
decrypts fine, and a deleted object is simply absent. A manifest names every object of a container with
its stored size, the sha256 of its stored bytes and, for CSE objects, its 40-byte header:

    {"format": "ccr-manifest/v1", "kind": "dataset"|"sink", "account": ..., "container": ..., "mode": ...,
     "objects": [{"name": ..., "size": stored bytes, "sha256": hex of the stored bytes, "header": hex}],
     "contract": ..., "run": ..., "finished": ...}          # the last three: sink manifests only

Why these digests. The sha256 of the *ciphertext* distinguishes versions (each encryption draws a fresh
salt and nonce prefix, so two versions of the same plaintext differ), costs the publisher nothing (it
hashes what it uploads) and is checked in full by `ccr data download`, which reads every byte anyway. A
plaintext digest would not distinguish a rollback to identical content (harmless), but it would publish
a dictionary-attackable hash of the data. The room cannot afford to hash an object before serving a
random read, so for CSE it checks the header instead: every segment key is derived from the header's salt
and every nonce from its prefix, so once the header is pinned only the DEK's holder can produce segments
that authenticate — the header and the size commit to one version as firmly as the full digest does.
CPK and SSE objects have no header: the room checks their names and sizes, and download their digests.

Who writes, who checks:
- dataset (datasource): `ccr data publish` writes it as the blob MANIFEST_BLOB; the datasource in the spec
  pins its sha256 (`manifest_sha256`), so the attested room (spec measured into HOST_DATA) uses only the
  manifest the members agreed to. The mount and `ccr data download` fetch it and check it against the pin.
- sink (datasink): the room writes it when the run ends, signed by a key whose certificate the contract's
  CA endorsed for an attested room of this contract (CGS issues it only to a room whose evidence satisfies
  the contract's policy, with execution consent). Consumers check it with the CA certificate they read
  from CGS (`ccr governance ca show`), which they already trust for the contract.

Every input here is hostile: a manifest that does not parse exactly is refused with one line.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..common.errors import CcrError
from ..common.roomcerts import datasink_signer_name
from ..common.untrusted import DocumentLimits, UntrustedInputError, decode_utf8, load_json

FORMAT = "ccr-manifest/v1"
#: The reserved folder of a container: never an object of the dataset, never shown by a mount.
RESERVED_PREFIX = ".ccr/"
MANIFEST_BLOB = ".ccr/manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
#: what storage hands back is parsed within these bounds: an envelope, a manifest, its list of objects, an
#: entry (depth 4), each entry at least ~100 bytes of 9 nodes
MANIFEST_LIMITS = DocumentLimits(max_bytes=MAX_MANIFEST_BYTES, max_depth=8, max_nodes=MAX_MANIFEST_BYTES // 8)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEADER_HEX = re.compile(r"^[0-9a-f]{80}$")
Kind = Literal["dataset", "sink"]


class ManifestRefused(CcrError):
    """The container is not what its manifest names (object missing, extra, another version), or the manifest
    itself is missing, malformed, not the pinned one, or not signed by an attested room of the contract."""

    code = "ManifestRefused"
    http_status = 422


class SinkManifestMissing(ManifestRefused):
    """A datasink holds no signed manifest: the room signs it when it stops, so until then (or if it was
    deleted) the sink's results cannot be checked. A refusal like any other; callers that can tell the user
    to wait for the room to stop catch this one by name."""


def is_reserved(name: str) -> bool:
    return name.startswith(RESERVED_PREFIX) or name == RESERVED_PREFIX.rstrip("/")


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    sha256: str
    header: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "size": self.size, "sha256": self.sha256}
        if self.header is not None:
            out["header"] = self.header
        return out

    @property
    def header_bytes(self) -> bytes | None:
        return bytes.fromhex(self.header) if self.header is not None else None


@dataclass(frozen=True)
class Manifest:
    kind: Kind
    account: str
    container: str
    mode: str
    entries: Mapping[str, Entry]
    #: sink manifests: the contract, a random id of the run and when it ended (ISO 8601, UTC)
    contract: str | None = None
    run: str | None = None
    finished: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "kind": self.kind, "account": self.account,
                               "container": self.container, "mode": self.mode,
                               "objects": [self.entries[n].to_json() for n in sorted(self.entries)]}
        for key in ("contract", "run", "finished"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace): what is hashed, pinned and signed."""
        return canonical(self.to_json())

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _refuse(where: str, problem: str) -> ManifestRefused:
    return ManifestRefused(f"{where}: {problem}")


def parse(raw: bytes, where: str) -> Manifest:
    """A manifest from its stored bytes; ManifestRefused (one line) unless every field is exactly as written."""
    return from_json(_stored_json(raw, where, "manifest"), where)


def _stored_json(raw: bytes, where: str, what: str) -> Any:
    """JSON that storage handed back (so hostile: any size, any depth), bounded by MANIFEST_LIMITS."""
    try:
        return load_json(decode_utf8(raw, MANIFEST_LIMITS), MANIFEST_LIMITS)
    except UntrustedInputError as exc:
        raise _refuse(where, f"malformed {what}: it {exc}") from None


def from_json(data: Any, where: str) -> Manifest:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _refuse(where, f"not a {FORMAT} manifest")
    allowed = {"format", "kind", "account", "container", "mode", "objects", "contract", "run", "finished"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _refuse(where, f"manifest has unknown field {unknown[0]!r}")
    if data.get("kind") not in ("dataset", "sink"):
        raise _refuse(where, "manifest kind is neither dataset nor sink")
    for key in ("account", "container", "mode"):
        if not isinstance(data.get(key), str):
            raise _refuse(where, f"manifest field {key!r} is missing or not a string")
    for key in ("contract", "run", "finished"):
        if key in data and not isinstance(data[key], str):
            raise _refuse(where, f"manifest field {key!r} is not a string")
    objects = data.get("objects")
    if not isinstance(objects, list):
        raise _refuse(where, "manifest has no list of objects")
    entries: dict[str, Entry] = {}
    for index, item in enumerate(objects):
        entry = _entry(item, f"objects[{index}]", where)
        if entry.name in entries:
            raise _refuse(where, f"manifest names {entry.name!r} twice")
        entries[entry.name] = entry
    return Manifest(data["kind"], data["account"], data["container"], data["mode"], entries,
                    data.get("contract"), data.get("run"), data.get("finished"))


def _entry(item: Any, at: str, where: str) -> Entry:
    if not isinstance(item, dict) or set(item) - {"name", "size", "sha256", "header"}:
        raise _refuse(where, f"manifest {at} is not an object entry")
    name, size, digest, header = item.get("name"), item.get("size"), item.get("sha256"), item.get("header")
    if not isinstance(name, str) or not name or is_reserved(name):
        raise _refuse(where, f"manifest {at}.name is not a usable object name")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _refuse(where, f"manifest {at}.size is not a size")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise _refuse(where, f"manifest {at}.sha256 is not 64 lower-case hex digits")
    if header is not None and (not isinstance(header, str) or not _HEADER_HEX.match(header)):
        raise _refuse(where, f"manifest {at}.header is not 80 lower-case hex digits")
    return Entry(name, size, digest, header)


# -- datasets: pinned by hash -----------------------------------------------------------------------------

def pinned_dataset(raw: bytes | None, pin: str, *, account: str, container: str, where: str) -> Manifest:
    """The dataset manifest of `account/container`, if `raw` is the one whose sha256 the spec pins."""
    if raw is None:
        raise _refuse(where, f"no manifest ({MANIFEST_BLOB} is missing) but the spec pins one")
    actual = hashlib.sha256(raw).hexdigest()
    if actual != pin.lower():
        raise _refuse(where, f"{MANIFEST_BLOB} has sha256 {actual[:16]}…, not the {pin[:16]}… the spec pins "
                             "(replaced or rolled back)")
    manifest = parse(raw, where)
    _same_place(manifest, "dataset", account, container, where)
    return manifest


def _same_place(manifest: Manifest, kind: Kind, account: str, container: str, where: str) -> None:
    if manifest.kind != kind:
        raise _refuse(where, f"the manifest is a {manifest.kind} manifest, not a {kind} one")
    if (manifest.account, manifest.container) != (account, container):
        raise _refuse(where, f"the manifest is for {manifest.account}/{manifest.container}, not {account}/{container}")


# -- sinks: signed by the attested room ---------------------------------------------------------------------

@dataclass(frozen=True)
class Signer:
    """The room's signing key and its certificate endorsed by the contract CA (PEM)."""

    key: ec.EllipticCurvePrivateKey
    cert_pem: str

    def sign(self, manifest: Manifest) -> bytes:
        body = manifest.to_bytes()
        signature = self.key.sign(body, ec.ECDSA(hashes.SHA384()))
        return canonical({"manifest": manifest.to_json(), "signature": base64.b64encode(signature).decode(),
                          "certificate": self.cert_pem})


def new_signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def sink_signer_name(volume: str) -> str:
    """The subject CN of a datasink mount's manifest key: the contract CA also endorses other keys of the room
    (the proxy's TLS key, for one), and none of those may sign a sink's manifest. Reserved for the sidecars:
    the governance sidecar endorses it for no caller without the sidecar token (the app)."""
    return datasink_signer_name(volume)


def signed_sink(raw: bytes | None, ca_pem: bytes, *, contract: str | None, account: str, container: str,
                where: str, volume: str | None = None) -> Manifest:
    """The sink manifest of `account/container` if its signature verifies with a certificate that `ca_pem` (the
    contract CA's certificate) issued, valid when the manifest says the run finished, and (with `volume`)
    issued to the mount of that datasink."""
    if raw is None:
        raise SinkManifestMissing(f"{where}: no signed manifest ({MANIFEST_BLOB} is missing): the run did not "
                                  "finish, or its manifest was deleted")
    envelope = _stored_json(raw, where, "signed manifest")
    try:
        body, signature_b64, cert_pem = envelope["manifest"], envelope["signature"], envelope["certificate"]
        signature = base64.b64decode(signature_b64, validate=True)
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise _refuse(where, "the signed manifest is malformed (manifest, signature, certificate)") from None
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise ManifestRefused("the contract CA certificate is not a PEM certificate") from None
    manifest = from_json(body, where)
    _check_certificate(cert, ca, manifest, where)
    if volume is not None:
        names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        if names != [sink_signer_name(volume)]:
            raise _refuse(where, f"the manifest was signed by {', '.join(map(str, names)) or 'an unnamed key'}, not "
                                 f"by the room's mount of datasink {volume}")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise _refuse(where, "the manifest's certificate is not for an EC key")
    try:
        public.verify(signature, canonical(body), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise _refuse(where, "the manifest's signature does not verify (altered after signing)") from None
    _same_place(manifest, "sink", account, container, where)
    if contract is not None and manifest.contract != contract:
        raise _refuse(where, f"the manifest is for contract {manifest.contract!r}, not {contract!r}")
    return manifest


def _check_certificate(cert: x509.Certificate, ca: x509.Certificate, manifest: Manifest, where: str) -> None:
    if cert.issuer != ca.subject:
        raise _refuse(where, "the manifest was not signed by a room of this contract (its certificate's "
                             "issuer is not the contract CA)")
    ca_key = ca.public_key()
    try:
        if not isinstance(ca_key, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        assert cert.signature_hash_algorithm is not None
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except (InvalidSignature, AssertionError):
        raise _refuse(where, "the manifest was not signed by a room of this contract (its certificate was not "
                             "issued by the contract CA)") from None
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            raise _refuse(where, "the manifest's certificate is a CA certificate, not a room's")
    except x509.ExtensionNotFound:
        pass
    try:
        finished = dt.datetime.fromisoformat(manifest.finished or "")
    except ValueError:
        raise _refuse(where, "the manifest does not say when the run finished") from None
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=dt.UTC)
    if not cert.not_valid_before_utc <= finished <= cert.not_valid_after_utc:
        raise _refuse(where, "the manifest was signed outside its certificate's validity")


# -- checking a container against a manifest ----------------------------------------------------------------

def compare(manifest: Manifest, stored: Mapping[str, int], where: str, *, extras_allowed: bool) -> list[str]:
    """Refuses a listing (name → stored size) that lacks a manifest object or holds it at another size; returns
    the names storage holds beyond the manifest (refused unless `extras_allowed`), reserved names excluded."""
    for name in sorted(manifest.entries):
        entry = manifest.entries[name]
        if name not in stored:
            raise _refuse(where, f"object {name} named by the manifest is missing (deleted)")
        if stored[name] != entry.size:
            raise _refuse(where, f"object {name} is {stored[name]} bytes, the manifest says {entry.size} "
                                 "(replaced or rolled back)")
    extras = sorted(n for n in stored if n not in manifest.entries and not is_reserved(n))
    if extras and not extras_allowed:
        raise _refuse(where, f"object {extras[0]} is not in the manifest (added after the run)"
                      + (f", and {len(extras) - 1} more" if len(extras) > 1 else ""))
    return extras


def entries_from(items: Iterable[Entry]) -> dict[str, Entry]:
    return {e.name: e for e in items}
