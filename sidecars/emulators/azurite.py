"""Azurite, Microsoft's Azure Blob storage emulator, as the room's local blob store.

Pinned to 3.35.0 by the project's package.json (3.36+ need Node >= 22). Started as one `node` process
with `ManagedProcess`: in-memory (nothing left on disk), no telemetry (it would call out), any API
version (the SDK is newer than the emulator). Port 0 lets Azurite pick a free port; readiness is its
"successfully listens on URL" line, which also tells the port, so there is no bind race.

HTTPS (`tls`) is needed for customer-provided keys (the SDK refuses to send a key over http) and for
bearer tokens; `oauth=True` makes Azurite accept tokens (it checks `aud` and `iss`, not the signature).
Azurite does not implement customer-provided keys: in strict mode it refuses the headers
(FeatureNotSupported), with `loose=True` it accepts and ignores them (CPK can be exercised, not enforced).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import sidecars

from ..common.azure_clients import AZURITE_ACCOUNT as ACCOUNT_NAME
from ..common.azure_clients import AZURITE_KEY as ACCOUNT_KEY
from ..common.errors import ProcessError
from ..common.http import TlsFiles
from ..common.process import ManagedProcess, write_ready_file

_LISTENING = re.compile(r"Blob service successfully listens on (https?)://([\d.]+):(\d+)")


def azurite_script() -> Path:
    script = Path(sidecars.__file__).resolve().parent.parent / "node_modules" / ".bin" / "azurite-blob"
    if not script.exists():
        raise ProcessError(f"Azurite is not installed ({script} missing): run `make setup` (npm install)")
    return script


@dataclass
class Azurite:
    """A running Azurite blob service; `blob_url` includes the account (path-style, as Azurite serves)."""

    process: ManagedProcess
    scheme: str
    host: str
    port: int
    ca_file: str | None

    account_name = ACCOUNT_NAME
    account_key = ACCOUNT_KEY

    @property
    def blob_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT_NAME};"
                f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.blob_url};")

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def start_azurite(*, host: str = "127.0.0.1", port: int = 0, tls: TlsFiles | None = None,
                  ca_file: str | None = None, oauth: bool = False, loose: bool = False,
                  log_path: str | Path | None = None,
                  ready_timeout: float = 30.0) -> Azurite:
    """Start Azurite's blob service and wait until it listens. `oauth` needs `tls` (Azurite's rule)."""
    if oauth and tls is None:
        raise ProcessError("Azurite accepts OAuth tokens only over HTTPS: pass tls")
    node = shutil.which("node")
    if node is None:
        raise ProcessError("node is not installed (Azurite needs Node.js 20): run `make setup`")
    argv = [node, str(azurite_script()), "--blobHost", host, "--blobPort", str(port),
            "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--silent"]
    if tls is not None:
        argv += ["--cert", tls.cert_file, "--key", tls.key_file]
    if oauth:
        argv += ["--oauth", "basic"]
    if loose:
        argv.append("--loose")
    found: dict[str, re.Match[str]] = {}
    process = ManagedProcess("azurite", argv, log_path=log_path, ready_timeout=ready_timeout)

    def listening() -> bool:
        match = _LISTENING.search(process.output())
        if match:
            found["match"] = match
        return match is not None

    process.ready = listening
    process.start()
    scheme, bound_host, bound_port = found["match"].groups()
    return Azurite(process, scheme, bound_host, int(bound_port), ca_file)


def main(argv: list[str] | None = None) -> int:
    """`python -m sidecars.emulators.azurite`: Azurite as a stand-in (HTTPS, tokens, a ready file), so that
    `ccr emulators start` runs it like the others and stops it with one signal."""

    parser = argparse.ArgumentParser(prog="python -m sidecars.emulators.azurite", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cert", required=True, help="TLS certificate chain (PEM)")
    parser.add_argument("--key", required=True, help="TLS private key (PEM)")
    parser.add_argument("--ready-file", type=Path, help="written once listening: {port, url}")
    parser.add_argument("--log-file", type=Path, help="Azurite's own output (default: a temporary file)")
    args = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        azurite = start_azurite(host=args.host, port=args.port, tls=TlsFiles(args.cert, args.key), oauth=True,
                                log_path=args.log_file)
    except ProcessError as exc:
        print(f"azurite: {exc}", file=sys.stderr)
        return 1
    if args.ready_file:
        write_ready_file(args.ready_file, azurite.port, azurite.blob_url)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    azurite.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
