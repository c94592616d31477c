"""The container group as a compose file (docker-compose / podman-compose), from the same model.

Every container the platform would start (`ContainerGroup.platform_containers`) becomes a service with
the model's image, command (as `entrypoint`, which is what ACI's and Kubernetes' `command` replace),
environment, user, privileges, capabilities and volumes. What compose adds to run it on one box:

- `room`: holds the group's network namespace (`network_mode: none`: loopback only, so nothing is
  added to the host's firewall), as the infra container does on ACI/Kubernetes; every other service
  joins it with `network_mode: "service:room"`, so all of them share localhost, as in the group;
- the stand-ins (MAA, CGS, Entra, Key Vault, Azurite) as services in that namespace, on fixed ports, so
  that the spec's `${...}` endpoints resolve to fixed URLs and the rendering is deterministic; their
  state (CA, certificates, mock SEV-SNP platform, endpoints.json) is a host directory
  `$CCR_EMULATION_DIR`, mounted at the same path everywhere, that `prepare_emulation` fills;
- the placement of `sidecars.common.room` for the local stand-ins (CCR_ENDPOINTS, CCR_HOST_DATA);
- the firewall is an init container here too, as on ACI and in `ccr room up`: it applies its rules and exits
  0; no service depends on it (podman cannot start a container whose `--requires` has exited), and the
  launcher checks its rules from the kernel before it launches the app;
- the launcher's podman reads the host's images as a read-only additional image store (no registry)
  and keeps its own containers in a volume.

The rendered file uses compose variables for what belongs to one run: `${CCR_EMULATION_DIR}` and
`${CCR_HOST_DATA}` (`prepare_emulation` writes both into an env file for `--env-file`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..common.containers import REMOTE_ROOT, RUN_ROOT, RUNTIME_IMAGE, VOLUME_REMOTE, Container, Mount, image_ref
from ..common.devtokens import DevTokenIssuer
from ..common.http import TlsFiles
from ..common.mounts import make_shared, mounts_below
from ..common.room import ENDPOINTS_ENV, HOST_DATA_ENV, MOUNT_ROOT_ENV, RUN_DIR_ENV
from ..common.sidecar import Sidecar
from ..common.tls import LocalCA
from ..emulators.entra import LOCAL_TENANT_ID
from ..emulators.runner import REGISTRY as STAND_INS
from ..emulators.runner import RunContext
from ..room.group import ContainerGroup
from ..room.registry import REGISTRY

ROOM_SERVICE = "room"
EMULATION_VAR = "${CCR_EMULATION_DIR}"
HOST_DATA_VAR = "${CCR_HOST_DATA}"
#: The stand-ins' ports inside the group's namespace (clear of every sidecar port).
STAND_IN_PORTS = {"maa": 9441, "cgs": 9442, "entra": 9443, "keyvault": 9444, "azurite": 9445, "s3": 9446}
EMULATORS_IMAGE = "ccr-emulators"
#: The launcher's podman: the host's image store read-only, its own storage in a volume.
HOST_IMAGE_STORE = "/var/lib/containers/storage"
SHARED_IMAGE_STORE = "/var/lib/ccr-images"
LAUNCHER_STORAGE = "launcher-storage"


def stand_in_endpoints(emulation_dir: str) -> dict[str, str]:
    """endpoints.json of the compose stand-ins (the URLs are fixed; paths are under `emulation_dir`)."""

    url = {name: f"https://127.0.0.1:{port}" for name, port in STAND_IN_PORTS.items()}
    return {
        "maa_endpoint": url["maa"], "cgs_endpoint": url["cgs"], "entra_endpoint": url["entra"],
        "keyvault_url": url["keyvault"], "storage_url": f"{url['azurite']}/devstoreaccount1",
        "s3_endpoint": url["s3"], "s3_region": "us-east-1",
        "ca_bundle": f"{emulation_dir}/ca/ca.pem", "mock_platform_dir": f"{emulation_dir}/mock-platform",
        "dev_tokens_dir": f"{emulation_dir}/dev-tokens", "cgs_operator_dir": f"{emulation_dir}/cgs/operator",
        "entra_tenant_id": LOCAL_TENANT_ID, "entra_issuer": f"https://sts.windows.net/{LOCAL_TENANT_ID}/",
        "entra_jwks": f"{emulation_dir}/entra/jwks.json",
        "entra_credentials_file": f"{emulation_dir}/entra/federated-credentials.json",
    }


def _stand_in_commands(emulation_dir: str) -> dict[str, list[str]]:
    """Each stand-in's command line from the emulators' own registry, with a fixed port."""

    root = Path(emulation_dir)
    ctx = RunContext(root, LocalCA(root / "ca"), root / "mock-platform", DevTokenIssuer(root / "dev-tokens"),
                     endpoints=stand_in_endpoints(emulation_dir))
    commands = {}
    for stand_in in STAND_INS:
        tls = TlsFiles(str(root / "tls" / f"{stand_in.name}.pem"), str(root / "tls" / f"{stand_in.name}.key"))
        argv = stand_in.command(ctx, tls, root / f"{stand_in.name}.ready.json")
        argv[0] = "python3"
        argv[argv.index("--port") + 1] = str(STAND_IN_PORTS[stand_in.name])
        commands[stand_in.name] = argv
    return commands


def _escape(value: str) -> str:
    """Compose interpolates `$`: a literal one is `$$`; only the emulation directory is a variable."""
    return value.replace("$", "$$").replace("$" + EMULATION_VAR, EMULATION_VAR)


def _volume(mount: Mount) -> dict:
    volume: dict = {"type": "volume", "source": mount.volume, "target": mount.target, "read_only": mount.read_only}
    if mount.propagation == "shared":
        # FUSE mounts made below it by the volumes sidecar must appear in the launcher's view.
        volume = {"type": "bind", "source": f"{EMULATION_VAR}/remote", "target": mount.target,
                  "read_only": mount.read_only, "bind": {"propagation": "rshared", "create_host_path": True}}
    return volume


def _service(sidecar: Sidecar, container: Container, emulation: Mapping[str, str],
             depends_on: dict[str, dict[str, str]]) -> dict:
    env = {**container.env_dict, **emulation}
    service: dict = {
        "image": container.image,
        "entrypoint": list(container.command),
        "network_mode": f"service:{ROOM_SERVICE}",
        "user": str(container.user),
        "environment": {k: _escape(v) if k == "CCR_SPEC" else v for k, v in sorted(env.items())},
        "volumes": [_volume(m) for m in container.mounts] + [
            {"type": "bind", "source": EMULATION_VAR, "target": EMULATION_VAR, "read_only": False}],
        "depends_on": depends_on,
    }
    if container.privileged:
        service["privileged"] = True
    if container.capabilities:
        service["cap_add"] = [c.removeprefix("CAP_") for c in container.capabilities]
    if sidecar.devices:
        service["devices"] = [f"{device}:{device}" for device in sidecar.devices]
    if sidecar.runs_containers:
        service["environment"]["CONTAINERS_STORAGE_CONF"] = "/etc/ccr/storage.conf"
        service["volumes"] += [
            {"type": "bind", "source": HOST_IMAGE_STORE, "target": SHARED_IMAGE_STORE, "read_only": True},
            {"type": "volume", "source": LAUNCHER_STORAGE, "target": "/var/lib/containers"}]
    return service


def compose_project(group: ContainerGroup) -> dict:
    """The compose document for `group` (its stand-ins resolve the spec's endpoints: see module doc)."""
    emulation = {ENDPOINTS_ENV: f"{EMULATION_VAR}/endpoints.json", HOST_DATA_ENV: HOST_DATA_VAR,
                 RUN_DIR_ENV: RUN_ROOT, MOUNT_ROOT_ENV: REMOTE_ROOT}
    runtime = image_ref(RUNTIME_IMAGE, group.registry, _version(group))
    emulators_image = image_ref(EMULATORS_IMAGE, group.registry, _version(group))
    services: dict[str, dict] = {ROOM_SERVICE: {
        "image": runtime, "entrypoint": ["sleep", "infinity"], "network_mode": "none"}}
    stand_ins = []
    for name, argv in _stand_in_commands(EMULATION_VAR).items():
        services[name] = {
            "image": emulators_image, "entrypoint": argv,
            "network_mode": f"service:{ROOM_SERVICE}", "working_dir": EMULATION_VAR,
            "volumes": [{"type": "bind", "source": EMULATION_VAR, "target": EMULATION_VAR, "read_only": False}],
            "depends_on": [ROOM_SERVICE, *stand_ins]}
        stand_ins.append(name)
    # The startup order of ARCHITECTURE §6, as `ccr room up` runs it: each wave after the one before.
    previous: list[Sidecar] = []
    for wave in REGISTRY.waves():
        for sidecar in wave:
            after = {name: {"condition": "service_started"} for name in (ROOM_SERVICE, *stand_ins, *previous)}
            services[sidecar.name] = _service(sidecar, group.container(f"ccr-{sidecar.name}"), emulation, after)
        # No service depends on an init container (the firewall): podman-compose turns every dependency into
        # podman's `--requires`, and podman cannot start a container whose required container has exited.
        # The launcher reads the rules from the kernel before it launches the app (and the sidecars, uid 0,
        # are not confined by them), so the app never runs without them.
        previous = [s.name for s in wave if not s.init_container]
    volumes = {v: {} for v in group.volumes if v != VOLUME_REMOTE}
    volumes[LAUNCHER_STORAGE] = {}
    return {"name": f"ccr-{group.name}", "services": services, "volumes": volumes}


HEADER = """\
# The container group of {source}, rendered by `ccr spec render compose`
# from the same model as the CCE policy and the ARM template (sidecars/room/group.py).
# Do not edit: re-render.
#
#   ccr images build --sidecars && ccr images build cleanroomhello-job --pin SPEC
#   ccr spec render compose SPEC -o docker-compose.yml --prepare run/compose
#   podman-compose --env-file run/compose/compose.env -f docker-compose.yml up -d
#   podman-compose --env-file run/compose/compose.env -f docker-compose.yml down -v -t 1
#   ccr emulators release-compose --run-dir run/compose
"""


def _version(group: ContainerGroup) -> str:
    """The sidecar images' version the group was rendered with (the stand-ins' image goes with it)."""
    return group.platform_containers[0].image.rpartition(":")[2]


def render_compose(group: ContainerGroup, source: str) -> str:
    body = yaml.safe_dump(compose_project(group), sort_keys=False, width=1 << 16, default_flow_style=False)
    return HEADER.format(source=source) + body


def release_emulation(directory: Path) -> list[str]:
    """Undo `prepare_emulation`'s mounts after `compose down` (and any FUSE mount a killed volumes
    container left behind); returns what was unmounted."""
    done = []
    for target in sorted(mounts_below(directory.resolve() / "remote"), reverse=True):
        if subprocess.run(["umount", "--lazy", target], capture_output=True).returncode == 0:
            done.append(target)
    return done


def prepare_emulation(directory: Path, host_data: str) -> Path:
    """Fill the stand-ins' state directory (CA, certificates, mock platform, dev tokens, endpoints.json),
    make its `remote/` a shared mount (undone by `release_emulation`) and write `compose.env` beside
    it; returns the env file."""

    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    ca = LocalCA.create(directory / "ca")
    ctx = RunContext(directory, ca, directory / "mock-platform", DevTokenIssuer.create(directory / "dev-tokens"))
    for stand_in in STAND_INS:
        stand_in.prepare(ctx)
        ca.issue_server_cert(stand_in.name, directory=directory / "tls")
    (directory / "logs").mkdir(exist_ok=True)
    make_shared(directory / "remote")
    # No `ca_certificates` here: the compose file was rendered before this CA existed, so its CCR_SPEC cannot
    # carry it; the sidecars trust it through the emulation's `ca_bundle` instead. A member who resolved the
    # spec with it would compute another HOST_DATA than the group's.
    (directory / "endpoints.json").write_text(
        json.dumps(stand_in_endpoints(str(directory)), indent=2, sort_keys=True) + "\n")
    env_file = directory / "compose.env"
    env_file.write_text(f"CCR_EMULATION_DIR={directory}\nCCR_HOST_DATA={host_data}\n")
    return env_file
