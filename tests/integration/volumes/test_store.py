"""Objects written in staged blocks and read back by segment ranges, around every boundary."""

from __future__ import annotations

import os

import pytest

from sidecars.common import objectformat as fmt
from sidecars.common.azure_clients import container_client
from sidecars.spec import EncryptionMode
from sidecars.volumes.store import BLOCK_SEGMENTS, Volume

SMALL = 4096
BLOCK_PLAINTEXT = BLOCK_SEGMENTS * (SMALL - fmt.TAG_SIZE) - fmt.HEADER_SIZE  # plaintext filling block 0 exactly


@pytest.fixture
def container(azurite, container_name):
    client = container_client(azurite.blob_url, container_name, ca_bundle=azurite.ca_file)
    client.create_container()
    return client


@pytest.mark.parametrize("mode", [EncryptionMode.CSE, EncryptionMode.SSE])
@pytest.mark.parametrize("size", [0, 1, BLOCK_PLAINTEXT - 1, BLOCK_PLAINTEXT, BLOCK_PLAINTEXT + 1,
                                  3 * BLOCK_PLAINTEXT + 12345])
def test_block_staged_round_trip(container, mode, size) -> None:
    key = fmt.DataKey.generate(segment_size=SMALL) if mode is EncryptionMode.CSE else None
    volume = Volume(container, mode, key)
    data = os.urandom(size)
    writer = volume.writer("obj")
    for pos in range(0, size, 7001):  # writes that straddle segments and blocks
        writer.write(data[pos:pos + 7001])
    stored = writer.commit()
    blocks = container.get_blob_client("obj").get_block_list("committed")[0]
    assert sum(b.size for b in blocks) == stored
    assert all(b.size == BLOCK_SEGMENTS * volume.segment_size for b in blocks[:-1])
    (info,) = list(volume.list_objects())
    assert info.plaintext_size == size
    reader = volume.reader("obj", info.stored_size)
    assert b"".join(reader.read_all(chunk_segments=5)) == data
    if mode is EncryptionMode.CSE:
        assert fmt.decrypt(key, volume.location("obj"), container.download_blob("obj").readall()) == data


def test_abort_commits_nothing(container) -> None:
    volume = Volume(container, EncryptionMode.CSE, fmt.DataKey.generate(segment_size=SMALL))
    writer = volume.writer("obj")
    writer.write(os.urandom(3 * BLOCK_PLAINTEXT))
    writer.abort()
    assert list(volume.list_objects()) == []
