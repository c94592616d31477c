"""CPK against Azure Blob's published rules on what the client sends, since Azurite does not enforce the
customer key (it serves a CPK blob without it): every request that writes or reads a blob's data or
properties carries x-ms-encryption-algorithm AES256, the key base64-encoded and the base64 SHA-256 of the
key, over HTTPS; no URL carries the key. Only the real service proves the key is enforced (docs/storage.md).
"""

from __future__ import annotations

import base64
import hashlib
import os

from azure.storage.blob import ContainerClient

from sidecars.common import objectformat as fmt
from sidecars.spec import EncryptionMode
from sidecars.volumes.store import BLOCK_SEGMENTS, Volume

SMALL = 4096


class Recorder:
    """Every request the SDK sends (its raw request hook, which the container's blob clients share): method,
    URL, headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, request) -> None:
        http = request.http_request
        self.requests.append((http.method, http.url, {k.lower(): v for k, v in http.headers.items()}))


def recorded_container(azurite, name: str) -> tuple[ContainerClient, Recorder]:
    recorder = Recorder()
    container = ContainerClient(azurite.blob_url, name, connection_verify=azurite.ca_file,
                                credential={"account_name": azurite.account_name, "account_key": azurite.account_key},
                                raw_request_hook=recorder)
    container.create_container()
    return container, recorder


def test_cpk_sends_the_key_its_sha256_and_the_algorithm_on_every_data_request_and_never_in_a_url(
        azurite, container_name):
    container, recorder = recorded_container(azurite, container_name)
    dek = fmt.DataKey.generate(segment_size=SMALL)
    volume = Volume(container, EncryptionMode.CPK, dek)
    big = os.urandom(2 * BLOCK_SEGMENTS * SMALL + 999)  # three staged blocks and the block list
    writer = volume.writer("big.bin")
    writer.write(big)
    stored = writer.commit()
    volume.put_small("manifest.json", b"{}")  # one Put Blob
    assert volume.get_small("manifest.json", 100) == b"{}"  # Get Blob Properties, Get Blob
    assert b"".join(volume.reader("big.bin", stored).read_all()) == big  # ranged Get Blob
    assert volume.get_range("big.bin", 10, 20) == big[10:20]

    material = dek.export_material()
    key_b64 = base64.b64encode(material).decode()
    sha_b64 = base64.b64encode(hashlib.sha256(material).digest()).decode()
    data_requests = [(m, u, h) for m, u, h in recorder.requests
                     if "restype=container" not in u and m != "DELETE"]
    kinds = {(m, "comp=block&" in u or u.endswith("comp=block"), "comp=blocklist" in u) for m, u, _ in data_requests}
    assert ("PUT", True, False) in kinds and ("PUT", False, True) in kinds, kinds  # Put Block, Put Block List
    assert {m for m, _, _ in data_requests} >= {"GET", "HEAD", "PUT"}
    for method, url, headers in data_requests:
        assert url.startswith("https://"), "the key travels only over TLS"
        assert headers.get("x-ms-encryption-algorithm") == "AES256", (method, url)
        assert headers.get("x-ms-encryption-key") == key_b64, (method, url)
        assert headers.get("x-ms-encryption-key-sha256") == sha_b64, (method, url)
    for _, url, _ in recorder.requests:
        assert key_b64 not in url and material.hex() not in url
        assert base64.urlsafe_b64encode(material).decode().rstrip("=") not in url


def test_other_modes_send_no_customer_key(azurite, container_name):
    container, recorder = recorded_container(azurite, container_name)
    for mode, key in ((EncryptionMode.CSE, fmt.DataKey.generate(segment_size=SMALL)), (EncryptionMode.SSE, None)):
        volume = Volume(container, mode, key)
        writer = volume.writer(f"{mode.value}.bin")
        writer.write(b"abc" * 5000)
        stored = writer.commit()
        assert b"".join(volume.reader(f"{mode.value}.bin", stored).read_all()) == b"abc" * 5000
    data_requests = [h for _, u, h in recorder.requests if "restype=container" not in u]
    assert len(data_requests) >= 4, "the recorder sees the blob requests"
    assert not any(k.startswith("x-ms-encryption") for h in data_requests for k in h)
