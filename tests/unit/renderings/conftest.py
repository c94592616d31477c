from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sidecars.renderings.layers import ImageInfo, LockedImages
from sidecars.room.group import ContainerGroup, render_group
from sidecars.spec import CleanRoomSpec, load_spec

VARIABLES = {
    "cgs_endpoint": "https://cgs.example.test",
    "maa_endpoint": "https://maa.example.test",
    "storage_url": "https://storage.example.test/devstoreaccount1",
    "keyvault_url": "https://vault.example.test",
}


def fake_layer(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def images_for(group: ContainerGroup) -> LockedImages:
    """Image facts for every image of the group; layer hashes are distinct per image."""
    images = {}
    for c in group.containers:
        if c.image not in images:
            images[c.image] = ImageInfo(
                reference=c.image, digest="sha256:" + fake_layer("digest " + c.image),
                layers=(fake_layer("base " + c.image), fake_layer("top " + c.image)),
                env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
                working_dir="/", user="")
    return LockedImages(images)


@pytest.fixture
def job_spec(repo: Path) -> CleanRoomSpec:
    return load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=VARIABLES)


@pytest.fixture
def api_spec(repo: Path) -> CleanRoomSpec:
    return load_spec(repo / "examples/cleanroomhello-api/spec.yaml", variables=VARIABLES)


@pytest.fixture
def job_group(job_spec: CleanRoomSpec) -> ContainerGroup:
    return render_group(job_spec)


@pytest.fixture
def job_images(job_group: ContainerGroup) -> LockedImages:
    return images_for(job_group)


@pytest.fixture
def lock_file(tmp_path: Path, job_images: LockedImages) -> Path:
    path = tmp_path / "layers.json"
    path.write_text(job_images.dump())
    return path
