"""Safety at fleet scale: daemons as subprocesses sharing one durable consumer and one
state bucket on a real nats-server. Throttles, budget, completion records, verification,
and a nats-server restart."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js.errors import NoKeysError

from tests.support.collect import Collector, stored_until
from tests.support.daemon import DaemonProcess
from tests.support.http_target import Answer, HttpTarget
from tests.support.nats import NatsServer


def rules(workdir: Path, text: str) -> None:
    (workdir / "rules" / "fleet.yaml").write_text(text)


def replica(workdir: Path, url: str, unique: str, *extra: str) -> DaemonProcess:
    args = [
        "--rules",
        "rules",
        "--nats",
        url,
        "--stream",
        f"S{unique}",
        "--durable",
        f"D{unique}",
        *extra,
    ]
    return DaemonProcess(args, workdir)


async def publish(nc: Client, subject: str, payload: dict[str, object]) -> None:
    await nc.jetstream().publish(subject, json.dumps(payload).encode())


def throttled_rule(unique: str, url: str, throttle: str) -> str:
    return f"""
rules:
  - name: fix-{unique}
    on: [{unique}.disk.*]
    throttle: {{key: "{{{{ event.host }}}}", {throttle}}}
    actions:
      - http: {{url: "{url}/{{{{ event.host }}}}"}}
"""


async def test_cooldown_keyed_by_host(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rules(workdir, throttled_rule(unique, http_target.url, "cooldown: 1h"))
    results = await Collector.on(nc, f"remediator.results.fix-{unique}")
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        for i in range(10):
            await publish(nc, f"{unique}.disk.full", {"host": "a", "n": i})
        await publish(nc, f"{unique}.disk.full", {"host": "b"})
        bodies = await results.wait_for(11)
    finally:
        proc.stop()
    statuses = Counter(b["status"] for b in bodies)
    assert statuses == {"succeeded": 2, "throttled": 9}
    assert sorted(r.path for r in http_target.received) == ["/a", "/b"]
    assert all("cooldown" in b["reason"] for b in bodies if b["status"] == "throttled")


async def test_circuit_opens_after_max_runs_with_one_escalation(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    throttle = f"max_runs: 3, window: 1h, escalate: {unique}.escalations"
    rules(workdir, throttled_rule(unique, http_target.url, throttle))
    results = await Collector.on(nc, f"remediator.results.fix-{unique}")
    escalations = await Collector.on(nc, f"{unique}.escalations")
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        for i in range(6):
            await publish(nc, f"{unique}.disk.full", {"host": "a", "n": i})
        bodies = await results.wait_for(6)
        (escalation,) = await escalations.wait_for(1)
        # Every result is in, so any second escalation would already have been published.
        await nc.flush()
    finally:
        proc.stop()
    assert [b["status"] for b in bodies] == ["succeeded"] * 3 + ["throttled"] * 3
    assert all("circuit open" in b["reason"] for b in bodies[3:])
    assert escalation["reason"] == "circuit_open" and escalation["rule"] == f"fix-{unique}"
    assert len(escalations.messages) == 1
    assert len(http_target.received) == 3


async def test_two_replicas_one_run_inside_the_cooldown(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rules(workdir, throttled_rule(unique, http_target.url, "cooldown: 1h"))
    results = await Collector.on(nc, f"remediator.results.fix-{unique}")
    first = replica(workdir, nats_server.url, unique).start()
    second = replica(workdir, nats_server.url, unique).start()
    try:
        for i in range(50):
            # Different subjects spread the events over both replicas and run them at once.
            await publish(nc, f"{unique}.disk.s{i % 10}", {"host": "same", "n": i})
        bodies = await results.wait_for(50)
    finally:
        first.stop()
        second.stop()
    assert Counter(b["status"] for b in bodies) == {"succeeded": 1, "throttled": 49}
    assert len(http_target.received) == 1
    both = ["rule fix-" in p.logs() for p in (first, second)]
    assert all(both), "both replicas processed events"


async def test_global_budget_suppresses_and_escalates_once(
    workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    # The budget is one key for the whole fleet, so this test has a nats-server of its own.
    server = NatsServer(store=workdir / "nats").start()
    own = await nats.connect(server.url)
    rules(workdir, throttled_rule(unique, http_target.url, "cooldown: 1h"))
    results = await Collector.on(own, f"remediator.results.fix-{unique}")
    escalations = await Collector.on(own, "remediator.escalations")
    proc = replica(workdir, server.url, unique, "--max-actions", "5/1h").start()
    try:
        for i in range(20):
            await publish(own, f"{unique}.disk.full", {"host": f"h{i}"})
        bodies = await results.wait_for(20)
        (escalation,) = await escalations.wait_for(1)
        await own.flush()
    finally:
        proc.stop()
        await own.drain()
        server.stop()
    assert Counter(b["status"] for b in bodies) == {"succeeded": 5, "suppressed": 15}
    assert escalation["reason"] == "budget_spent"  # SPEC §8's word, as the metric
    assert len(escalations.messages) == 1
    assert len(http_target.received) == 5


async def test_verify_resolved_and_not_resolved_with_two_replicas(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rules(
        workdir,
        f"""
rules:
  - name: heal-{unique}
    on: [{unique}.alerts.*]
    match: {{status: firing}}
    verify:
      resolved_within: 2s
      key: "{{{{ event.fingerprint }}}}"
      escalate: {unique}.escalations
    actions:
      - http: {{url: "{http_target.url}/{{{{ event.fingerprint }}}}"}}
""",
    )
    verified = await Collector.on(nc, f"remediator.verified.heal-{unique}")
    escalations = await Collector.on(nc, f"{unique}.escalations")
    results = await Collector.on(nc, f"remediator.results.heal-{unique}")
    first = replica(workdir, nats_server.url, unique).start()
    second = replica(workdir, nats_server.url, unique).start()
    try:
        await publish(nc, f"{unique}.alerts.A", {"status": "firing", "fingerprint": "fixed"})
        await publish(nc, f"{unique}.alerts.B", {"status": "firing", "fingerprint": "stuck"})
        await results.wait_for(2)
        await publish(nc, f"{unique}.alerts.A", {"status": "resolved", "fingerprint": "fixed"})
        (ok,) = await verified.wait_for(1)
        (late,) = await escalations.wait_for(1)
        # The escalating replica deleted the record with compare-and-set: none is left for
        # another replica to act on, so the one escalation stays one.
        pending = await _verify_keys(nc, f"heal-{unique}.")
    finally:
        first.stop()
        second.stop()
    assert ok["key"] == "fixed"
    assert late["reason"] == "not_resolved" and late["key"] == "stuck"
    assert pending == []
    assert len(escalations.messages) == 1 and len(verified.messages) == 1
    assert len(results.messages) == 2  # the resolving event fired nothing


async def _verify_keys(nc: Client, prefix: str) -> list[str]:
    kv = await nc.jetstream().key_value("REMEDIATOR_VERIFY")
    try:
        return [k for k in await kv.keys() if k.startswith(prefix)]
    except NoKeysError:
        return []


async def test_three_replicas_and_a_kill_lose_nothing_and_rerun_little(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    target = await HttpTarget(Answer(delay=0.05)).start()
    rules(
        workdir,
        f"""
rules:
  - name: load-{unique}
    on: [{unique}.load.*]
    actions:
      - http: {{url: "{target.url}/{{{{ event.n }}}}"}}
""",
    )
    flags = ("--concurrency", "16", "--ack-wait", "2s")
    replicas = [replica(workdir, nats_server.url, unique, *flags).start() for _ in range(3)]
    try:
        for n in range(1000):
            await publish(nc, f"{unique}.load.s{n % 50}", {"n": n})
        await target.wait_for(300, timeout=60)
        info = await nc.jetstream().consumer_info(f"S{unique}", f"D{unique}")
        replicas[0].kill()
        in_flight_at_kill = info.num_ack_pending
        results = await stored_until(
            nc,
            f"remediator.results.load-{unique}",
            lambda bodies: len({b["event_id"] for b in bodies}) >= 1000,
            timeout=120,
        )
    finally:
        for proc in replicas:
            if proc.process is not None and proc.process.poll() is None:
                proc.stop()
        await target.stop()
    calls = Counter(r.headers["Idempotency-Key"] for r in target.received)
    duplicates = sum(count - 1 for count in calls.values())
    print(
        f"\nduplicate target calls: {duplicates}; events in flight at the kill: {in_flight_at_kill}"
    )
    assert len(calls) == 1000
    assert all(b["status"] == "succeeded" for b in results)
    assert duplicates <= in_flight_at_kill


async def test_nats_restart_loses_nothing_and_keeps_cooldowns(
    workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    server = NatsServer(store=workdir / "nats").start()
    own = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    rules(workdir, throttled_rule(unique, http_target.url, "cooldown: 1h"))
    subject = f"remediator.results.fix-{unique}"
    proc = replica(workdir, server.url, unique, "--ack-wait", "3s").start()
    try:
        await publish(own, f"{unique}.disk.a", {"host": "a"})
        await stored_until(own, subject, lambda b: len(b) == 1)
        http_target.default = Answer(delay=1.0)
        for i in range(5):
            await publish(own, f"{unique}.disk.h{i}", {"host": f"h{i}"})
        await http_target.wait_for(2)
        server.stop()  # mid-run: five steps in flight
        server.start()  # same store, same port
        proc.wait_ready(timeout=60)
        done = await stored_until(own, subject, lambda b: len({x["event_id"] for x in b}) == 6)
        http_target.default = Answer()
        await publish(own, f"{unique}.disk.a", {"host": "a"})
        after = await stored_until(own, subject, lambda b: len({x["event_id"] for x in b}) == 7)
    finally:
        proc.stop()
        await own.drain()
        server.stop()
    hosts = {r.path for r in http_target.received}
    assert hosts == {"/a", "/h0", "/h1", "/h2", "/h3", "/h4"}
    assert all(x["status"] == "succeeded" for x in done)
    last = [x for x in after if x["event_id"] == f"S{unique}:7"]
    assert last and last[-1]["status"] == "throttled"
