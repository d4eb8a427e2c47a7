"""Rules over several events, with daemons as subprocesses on a real nats-server.

Windows and timers live in REMEDIATOR_STATE: three replicas fed one group's
events fire once per window; a replica killed between events loses nothing;
an absence timer that ran out while every daemon was down fires at the next
start.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from tests.e2e.test_fleet import publish, replica, rules
from tests.support.collect import Collector
from tests.support.http_target import HttpTarget
from tests.support.nats import NatsServer
from tests.support.poll import until


def correlate_rule(unique: str, url: str) -> str:
    return f"""
rules:
  - name: pool-{unique}
    on: [{unique}.member.*]
    correlate: {{count: 3, within: 5m, group_by: "{{{{ event.pool }}}}"}}
    actions:
      - http:
          method: POST
          url: "{url}/{{{{ event.pool }}}}"
          json: {{hosts: "{{{{ correlated | map(attribute='host') | list }}}}"}}
"""


def absent_rule(unique: str, url: str) -> str:
    return f"""
rules:
  - name: silent-{unique}
    on: [{unique}.backup.done]
    absent: {{within: 3s, group_by: "{{{{ event.job }}}}"}}
    actions:
      - http:
          method: POST
          url: "{url}/{{{{ event.job }}}}"
          json: {{silent_for: "{{{{ silent_for }}}}", last: "{{{{ event.n }}}}"}}
"""


async def processed(nc: Client, unique: str, count: int) -> None:
    """Wait until the consumer has acked `count` messages (nothing pending, nothing unacked)."""

    async def done() -> bool:
        try:
            info = await nc.jetstream().consumer_info(f"S{unique}", f"D{unique}")
        except Exception:
            return False
        acked = info.ack_floor.stream_seq if info.ack_floor else 0
        return acked >= count and not info.num_pending and not info.num_ack_pending

    await until(done, 30, f"{count} events processed")


async def test_three_replicas_fire_once_per_window(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rules(workdir, correlate_rule(unique, http_target.url))
    results = await Collector.on(nc, f"remediator.results.pool-{unique}")
    fleet = [replica(workdir, nats_server.url, unique).start() for _ in range(3)]
    try:
        for i in range(9):
            # Different subjects spread the events over the replicas and run them at once.
            await publish(nc, f"{unique}.member.m{i}", {"pool": "web", "host": f"h{i}"})
        await processed(nc, unique, 9)
        bodies = await results.wait_for(3)
    finally:
        for proc in fleet:
            proc.stop()
    assert [b["status"] for b in bodies] == ["succeeded"] * 3
    assert len(http_target.received) == 3  # nine events, count 3: three windows, once each
    hosts = [h for r in http_target.received for h in r.json()["hosts"]]  # type: ignore[index]
    assert sorted(hosts) == [f"h{i}" for i in range(9)]


async def test_a_replica_killed_between_events_loses_nothing(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rules(workdir, correlate_rule(unique, http_target.url))
    first = replica(workdir, nats_server.url, unique).start()
    try:
        for i in range(2):
            await publish(nc, f"{unique}.member.m{i}", {"pool": "db", "host": f"h{i}"})
        await processed(nc, unique, 2)
    finally:
        first.kill()
    assert http_target.received == []
    second = replica(workdir, nats_server.url, unique).start()
    try:
        await publish(nc, f"{unique}.member.m2", {"pool": "db", "host": "h2"})
        (request,) = await http_target.wait_for(1)
    finally:
        second.stop()
    assert request.path == "/db"
    assert request.json() == {"hosts": ["h0", "h1", "h2"]}


async def test_an_absence_that_ran_out_while_all_were_down_fires_at_the_next_start(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rules(workdir, absent_rule(unique, http_target.url))
    first = replica(workdir, nats_server.url, unique).start()
    try:
        await publish(nc, f"{unique}.backup.done", {"job": "nightly", "n": 1})
        await processed(nc, unique, 1)
    finally:
        first.kill()  # before its first sweep after the deadline: nobody is left to fire
    kv = await nc.jetstream().key_value("REMEDIATOR_STATE")
    (key,) = [k for k in await kv.keys() if k.startswith(f"absent.silent-{unique}.")]
    entry = await kv.get(key)
    assert entry.value is not None
    deadline = json.loads(entry.value)["deadline"]
    assert http_target.received == []
    await until(lambda: time.time() > deadline, 10, "the silence timer ran out")
    second = replica(workdir, nats_server.url, unique).start()
    try:
        (request,) = await http_target.wait_for(1)
        await until(lambda: _gone(kv, key), 10, "the fired timer is dropped")
    finally:
        second.stop()
    body = request.json()
    assert isinstance(body, dict) and body["last"] == 1 and body["silent_for"] >= 2
    assert request.path == "/nightly"
    assert len(http_target.received) == 1


async def _gone(kv: KeyValue, key: str) -> bool:
    try:
        await kv.get(key)
    except KeyNotFoundError:
        return True
    return False


async def test_an_absence_firing_is_published_once(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    """The engine reports the result, and the sweep loop used to publish it again: core
    subscribers of `remediator.results.>` saw every absence twice (issue 22 c)."""
    rules(workdir, absent_rule(unique, http_target.url).replace("within: 3s", "within: 1s"))
    results = await Collector.on(nc, f"remediator.results.silent-{unique}")
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        await publish(nc, f"{unique}.backup.done", {"job": "first", "n": 1})
        await results.wait_for(1)
        # A later firing, from a later sweep of the same daemon, arrives after any copy of
        # the first one (one connection, in order): no waiting on a clock for "no more".
        await publish(nc, f"{unique}.backup.done", {"job": "second", "n": 2})
        await until(lambda: len(_events(results)) == 2, 30, "the second absence fired")
    finally:
        proc.stop()
    bodies = results.bodies()
    assert [b["status"] for b in bodies] == ["succeeded", "succeeded"]
    assert len(bodies) == len(_events(results)) == 2


def _events(results: Collector) -> set[str]:
    return {str(body["event_id"]) for body in results.bodies()}
