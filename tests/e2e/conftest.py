"""Fixtures of the end-to-end tests that need a real three-node cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client

from tests.support.cluster import Cluster, connect


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster per module: its tests share it (each on streams of its own)."""
    started = Cluster(tmp_path_factory.mktemp("cluster")).start()
    yield started
    started.stop()


@pytest.fixture
async def cnc(cluster: Cluster) -> AsyncIterator[Client]:
    client = await connect(cluster)
    yield client
    await client.close()
