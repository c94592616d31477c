"""Local images: no registry is needed or used.

The app images build FROM a Debian base made here: `debootstrap --variant=minbase` with python3 (about
45 s once, then cached as a tar under the cache directory), a uid-1000 user added, imported into podman.
Builds use `--pull=never`, and the spec pins the resulting manifest digest (`pin_image` rewrites the
`image:` line of a spec in place, keeping the rest of the file as written).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import ConfigError, ProcessError
from ..common.logs import get_logger
from ..spec import read_spec_document, rewrite_spec_line
from . import venvstage
from .podman import Podman

log = get_logger(__name__)
REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "images"
BASE_IMAGE = "localhost/ccr-pybase:bookworm"
BASE_PACKAGES = ("python3",)
#: What the sidecars need at run time besides Python: FUSE (volumes), nftables/iptables and iproute2
#: (firewall), CA certificates, podman and runc (the launcher starts the app). netavark is named because
#: podman's containers-common depends on the virtual container-network-stack, which debootstrap cannot
#: resolve by itself.
SIDECAR_PACKAGES = ("python3", "ca-certificates", "fuse3", "libfuse3-3", "nftables", "python3-nftables",
                    "iptables", "iproute2", "podman", "runc", "netavark")
#: Tagged by its package set, so that changing the list builds a new base instead of reusing the old one.
SIDECAR_BASE_IMAGE = ("localhost/ccr-sidecar-base:bookworm-"
                      + hashlib.sha256(" ".join(SIDECAR_PACKAGES).encode()).hexdigest()[:12])
APP_UID = 1000
DIGEST_REF = re.compile(r"^(?P<repo>[^@\s]+)@sha256:[0-9a-f]{64}$")


def stderr_progress(message: str) -> None:
    """Progress goes to stderr so that stdout carries only results (pinned references)."""
    print(message, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """`CCR_CACHE_DIR`, or `.cache/` in the checkout (kept between runs, ignored by git)."""
    return Path(os.environ.get("CCR_CACHE_DIR", REPO / ".cache"))


def _prune_rootfs(root: Path) -> None:
    """Drop what an app never needs: apt lists and caches, docs, man pages, locales (173 MB → ~110 MB)."""
    for sub in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale",
                "usr/share/info"):
        target = root / sub
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir(parents=True)


def _unmount_below(root: Path) -> None:
    """debootstrap can leave /proc mounted inside the new root; unmount it before archiving."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "--lazy", target], check=False)


def _skip_pseudo_fs(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Keep proc/, sys/ and dev/ as empty directories: their content belongs to the running system."""
    parts = Path(info.name).parts
    return None if len(parts) > 2 and parts[1] in ("proc", "sys", "dev") else info


def _add_app_user(root: Path) -> None:
    with open(root / "etc/passwd", "a") as passwd:
        passwd.write(f"app:x:{APP_UID}:{APP_UID}:clean room app:/home/app:/usr/sbin/nologin\n")
    with open(root / "etc/group", "a") as group:
        group.write(f"app:x:{APP_UID}:\n")
    home = root / "home/app"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, APP_UID, APP_UID)


def base_rootfs_tar(progress=stderr_progress, packages: tuple[str, ...] = BASE_PACKAGES,
                    flavour: str = "pybase") -> Path:
    """The cached base rootfs tar with `packages`, built with debootstrap on first use (one tar per
    package set, so adding a package rebuilds it)."""
    name = "-".join(packages) if len(packages) == 1 else hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    tar_path = cache_dir() / "rootfs" / f"{flavour}-bookworm-{name}.tar"
    if tar_path.exists():
        return tar_path
    if shutil.which("debootstrap") is None:
        raise ProcessError("debootstrap is not installed (make setup installs it)")
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    progress(f"building the Debian {flavour} rootfs with debootstrap (once; a minute or two)...")
    with tempfile.TemporaryDirectory(dir=tar_path.parent) as work:
        root = Path(work) / "root"
        result = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                                 "bookworm", str(root)], capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ProcessError("debootstrap failed: " + " | ".join(tail))
        _unmount_below(root)
        _prune_rootfs(root)
        _add_app_user(root)
        partial = tar_path.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(root, arcname=".", filter=_skip_pseudo_fs)
        partial.rename(tar_path)
    progress(f"base rootfs ready in {time.monotonic() - started:.0f} s: {tar_path}")
    return tar_path


#: Beside a Containerfile, `debian-packages.txt` lists the Debian packages (one a line, `#` comments) the app's
#: base needs besides python3: the base is made by debootstrap with them (cached by the package set) and
#: handed to the build as `BASE_IMAGE`, so the build itself installs nothing and downloads nothing.
DEBIAN_PACKAGES = "debian-packages.txt"
_DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def declared_debian_packages(context: Path) -> tuple[str, ...]:
    """The base packages `context` asks for: python3 first, then its `debian-packages.txt` (none: just python3)."""
    listed = context / DEBIAN_PACKAGES
    if not listed.is_file():
        return BASE_PACKAGES
    names = [line.split("#")[0].strip() for line in listed.read_text().splitlines()]
    names = [name for name in names if name]
    bad = [name for name in names if not _DEBIAN_PACKAGE.match(name)]
    if bad:  # the names reach debootstrap's command line: nothing but package names passes
        raise ConfigError(f"{listed}: not a Debian package name: {bad[0]!r}")
    return tuple(dict.fromkeys((*BASE_PACKAGES, *names)))


def app_base_image(packages: tuple[str, ...]) -> str:
    """The base image of an app declaring `packages`, tagged by the set (a changed list builds a new base)."""
    if packages == BASE_PACKAGES:
        return BASE_IMAGE
    return "localhost/ccr-appbase:bookworm-" + hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]


def ensure_app_base_image(packages: tuple[str, ...], podman: Podman | None = None, progress=stderr_progress) -> str:
    podman = podman or Podman()
    ref = app_base_image(packages)
    if ref == BASE_IMAGE:
        return ensure_base_image(podman, progress)
    if not podman.image_exists(ref):
        podman.import_tar(base_rootfs_tar(progress, packages=packages, flavour="appbase"), ref,
                          changes=['CMD ["/bin/sh"]'])
    return ref


def ensure_base_image(podman: Podman | None = None, progress=stderr_progress) -> str:
    podman = podman or Podman()
    if not podman.image_exists(BASE_IMAGE):
        podman.import_tar(base_rootfs_tar(progress), BASE_IMAGE, changes=['CMD ["/bin/sh"]'])
    return BASE_IMAGE


def ensure_sidecar_base_image(podman: Podman | None = None, progress=stderr_progress) -> str:
    podman = podman or Podman()
    if not podman.image_exists(SIDECAR_BASE_IMAGE):
        tar = base_rootfs_tar(progress, packages=SIDECAR_PACKAGES, flavour="sidecar")
        podman.import_tar(tar, SIDECAR_BASE_IMAGE, changes=['CMD ["/bin/sh"]'])
    return SIDECAR_BASE_IMAGE


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag_ref: str
    digest: str

    @property
    def pinned_ref(self) -> str:
        return f"{self.tag_ref.rsplit(':', 1)[0]}@{self.digest}"


#: Beside a Containerfile, `requirements.txt` lists Python packages the app needs (pinned, `==`). They are
#: installed on the host with pip (from PyPI once, then from the cache) and handed to the build as
#: `python-packages/`: the image gets no pip and the build no network.
REQUIREMENTS = "requirements.txt"
VENDORED_DIR = "python-packages"


def vendored_packages(requirements: Path, progress=stderr_progress) -> Path:
    """The installed packages of `requirements` (every one pinned, dependencies listed too), cached by
    the file's content."""
    text = requirements.read_text()
    loose = [line for line in (raw.split("#")[0].strip() for raw in text.splitlines()) if line and "==" not in line]
    if loose:
        raise ConfigError(f"{requirements}: pin every package with == (not pinned: {', '.join(loose)})")
    target = cache_dir() / "app-packages" / hashlib.sha256(text.encode()).hexdigest()[:16]
    if target.is_dir():
        return target
    progress(f"installing the packages of {requirements} (pip, once)...")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        # --no-deps: the list is complete, so the image holds exactly what it names.
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                 "--no-deps", "--no-compile", "--only-binary=:all:", "--target", str(partial),
                                 "-r", str(requirements)], capture_output=True, text=True)
        if result.returncode != 0:
            tail = [line for line in result.stderr.splitlines() if line.strip()][-3:]
            raise ProcessError(f"pip could not install {requirements}: " + " | ".join(tail))
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


#: Beside a Containerfile, `venv-packages.txt` names Python distributions (one a line) staged from the
#: checkout's virtualenv with everything they require (`venvstage`): `deps/`, a venv for /opt/ccr, and, when
#: `ccr` is named, `app/` with ccr's own package and command. For an app that runs ccr's code (the analytics
#: app) or a package pip cannot install as a wheel (pyspark is an sdist); nothing is downloaded.
VENV_PACKAGES = "venv-packages.txt"


def declared_venv_packages(context: Path) -> tuple[str, ...]:
    listed = context / VENV_PACKAGES
    if not listed.is_file():
        return ()
    names = [line.split("#")[0].strip() for line in listed.read_text().splitlines()]
    return tuple(name for name in names if name)


def _stage_context(context: Path, scratch: Path, progress=stderr_progress) -> Path:
    """The build context: the folder as it is, plus what its requirements.txt / venv-packages.txt ask for."""
    extras = (context / REQUIREMENTS).is_file(), declared_venv_packages(context)
    if not any(extras):
        return context
    build_context = scratch / context.name
    shutil.copytree(context, build_context)
    if extras[0]:
        shutil.copytree(vendored_packages(context / REQUIREMENTS, progress), build_context / VENDORED_DIR)
    if extras[1]:
        started = time.monotonic()
        venvstage.stage_deps(build_context / "deps", extras[1])
        if venvstage.PROJECT in extras[1]:
            venvstage.stage_ccr_app(build_context / "app")
        progress(f"staged {', '.join(extras[1])} from the virtualenv in {time.monotonic() - started:.1f} s")
    return build_context


def build_app_image(context: Path, podman: Podman | None = None, progress=stderr_progress) -> BuiltImage:
    """Build `context/Containerfile` as `localhost/<folder name>:latest` on top of its base image (the
    Debian base, with the packages of its debian-packages.txt)."""
    podman = podman or Podman()
    if not (context / "Containerfile").is_file():
        raise ConfigError(f"{context}: no Containerfile in this folder")
    base = ensure_app_base_image(declared_debian_packages(context), podman, progress)
    name = context.name
    tag_ref = f"localhost/{name}:latest"
    started = time.monotonic()
    scratch_root = cache_dir() / "build"
    scratch_root.mkdir(parents=True, exist_ok=True)
    # under the cache, not /tmp: the staged files are hard links into the virtualenv (same filesystem)
    with tempfile.TemporaryDirectory(prefix=f"ccr-build-{name}-", dir=scratch_root) as scratch:
        build_context = _stage_context(context, Path(scratch), progress)
        digest = podman.build(build_context, tag_ref, build_args={"BASE_IMAGE": base})
    progress(f"built {tag_ref} ({digest[:19]}…) in {time.monotonic() - started:.1f} s")
    return BuiltImage(name, tag_ref, digest)


def pin_image(spec_path: Path, pinned_ref: str) -> bool:
    """Point the spec's `application.image` at `pinned_ref`, editing only that line. False if unchanged."""
    text, document = read_spec_document(spec_path)
    try:
        current = document["application"]["image"]
    except (KeyError, TypeError):
        raise ConfigError(f"{spec_path}: no application.image to pin") from None
    if current == pinned_ref:
        return False
    line = re.compile(rf"^(\s*image:\s*)([\"']?){re.escape(current)}\2(\s*(#.*)?)$", re.MULTILINE)
    rewrite_spec_line(spec_path, text, line, lambda m: f"{m.group(1)}{pinned_ref}{m.group(3)}",
                      f"'image: {current}'")
    return True
