"""The control bucket as the API and `pause` use it.

An `/api/` answer reflects the caller's own write (issue 22 c): `GET /api/rules` right
after `POST /api/pause` used to read the pause watcher's copy, which a loaded machine
had not updated yet. Here the watcher is never started, the slowest it can be, against
a real nats-server. The rule names `pause` checks against are kept once per set of
rules and forgotten when no replica names them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from prometheus_client import CollectorRegistry

from remediator.engine.control import Pauses
from remediator.engine.engine import Engine
from remediator.http.api import ControlAPI
from remediator.http.auth import Access
from remediator.metrics import Metrics
from remediator.nats.connection import connect
from remediator.nats.control import Control, ControlWatcher, rules_digest
from remediator.nats.controlplane import ControlPlane
from remediator.nats.transport import Transport
from remediator.offline.sandbox import offline_rules, offline_secrets
from remediator.settings import Settings
from tests.support.nats import NatsServer

Client_ = TestClient[web.Request, web.Application]
OPERATOR = {"Authorization": "Bearer op-token"}
RULE = """
rules:
  - name: r-{u}
    on: [{u}.x]
    windows: {{deny: [{{from: "2000-01-01T00:00:00Z", to: "2099-01-01T00:00:00Z"}}]}}
    actions: [{{publish: {{subject: "{u}.y"}}}}]
"""


def no_engine() -> Engine:
    raise AssertionError("the approval worker is not started in this test")


@pytest.fixture
async def client(nats_server: NatsServer, unique: str, tmp_path: Path) -> AsyncIterator[Client_]:
    path = tmp_path / "rules.yaml"
    path.write_text(RULE.format(u=unique))
    secrets = offline_secrets({}, {})
    rules = offline_rules([path], secrets)
    settings = Settings(stream=f"S{unique}", durable=f"D{unique}")
    transport = Transport(await connect(settings, nats_server.url), settings)
    plane = await ControlPlane.open(transport, settings, Metrics(CollectorRegistry()), no_engine)
    tokens = {"tokens": [{"name": "ops", "token": "op-token", "role": "operator"}]}
    access = Access.from_config(tokens, secrets, loopback=True)
    app = web.Application()
    ControlAPI(access, plane, lambda: rules, None, None).mount(app)
    try:
        async with TestClient(TestServer(app)) as test_client:
            yield test_client
    finally:
        await transport.close()


async def paused(client: Client_) -> object:
    async with client.get("/api/rules", headers=OPERATOR) as response:
        (rule,) = (await response.json())["rules"]
        return rule["paused"]


async def test_rules_reflect_the_callers_pause_and_resume(client: Client_, unique: str) -> None:
    body = {"rules": [f"r-{unique}"], "reason": "freeze"}
    async with client.post("/api/pause", json=body, headers=OPERATOR) as response:
        assert response.status == 200
    after_pause = await paused(client)
    async with client.post("/api/resume", json=body, headers=OPERATOR) as response:
        assert response.status == 200
    after_resume = await paused(client)
    assert "freeze" in str(after_pause)
    assert after_resume is None


async def test_rules_say_when_each_may_act_next(client: Client_) -> None:
    async with client.get("/api/rules", headers=OPERATOR) as response:
        (rule,) = (await response.json())["rules"]
    assert rule["windows"] == {"open": False, "next_open": "2099-01-01T00:00:00Z"}
    async with client.get("/api/status", headers=OPERATOR) as response:
        (window,) = (await response.json())["windows"]
    assert window["next_open"] == "2099-01-01T00:00:00Z" and window["open"] is False


async def test_rule_sets_are_shared_and_forgotten_with_the_last_replica_naming_them(
    nc: Client, unique: str
) -> None:
    kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket=f"C{unique}", history=1))
    clock = Clock()
    control = Control(kv, clock=clock)
    for names in (["a", "b"], ["a", "b"], ["c"], ["gone"]):
        await control.publish_rules(names)
    await control.heartbeat("one", {"rules": rules_digest(["a", "b"])})
    await control.heartbeat("two", {"rules": rules_digest(["c"])})
    clock.now -= 2 * 86400  # a replica last seen two days ago
    await control.heartbeat("old", {"rules": rules_digest(["gone"])})
    clock.now += 2 * 86400
    assert await control.fleet_rules() == {"a", "b", "c"}
    await ControlWatcher(control, Pauses()).forget_replicas()
    keys = set(await kv.keys())
    assert keys == {
        "replica.one",
        "replica.two",
        f"rules.{rules_digest(['a', 'b'])}",
        f"rules.{rules_digest(['c'])}",
    }


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_pause_can_be_planned_ahead_through_the_api(client: Client_, unique: str) -> None:
    """`from`, as `pause --from` takes it: the pause begins then, not now."""
    body = {"rules": [f"r-{unique}"], "for": "2h", "from": "2099-12-24T22:00:00+01:00"}
    async with client.post("/api/pause", json=body, headers=OPERATOR) as response:
        assert response.status == 200
        (made,) = (await response.json())["pauses"]
    assert made["since"].startswith("2099-12-24T21:00:00")
    assert made["until"].startswith("2099-12-24T23:00:00")
    assert await paused(client) is None  # not in force before it begins
    body["from"] = "next tuesday"
    async with client.post("/api/pause", json=body, headers=OPERATOR) as response:
        assert response.status == 400
        assert "ISO-8601" in await response.text()
