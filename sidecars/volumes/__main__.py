"""The volumes sidecar: mount every datasource (read-only) and datasink of the spec, report their state.

    ccr sidecar run volumes --spec SPEC --skr-url URL [--endpoints FILE] [--mount-root DIR] [--port N]

In a room it is configured from the room (`sidecar.configure`); these options configure it standalone.

Each volume is one mount process (`sidecars.volumes.mount`: fetch the wrapped DEK, have skr release
the KEK, unwrap, mount), started in parallel and supervised here. `GET /status` lists each mount with
its state (`starting`, `mounted`, `failed` with the reason, `stopped`); it answers 200 once every
volume is mounted and 503 otherwise, so it doubles as the readiness probe. SIGTERM stops the mounts
(each finishes its commits and unmounts) and then the sidecar.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.responses import JSONResponse

from ..cliargs import add_listen_options, add_spec_variable_options, load_spec_from_args, run_standalone, spec_variables
from ..common.bodylimit import NO_BODY_BYTES
from ..common.errors import ProcessError
from ..common.forkserver import ForkServerClient
from ..common.http import create_app, plain_error_body, serve
from ..common.logs import configure_logging
from ..common.otel import attach_parent_from_env, setup_telemetry
from ..common.process import ManagedProcess
from ..spec import BlobStore, Datasink, Volume
from .sidecar import VOLUMES, VolumesConfig

log = logging.getLogger("ccr.volumes")


@dataclass
class Mount:
    volume: Volume
    kind: str
    mountpoint: Path
    status_file: Path
    log_file: Path
    process: ManagedProcess | None = None
    state: str = "starting"
    reason: str | None = None
    files: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict:
        with self.lock:
            self._refresh()
            store = self.volume.store
            where = store.container if isinstance(store, BlobStore) else f"s3://{store.bucket}/{store.prefix}"
            out = {"name": self.volume.name, "kind": self.kind, "container": where,
                   "mode": self.volume.encryption.mode.value, "mountpoint": str(self.mountpoint),
                   "state": self.state}
            if self.reason:
                out["reason"] = self.reason
            if self.files is not None:
                out["files"] = self.files
            return out

    def _refresh(self) -> None:
        if self.state == "mounted" and self.process is not None and not self.process.running():
            self.state = "failed"
            self.reason = (f"mount process exited with code {self.process.popen.returncode}: "
                           f"{self.process.output_tail(3)}")


def mount_argv(config: VolumesConfig, mount: Mount) -> list[str]:
    vol = mount.volume
    if isinstance(vol.store, BlobStore):
        where = ["--storage-url", str(vol.store.account_url), "--container", vol.store.container]
    else:  # the store as the spec says it (no credentials in it: the mount asks governance for them)
        where = ["--s3-store", vol.store.model_dump_json()]
    argv = [sys.executable, "-m", "sidecars.volumes.mount", "--name", vol.name, *where,
            "--mode", vol.encryption.mode.value, "--mountpoint", str(mount.mountpoint),
            "--status-file", str(mount.status_file), "--skr-url", config.skr_url,
            "--uid", str(config.uid if config.uid is not None else config.spec.application.uid),
            "--gid", str(config.gid if config.gid is not None else config.spec.application.gid)]
    key = vol.encryption.key
    if key is not None:
        argv += ["--secret", key.dek_secret_name, "--vault-url", str(key.vault_url),
                 "--secret-vault-url", key.dek_vault_url, "--kek", key.kek_name,
                 "--maa-endpoint", str(key.maa_endpoint)]
    if config.governance_url:
        # Refused objects and the sink's manifest go on the contract's audit log; a sink's key is endorsed.
        argv += ["--governance-url", config.governance_url]
        if config.sidecar_token_file:
            argv += ["--sidecar-token-file", str(config.sidecar_token_file)]
    if isinstance(vol, Datasink):
        argv += ["--writable", "--contract-id", config.spec.contract.id]
        if config.manifest_key and config.manifest_cert:
            argv += ["--manifest-key", str(config.manifest_key), "--manifest-cert", str(config.manifest_cert)]
    elif vol.manifest_sha256:
        argv += ["--manifest-sha256", vol.manifest_sha256]
    if vol.store.identity is not None:
        # Each party's storage and vault are reached with the identity the party federated for the room.
        argv += ["--client-id", vol.store.identity.client_id]
    for flag, value in (("--ca-bundle", config.ca_bundle), ("--identity-url", config.identity_url),
                        ("--dev-tokens-dir", config.dev_tokens_dir)):
        if value:
            argv += [flag, value]
    return argv


def start_mount(config: VolumesConfig, mount: Mount, stopping: threading.Event) -> None:
    """Start one mount process and wait for its verdict; records the state, never raises. A mount that
    comes up after the sidecar began stopping is stopped again at once."""
    mount.mountpoint.mkdir(parents=True, exist_ok=True)
    mount.status_file.unlink(missing_ok=True)
    process = ManagedProcess(f"mount-{mount.volume.name}", mount_argv(config, mount),
                             ready=mount.status_file.exists, ready_timeout=config.mount_timeout_s,
                             log_path=mount.log_file, stop_timeout=30,
                             fork_server=ForkServerClient.from_environment())  # in `ccr up`: forked, not run
    mount.process = process
    try:
        process.start()
        status = json.loads(mount.status_file.read_text())
    except ProcessError as exc:
        status = {"state": "failed", "reason": exc.message}
        if mount.status_file.exists():  # the mount process said why before exiting
            status = json.loads(mount.status_file.read_text())
    with mount.lock:
        mount.state = status.get("state", "failed")
        mount.reason = status.get("reason")
        mount.files = status.get("files")
    if stopping.is_set():
        process.stop()
        with mount.lock:
            mount.state = "stopped"
        return
    if mount.state == "mounted":
        log.info("%s %s mounted at %s", mount.kind, mount.volume.name, mount.mountpoint)
    else:
        log.error("%s %s not mounted: %s", mount.kind, mount.volume.name, mount.reason)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccr sidecar run volumes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", required=True, metavar="FILE")
    add_spec_variable_options(p)
    p.add_argument("--skr-url", required=True, help="the skr sidecar")
    p.add_argument("--identity-url", help="IMDS-shaped token endpoint (the identity sidecar)")
    p.add_argument("--dev-tokens-dir", metavar="DIR",
                   help="the local emulation's dev token issuer (default: dev_tokens_dir from --endpoints)")
    p.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for HTTPS (default: ca_bundle from --endpoints)")
    p.add_argument("--mount-root", metavar="DIR", type=Path,
                   help="mount each volume at DIR/NAME (default: the volume's path in the app)")
    p.add_argument("--run-dir", metavar="DIR", type=Path, default=Path("/run/ccr/volumes"),
                   help="status and log files of the mounts (default %(default)s)")
    p.add_argument("--uid", type=int, help="owner of the files as the app sees them (default: the spec's)")
    p.add_argument("--gid", type=int)
    p.add_argument("--mount-timeout", type=float, default=120.0)
    p.add_argument("--governance-url", help="the governance sidecar (a datasink's manifest key is endorsed through it)")
    p.add_argument("--sidecar-token-file", type=Path, help="the sidecars' token for governance")
    p.add_argument("--manifest-key", type=Path, metavar="PEM",
                   help="standalone, without governance: the EC key that signs datasink manifests")
    p.add_argument("--manifest-cert", type=Path, metavar="PEM", help="the certificate of --manifest-key")
    add_listen_options(p, VOLUMES.port())
    return p


def config_from_args(args: argparse.Namespace) -> VolumesConfig:
    variables = spec_variables(args)
    return VolumesConfig(
        spec=load_spec_from_args(args), port=args.port, host=args.host, ready_file=args.ready_file,
        skr_url=args.skr_url, identity_url=args.identity_url, mount_root=args.mount_root, run_dir=args.run_dir,
        ca_bundle=args.ca_bundle or variables.get("ca_bundle"),
        dev_tokens_dir=args.dev_tokens_dir or variables.get("dev_tokens_dir"), uid=args.uid, gid=args.gid,
        mount_timeout_s=args.mount_timeout, governance_url=args.governance_url,
        sidecar_token_file=args.sidecar_token_file, manifest_key=args.manifest_key, manifest_cert=args.manifest_cert)


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("volumes", build_parser(), config_from_args, run, argv)


def run(config: VolumesConfig) -> int:
    configure_logging()
    attach_parent_from_env()
    telemetry = setup_telemetry("ccr-volumes")
    config.run_dir.mkdir(parents=True, exist_ok=True)
    mounts = []
    for kind, volumes in (("datasource", config.spec.datasources), ("datasink", config.spec.datasinks)):
        for vol in volumes:
            where = config.mount_root / vol.name if config.mount_root else Path(vol.path_in_app)
            mounts.append(Mount(vol, kind, where, config.run_dir / f"{vol.name}.status.json",
                                config.run_dir / f"{vol.name}.log"))

    stopped = threading.Event()
    threads = [threading.Thread(target=start_mount, args=(config, m, stopped), daemon=True) for m in mounts]

    def stop_mounts() -> None:
        if stopped.is_set():
            return
        stopped.set()
        for mount in mounts:
            if mount.process is not None:
                mount.process.stop()
            with mount.lock:
                mount.state = "stopped"
        log.info("mounts stopped")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        # uvicorn re-raises SIGTERM after its own shutdown, so the mounts are stopped here, not after serve().
        yield
        await asyncio.to_thread(stop_mounts)

    app = create_app("ccr volumes sidecar", error_body=plain_error_body, max_body_bytes=NO_BODY_BYTES,
                     lifespan=lifespan)

    @app.get("/status")
    def status():
        listed = [m.describe() for m in mounts]
        states = {m["state"] for m in listed}
        overall = "starting" if "starting" in states else "ready" if states <= {"mounted"} else "failed"
        return JSONResponse({"status": overall, "mounts": listed}, status_code=200 if overall == "ready" else 503)

    for thread in threads:
        thread.start()

    try:
        serve(app, config.host, config.port, ready_file=config.ready_file)
    finally:
        stop_mounts()
        telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
