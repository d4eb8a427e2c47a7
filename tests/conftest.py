"""Shared fixtures: a real nats-server for the session, a client, a unique prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from tests.support.http_target import HttpTarget
from tests.support.nats import NatsServer


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.drain()


@pytest.fixture
def unique() -> str:
    """A token for this test's subjects, streams and durables, so tests never collide."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def http_target() -> AsyncIterator[HttpTarget]:
    target = await HttpTarget().start()
    yield target
    await target.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    return tmp_path
