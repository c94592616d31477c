"""`ccr sidecar NAME` with no options, in a container: its options come from the environment.

The container group model (`sidecars.renderings.containers`) gives every sidecar `CCR_SIDECAR`, `CCR_SPEC`
(the resolved spec, canonical JSON), `CCR_PORT` and the `CCR_<NAME>_URL` of the others. Running the group
on a Linux box (compose) against the local stand-ins adds a few extras:

- `CCR_ENDPOINTS`: the stand-ins' endpoints.json, mounted (CA bundle, mock platform, Entra tenant, ...);
- `CCR_HOST_DATA`: the HOST_DATA the mock SEV-SNP platform reports (`ccr deploy policy-hash SPEC`);
- `CCR_RUN_DIR`: the group's shared run volume (default /run/ccr): ready files, the sidecars' token;
- `CCR_MOUNT_ROOT`: where the volumes sidecar mounts, shared with the launcher (default /mnt/remote);
- `CCR_NETNS`: the name under /run/netns by which the launcher hands its own network namespace (the
  group's) to the app container (default ccr-room).

The options are `RoomPlan`'s (sidecars/localroom/plan.py), the same derivation `ccr up` uses, so a sidecar
runs with the same configuration as a process in a netns and as a container.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import ConfigError, SpecError
from ..renderings.containers import REMOTE_ROOT, RUN_ROOT
from ..spec import endpoint_variables, parse_spec
from .plan import RoomPlan, SidecarLaunch

DEFAULT_NETNS = "ccr-room"
HOST_DATA = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class ContainerPlan(RoomPlan):
    """A RoomPlan whose paths are the container group's shared volumes."""

    mount_root_dir: Path = Path(REMOTE_ROOT)

    @property
    def mount_root(self) -> Path:
        return self.mount_root_dir

    def write_secrets(self) -> None:
        """Every sidecar container calls this; the first one creates the token (atomically), the others
        find it, so all of them hold the same one."""
        path = self.sidecar_token_file
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(secrets.token_urlsafe(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def launch(self, name: str) -> SidecarLaunch:
        launches = self.sidecars()
        if name not in launches:
            raise ConfigError(f"sidecar {name!r} has no configuration from the environment; "
                              f"known: {', '.join(sorted(launches))}")
        return launches[name]


def _required(environ: Mapping[str, str], name: str, what: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set: {what}")
    return value


def container_plan(name: str, environ: Mapping[str, str]) -> ContainerPlan:
    try:
        spec = parse_spec(json.loads(_required(environ, "CCR_SPEC", "the resolved spec as JSON")), source="CCR_SPEC")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"CCR_SPEC is not JSON: {exc.msg} at column {exc.colno}") from None
    except SpecError as exc:
        raise ConfigError(f"CCR_SPEC: {'; '.join(exc.problems)}") from None
    endpoints_file = Path(_required(environ, "CCR_ENDPOINTS", "the mounted endpoints.json of the stand-ins"))
    host_data = environ.get("CCR_HOST_DATA", "")
    if name == "skr" and not HOST_DATA.match(host_data):
        raise ConfigError("CCR_HOST_DATA must be the room's HOST_DATA (64 hex digits, `ccr deploy policy-hash`)")
    run_dir = Path(environ.get("CCR_RUN_DIR", RUN_ROOT))
    return ContainerPlan(spec_path=run_dir / "spec" / f"{name}.json", spec=spec, endpoints_file=endpoints_file,
                         endpoints=endpoint_variables(endpoints_file), run_dir=run_dir,
                         netns=environ.get("CCR_NETNS", DEFAULT_NETNS), host_data=host_data,
                         mount_root_dir=Path(environ.get("CCR_MOUNT_ROOT", REMOTE_ROOT)))


def _attach_own_netns(netns: str) -> None:
    """Name this container's network namespace (the group's) under /run/netns, where the launcher's
    `podman run --network ns:/run/netns/NAME` finds it."""
    if Path(f"/run/netns/{netns}").exists():
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
    result = subprocess.run(["ip", "netns", "attach", netns, str(os.getpid())], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(f"cannot name the group's network namespace {netns}: {result.stderr.strip()}")


def options_from_environment(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The options of `ccr sidecar NAME` in a container, with what they refer to put in place."""
    environ = os.environ if environ is None else environ
    plan = container_plan(name, environ)
    launch = plan.launch(name)
    port = environ.get("CCR_PORT")
    # (the proxy's plan port is its status port; its listeners keep the defaults the model names)
    if port and name != "proxy" and port != str(launch.port):
        raise ConfigError(f"CCR_PORT is {port} but {name} listens on {launch.port} in this room")
    plan.spec_path.parent.mkdir(parents=True, exist_ok=True)
    plan.spec_path.write_text(environ["CCR_SPEC"])
    plan.ready_file(name).parent.mkdir(parents=True, exist_ok=True)
    plan.write_secrets()
    if name == "launcher":
        _attach_own_netns(plan.netns)
    return list(launch.options)
