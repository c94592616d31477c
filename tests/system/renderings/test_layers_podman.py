"""Layer hashes of images in real podman storage: the storage path (tar-split reassembly) and the export
path (`podman image save`) agree with hashing the saved layer blob directly."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile

import pytest

from sidecars.renderings import layers
from sidecars.renderings.layers import PodmanImages, layer_root_hash

pytestmark = pytest.mark.root


@pytest.fixture
def image(tmp_path):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in (("app/bin/tool", os.urandom(300_000)), ("app/README", b"hello\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(body), 0o755, 1700000000.25
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("app/current")
        link.type, link.linkname = tarfile.SYMTYPE, "/app/bin/tool"
        tar.addfile(link)
        whiteout = tarfile.TarInfo("app/.wh.removed")
        tar.addfile(whiteout)
    path = tmp_path / "layer.tar"
    path.write_bytes(out.getvalue())
    name = f"localhost/ccr-deploy-layers-{os.getpid()}:1"
    subprocess.run(["podman", "import", str(path), name], check=True, capture_output=True)
    yield name
    subprocess.run(["podman", "rmi", "-f", name], capture_output=True)


def _saved_layer(tmp_path, name) -> bytes:
    saved = tmp_path / "oci"
    subprocess.run(["podman", "image", "save", "--format", "oci-dir", "-o", str(saved), name],
                   check=True, capture_output=True)
    manifest_digest = json.loads((saved / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((saved / "blobs/sha256" / manifest_digest.split(":")[1]).read_text())
    raw = (saved / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]).read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def test_storage_path_hashes_the_layer_podman_holds(tmp_path, image):
    info = PodmanImages(tmp_path / "cache").resolve(image)
    assert info.digest.startswith("sha256:")
    assert info.layers == (layer_root_hash(io.BytesIO(_saved_layer(tmp_path, image))),)
    assert PodmanImages(tmp_path / "cache").resolve(image).layers == info.layers, "from the cache"


def test_export_fallback_gives_the_same_hashes(tmp_path, image, monkeypatch):
    from_storage = PodmanImages(tmp_path / "storage-cache").resolve(image)
    monkeypatch.setattr(layers._OverlayStorage, "find", classmethod(lambda cls, images: None))
    assert PodmanImages(tmp_path / "export-cache").resolve(image).layers == from_storage.layers


def test_modified_storage_is_detected(tmp_path, image):
    resolver = PodmanImages(tmp_path / "cache")
    storage = resolver._storage()
    diff_id = json.loads(resolver._podman("image", "inspect", image))[0]["RootFS"]["Layers"][0]
    readme = storage.root / "overlay" / storage.layers[diff_id] / "diff" / "app" / "README"
    original = readme.read_bytes()
    readme.write_bytes(b"jello\n")
    try:
        with pytest.raises(layers.ConfigError, match="does not match its digest"):
            storage.layer_root_hash(diff_id, tmp_path / "work")
    finally:
        readme.write_bytes(original)
