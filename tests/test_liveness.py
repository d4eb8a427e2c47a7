"""Liveness (issue 13): a dead consume loop or a closed NATS connection makes the daemon
give up, with `/healthz` failing meanwhile, instead of idling as healthy."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from remediator.daemon import Daemon
from remediator.http.listener import Listener
from remediator.nats.connection import connect
from remediator.nats.transport import Transport
from remediator.settings import Settings
from tests.support.nats import NatsServer
from tests.support.rawnats import raw_publish


async def crash() -> None:
    raise RuntimeError("consume loop killed")


async def daemon_on(server: NatsServer, unique: str) -> Daemon:
    settings = Settings(stream=f"S{unique}", durable=f"D{unique}")
    daemon = Daemon(settings, {})
    daemon.transport = Transport(await connect(settings, server.url), settings)
    return daemon


async def test_a_dead_consume_loop_is_noticed_within_seconds(
    nats_server: NatsServer, unique: str
) -> None:
    daemon = await daemon_on(nats_server, unique)
    assert daemon.transport is not None
    try:
        async with asyncio.timeout(5):
            await daemon._until_stopped_or_dead(asyncio.create_task(crash()))
    finally:
        await daemon.transport.close()
    assert daemon.failure is not None and "consume loop killed" in daemon.failure


async def test_a_closed_connection_is_noticed_within_seconds(
    nats_server: NatsServer, unique: str
) -> None:
    daemon = await daemon_on(nats_server, unique)
    assert daemon.transport is not None
    consume = asyncio.create_task(asyncio.Event().wait())  # a loop still running
    await daemon.transport.nc.close()
    async with asyncio.timeout(5):
        await daemon._until_stopped_or_dead(consume)
    consume.cancel()
    assert daemon.failure == "the NATS connection is closed for good"


async def test_healthz_fails_once_the_daemon_cannot_work() -> None:
    alive = [True]
    listener = Listener(CollectorRegistry(), lambda: True, alive=lambda: alive[0])
    async with TestClient(TestServer(listener.app)) as client:
        assert (await client.get("/healthz")).status == 200
        alive[0] = False
        assert (await client.get("/healthz")).status == 503


async def test_a_dead_read_loop_is_noticed_within_seconds(
    nats_server: NatsServer, unique: str
) -> None:
    """nats-py's own client (not ours, which survives it) dies on a subject that is not
    UTF-8 while staying connected: the watchdog must see it, or the daemon idles deaf."""
    settings = Settings(stream=f"S{unique}", durable=f"D{unique}")
    daemon = Daemon(settings, {})
    plain = Client()
    await plain.connect(nats_server.url)
    daemon.transport = Transport(plain, settings)
    await plain.subscribe(f"{unique}.>")
    await plain.flush()
    consume = asyncio.create_task(asyncio.Event().wait())  # a loop still running
    await raw_publish(nats_server.url, f"{unique}.".encode() + b"\xff", b"x")
    try:
        async with asyncio.timeout(10):
            await daemon._until_stopped_or_dead(consume)
    finally:
        consume.cancel()
        await plain.close()
    assert daemon.failure == "the NATS client's read loop ended"
