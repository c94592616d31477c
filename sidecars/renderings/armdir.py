"""`arm/`: the ARM template, parameters and CCE policy of each example, committed and checked current.

`make arm` (this module) renders every `examples/*/spec.yaml` into `arm/<example>/`:

- `cleanroom-arm-template.json`, `cleanroom-arm-template.parameters.json`, `ccepolicy.rego`: exactly what
  `ccr spec render arm SPEC --layers arm/<example>/layers.json` writes with the variables below;
- `variables.json`: the values the spec's `${...}` were given: the local stand-ins at their fixed ports
  (those of `ccr spec render compose`, the same as docker-compose.yml), plus an example's own values;
- `layers.json`: the layer lock (each image's digest and dm-verity layer hashes) the policy was rendered
  from. It is what makes the rendering deterministic: the policy lists every layer hash of every image,
  and those change whenever an image is rebuilt, so the committed files are rendered from the committed
  lock, never from whatever images the machine holds. `make arm-runnable` refreshes the locks from the
  local podman store after building the images (`--refresh-layers`).

As committed, an example's application image is the placeholder `REPO@sha256:0000…` of its spec (an app
image's digest depends on the machine that builds it): its lock entry says so (the placeholder digest and
no layers), and the template cannot start that app anywhere. `make arm-runnable` builds the sidecar and
app images, pins the specs to the built digests, refreshes the locks and re-renders (arm/README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..common.errors import CcrError, ConfigError
from ..emulators.entra import LOCAL_TENANT_ID
from ..room.group import render_group
from ..spec import load_spec
from .arm import PARAMETERS_FILE, TEMPLATE_FILE, arm_parameters, arm_template, dumps
from .compose import STAND_IN_PORTS
from .layers import ImageInfo, LockedImages
from .render import default_cache_dir, default_images, render

REPO = Path(__file__).resolve().parents[2]
POLICY_FILE = "ccepolicy.rego"
LOCK_FILE = "layers.json"
VARIABLES_FILE = "variables.json"
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64

#: The spec variables every example gets: the compose stand-ins' fixed URLs (no file paths: nothing in the
#: rendering may depend on where a checkout is).
STAND_IN_VARIABLES = {
    "maa_endpoint": f"https://127.0.0.1:{STAND_IN_PORTS['maa']}",
    "cgs_endpoint": f"https://127.0.0.1:{STAND_IN_PORTS['cgs']}",
    "entra_endpoint": f"https://127.0.0.1:{STAND_IN_PORTS['entra']}",
    "keyvault_url": f"https://127.0.0.1:{STAND_IN_PORTS['keyvault']}",
    "storage_url": f"https://127.0.0.1:{STAND_IN_PORTS['azurite']}/devstoreaccount1",
    "entra_tenant_id": LOCAL_TENANT_ID,
}
#: An example's own variables, which its demo sets per run (db-access: the database's address and the CGS
#: secret id of its configuration); the values here are documentation addresses and names (RFC 5737).
EXAMPLE_VARIABLES = {
    "db-access": {"db_host": "192.0.2.10", "db_config_secret": "PUBLISHER-MEMBER-ID_db-config"},
}


def example_specs(repo: Path = REPO) -> dict[str, Path]:
    """Each example that has a spec, by its folder's name."""
    return {spec.parent.name: spec for spec in sorted((repo / "examples").glob("*/spec.yaml"))}


def example_variables(name: str) -> dict[str, str]:
    return {**STAND_IN_VARIABLES, **EXAMPLE_VARIABLES.get(name, {})}


def _placeholder(reference: str) -> ImageInfo:
    return ImageInfo(reference=reference, digest=PLACEHOLDER_DIGEST, layers=())


def refreshed_lock(spec_path: Path, name: str, *, progress=None) -> LockedImages:
    """A lock of the spec's images from the local podman store (a placeholder app image stays one)."""
    group = render_group(load_spec(spec_path, variables=example_variables(name)))
    images = default_images(None, default_cache_dir(), progress=progress)
    lock = LockedImages({})
    for container in group.containers:
        if container.image not in lock.images:
            lock.images[container.image] = (_placeholder(container.image)
                                            if container.image.endswith("@" + PLACEHOLDER_DIGEST)
                                            else images.resolve(container.image))
    return lock


def render_example(spec_path: Path, name: str, lock: LockedImages) -> dict[str, str]:
    """The files of arm/<name>/, by file name."""
    variables = example_variables(name)
    rendering = render(load_spec(spec_path, variables=variables), lock)
    return {TEMPLATE_FILE: dumps(arm_template(rendering.group, rendering.policy)),
            PARAMETERS_FILE: dumps(arm_parameters(rendering.group)),
            POLICY_FILE: rendering.policy,
            VARIABLES_FILE: json.dumps(variables, indent=2, sort_keys=True) + "\n",
            LOCK_FILE: lock.dump()}


def committed_lock(out: Path, name: str) -> LockedImages:
    path = out / name / LOCK_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing: `make arm-runnable` builds the images and writes it")
    return LockedImages.load(path)


def render_all(out: Path, *, repo: Path = REPO, refresh_layers: bool = False, progress=None) -> dict[Path, str]:
    """Every file of `out` (arm/), by path: rendered from the committed locks, or from refreshed ones."""
    files: dict[Path, str] = {}
    for name, spec_path in example_specs(repo).items():
        lock = (refreshed_lock(spec_path, name, progress=progress) if refresh_layers
                else committed_lock(out, name))
        for file, text in render_example(spec_path, name, lock).items():
            files[out / name / file] = text
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make arm", description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", default=str(REPO / "arm"), metavar="DIR", help="default: arm/")
    parser.add_argument("--refresh-layers", action="store_true",
                        help="lock the images from the local podman store (build them first) instead of reading "
                             "the committed layers.json")
    args = parser.parse_args(argv)
    try:
        files = render_all(Path(args.output), refresh_layers=args.refresh_layers,
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    except CcrError as exc:
        print(f"make arm: error: {exc}", file=sys.stderr)
        return 1
    for path, text in files.items():
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    print(f"{args.output}: {len(files)} files current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
