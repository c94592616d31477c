"""The CA bundle every sidecar's outbound TLS trusts: the system store plus the spec's `trust.ca_certificates`
(and, on a box with the local stand-ins, their CA from the endpoints file).

The spec carries the extra CAs so HOST_DATA measures them; the file is written into the room's run directory
before a sidecar serves (`sidecars.room.runner.configure_in_room`), so every client of every sidecar (httpx,
the Azure SDKs, Envoy's upstream validation) reads one file.
"""

from __future__ import annotations

import os
import secrets
import ssl
from pathlib import Path

from .errors import ConfigError

#: Debian's (the runtime image's) system store; elsewhere, what OpenSSL was built to use.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def system_ca_bundle() -> Path | None:
    """The system's CA store as one PEM file, or None when there is none to read."""
    for candidate in (SYSTEM_CA_BUNDLE, ssl.get_default_verify_paths().cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def combined_pem(extra_pem: str, extra_files: tuple[Path, ...] = ()) -> str:
    """The system store, then the spec's CAs, then any extra CA files: what the bundle file holds."""
    parts = []
    system = system_ca_bundle()
    if system is not None:
        parts.append(system.read_text())
    if extra_pem:
        parts.append(extra_pem)
    for path in extra_files:
        try:
            parts.append(path.read_text())
        except OSError as exc:
            raise ConfigError(f"CA bundle {path}: {exc.strerror}") from None
    return "".join(part if part.endswith("\n") else part + "\n" for part in parts)


def write_ca_bundle(path: Path, extra_pem: str, extra_files: tuple[Path, ...] = ()) -> Path:
    """Write the combined bundle to `path` atomically (every sidecar of a room writes the same bytes, in any
    order)."""
    text = combined_pem(extra_pem, extra_files)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not the pid in the name: in a container group every sidecar is pid 1, and they share this folder
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return path
