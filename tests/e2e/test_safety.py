"""Safety at fleet scale (SPEC §17) on a real nats-server with real daemons: concurrency
per group across two replicas, a killed holder's slot, and an escalation ladder."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from nats.aio.client import Client

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import serve
from tests.support.nats import NatsServer
from tests.support.poll import until

STEP = 3.0  # seconds the target takes to answer a restart: runs overlap for that long


@dataclass
class Span:
    path: str
    start: float
    end: float = 0.0


@dataclass
class TimedTarget:
    """A real HTTP server that records when each request started and ended; a path with
    `/slow/` hangs for a minute (a replica killed mid-step)."""

    spans: list[Span] = field(default_factory=list)
    url: str = ""
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        span = Span(request.path, time.monotonic())
        self.spans.append(span)
        await asyncio.sleep(60.0 if "/slow/" in request.path else STEP)  # the step's work
        span.end = time.monotonic()
        return web.json_response({"ok": True})


@pytest.fixture
async def target() -> AsyncIterator[TimedTarget]:
    timed = TimedTarget()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", timed.handle)
    timed.runner, port = await serve(app)
    timed.url = f"http://127.0.0.1:{port}"
    yield timed
    await timed.runner.cleanup()


def replica(workdir: Path, url: str, unique: str) -> DaemonProcess:
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    return DaemonProcess([*args, "--ack-wait", "5m"], workdir)


def restart_rule(unique: str, url: str, most: int) -> str:
    return f"""
rules:
  - name: restart-{unique}
    on: [{unique}.node.*]
    concurrency: {{key: "{{{{ event.cluster }}}}", max: {most}, wait: 2m}}
    actions:
      - http: {{url: "{url}/{{{{ event.cluster }}}}/{{{{ event.node }}}}"}}
        timeout: 90s
"""


async def publish(nc: Client, subject: str, payload: dict[str, object]) -> None:
    await nc.jetstream().publish(subject, json.dumps(payload).encode())


def most_at_once(spans: list[Span]) -> int:
    edges = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans])
    running = most = 0
    for _, change in edges:  # an end sorts before a start at the same instant
        running += change
        most = max(most, running)
    return most


async def test_two_replicas_run_at_most_two_per_cluster_and_other_clusters_never_wait(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, target: TimedTarget
) -> None:
    rule = f"restart-{unique}"
    (workdir / "rules" / "r.yaml").write_text(restart_rule(unique, target.url, 2))
    results = await Collector.on(nc, f"remediator.results.{rule}")
    procs = [replica(workdir, nats_server.url, unique).start() for _ in range(2)]
    try:
        for i in range(6):  # six subjects spread the alerts over both replicas
            await publish(nc, f"{unique}.node.n{i}", {"cluster": "c1", "node": f"n{i}"})
        await publish(nc, f"{unique}.node.m", {"cluster": "c2", "node": "m"})
        bodies = await results.wait_for(7, timeout=90)
    finally:
        for proc in procs:
            proc.stop()
    assert [b["status"] for b in bodies] == ["succeeded"] * 7, bodies
    c1 = [s for s in target.spans if s.path.startswith("/c1/")]
    (c2,) = [s for s in target.spans if s.path.startswith("/c2/")]
    assert len(c1) == 6 and most_at_once(c1) == 2
    # Another cluster never waits: c2 ran while c1's first two held both of its slots.
    assert c2.start < min(s.end for s in c1)
    assert all("rule restart-" in p.logs() for p in procs), "both replicas ran restarts"


async def test_a_killed_holder_frees_its_slot_within_the_lease(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, target: TimedTarget
) -> None:
    rule = f"restart-{unique}"
    (workdir / "rules" / "r.yaml").write_text(restart_rule(unique, target.url, 1))
    results = await Collector.on(nc, f"remediator.results.{rule}")
    first = replica(workdir, nats_server.url, unique).start()
    await publish(nc, f"{unique}.node.a", {"cluster": "c1", "node": "slow/a"})
    await until(lambda: len(target.spans) == 1, 20, "the first restart reached the target")
    first.kill()  # SIGKILL while it holds the only slot of c1: no release, no renewal
    second = replica(workdir, nats_server.url, unique).start()
    try:
        await publish(nc, f"{unique}.node.b", {"cluster": "c1", "node": "b"})
        (body,) = await results.wait_for(1, timeout=90)
    finally:
        second.stop()
    # `wait` is 2m and the lease 15s: the slot came free by the lease, not by the wait.
    assert body["status"] == "succeeded", body
    assert [s.path for s in target.spans] == ["/c1/slow/a", "/c1/b"]


def ladder_rules(unique: str, url: str) -> str:
    return f"""
rules:
  - name: restart-{unique}
    on: [{unique}.node.*]
    verify: {{resolved_within: 1s, key: "{{{{ event.node }}}}", escalate_rule: cordon-{unique}}}
    actions:
      - http: {{url: "{url}/restart/{{{{ event.node }}}}"}}
  - name: cordon-{unique}
    on: [{unique}.never]
    actions:
      - http:
          url: "{url}/cordon/{{{{ event.node }}}}"
          method: POST
          json: {{escalation: "{{{{ event.escalation }}}}"}}
"""


async def test_a_fix_that_did_not_hold_fires_the_next_rule_of_the_ladder(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, target: TimedTarget
) -> None:
    (workdir / "rules" / "r.yaml").write_text(ladder_rules(unique, target.url))
    cordons = await Collector.on(nc, f"remediator.results.cordon-{unique}")
    escalations = await Collector.on(nc, "remediator.escalations")
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        await publish(nc, f"{unique}.node.n1", {"node": "n1", "cluster": "c1"})
        (cordon,) = await cordons.wait_for(1, timeout=60)
        mine = [b for b in await escalations.wait_for(1) if b["rule"] == f"restart-{unique}"]
    finally:
        proc.stop()
    assert cordon["status"] == "succeeded", cordon
    assert [s.path for s in target.spans] == ["/restart/n1", "/cordon/n1"]
    assert mine[0]["reason"] == "not_resolved"  # the escalation is still published
    assert f"restart-{unique}" in proc.logs() and cordon["event_id"] == mine[0]["event_id"]
