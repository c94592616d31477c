"""One entry point from a spec to its deployment artifacts, so every command renders the same bytes."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..common.containers import DEFAULT_IMAGE_VERSION, DEFAULT_REGISTRY
from ..room.group import ContainerGroup, render_group
from ..spec import CleanRoomSpec
from .cce import PolicyOptions, policy_hash, render_policy
from .layers import ImageResolver, LockedImages, PodmanImages

#: A layer lock file used when no `--layers` option is given (lets CI build policies without images).
LAYER_LOCK_ENV = "CCR_LAYER_LOCK"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ccr"


def default_images(layers: str | Path | None = None, cache_dir: Path | None = None,
                   progress: Callable[[str], None] | None = None) -> ImageResolver:
    lock = layers or os.environ.get(LAYER_LOCK_ENV)
    if lock:
        return LockedImages.load(lock)
    return PodmanImages(cache_dir or default_cache_dir(), progress=progress)


@dataclass(frozen=True)
class Rendering:
    group: ContainerGroup
    policy: str

    @property
    def host_data(self) -> str:
        return policy_hash(self.policy)


def render(spec: CleanRoomSpec, images: ImageResolver | None = None, *, registry: str = DEFAULT_REGISTRY,
           version: str = DEFAULT_IMAGE_VERSION, options: PolicyOptions = PolicyOptions(),
           identities: tuple[str, ...] = ()) -> Rendering:
    group = render_group(spec, registry=registry, version=version, identities=identities)
    images = images or default_images()
    prefetch = getattr(images, "prefetch", None)
    if prefetch is not None:
        prefetch([c.image for c in group.containers])
    return Rendering(group=group, policy=render_policy(group, images, options))
