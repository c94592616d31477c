"""One mount = one process (pyfuse3 serves one filesystem per process): get the key, mount, serve.

    python -m sidecars.volumes.mount --storage-url URL --container C --mountpoint DIR [--writable]
        (--dek-file FILE | --secret NAME --vault-url URL --kek NAME --maa-endpoint URL --skr-url URL)
        [--mode CSE|CPK|SSE] [--status-file FILE] [--uid N --gid N] [--ca-bundle PEM]

The volumes sidecar starts one per datasource/datasink. `--status-file` receives one JSON object:
`{"state": "mounted", "files": N}` once the mount is live, or `{"state": "failed", "reason": "..."}`
(key not released, container missing, ...) before the process exits with code 1. `--dek-file` (the
owner's local DEK file) is for the owner's own checks and the benchmarks, not for rooms.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import trio

from ..common.azure_clients import container_client, default_credential
from ..common.deks import load_dek_file
from ..common.errors import CcrError, ConfigError
from ..common.keyflow import fetch_dek
from ..common.logs import configure_logging
from ..common.otel import attach_parent_from_env, setup_telemetry, step_span
from ..spec import EncryptionMode
from .fs import VolumeFilesystem, run
from .store import Volume

log = logging.getLogger("ccr.volumes.mount")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sidecars.volumes.mount", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="volume", help="the volume's name (logs, fsname)")
    p.add_argument("--storage-url", required=True)
    p.add_argument("--container", required=True)
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
    with step_span(tracer, "release key", volume=args.name):
        dek = _data_key(args)
    if not args.mountpoint.is_dir():
        raise ConfigError(f"mount point {args.mountpoint} is not a directory")
    container = container_client(args.storage_url, args.container, ca_bundle=args.ca_bundle,
                                 account_key=args.account_key,
                                 credential=default_credential(args.identity_url, args.dev_tokens_dir, "volumes",
                                                                    client_id=args.client_id))
    volume = Volume(container, args.mode, dek)
    fs = VolumeFilesystem(volume, writable=args.writable, uid=args.uid, gid=args.gid,
                          cache_bytes=args.cache_mb * 1024 * 1024, readahead_blocks=args.readahead_blocks)
    with step_span(tracer, "mount", volume=args.name):
        files = fs.load_tree()

    def mounted() -> None:
        log.info("%s: %s mounted at %s (%d files, %s%s)", args.name, args.container, args.mountpoint, files,
                 args.mode.value, "" if args.writable else ", read-only")
        _write_status(args.status_file, {"state": "mounted", "files": files, "pid": os.getpid(),
                                         "mountpoint": str(args.mountpoint)})

    trio.run(lambda: run(fs, str(args.mountpoint), fsname=f"ccr-{args.name}", on_mounted=mounted))
    _write_status(args.status_file, {"state": "unmounted", "tamper_errors": fs.errors})
    return 0


if __name__ == "__main__":
    sys.exit(main())
