"""Order by ordering key, not by subject (SPEC §5, issue 12 a-b): daemons as subprocesses on
a real nats-server, steps against real HTTP targets that answer slowly or hang."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

from nats.aio.client import Client

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import Answer, HttpTarget
from tests.support.nats import NatsServer


def replica(workdir: Path, url: str, unique: str, *extra: str) -> DaemonProcess:
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    return DaemonProcess([*args, *extra], workdir)


async def publish_all(nc: Client, subject: str, events: list[dict[str, object]]) -> None:
    """Pipelined, acknowledged writes, in stream order. Each event's id is
    `<fingerprint>:<status>`, so results say which event they were for."""
    js = nc.jetstream()
    futures = []
    for e in events:
        headers = {"Nats-Msg-Id": f"{e['fingerprint']}:{e['status']}"}
        futures.append(await js.publish_async(subject, json.dumps(e).encode(), headers=headers))
    await asyncio.gather(*futures)


def alert(fp: str, status: str = "firing", **labels: str) -> dict[str, object]:
    return {"status": status, "fingerprint": fp, "labels": labels}


async def test_a_storm_on_one_subject_runs_in_parallel(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """200 alerts for 200 hosts on one subject, a step of 1 s: all started within 5 s."""
    u = unique
    target = await HttpTarget(Answer(delay=1.0)).start()
    (workdir / "rules" / "storm.yaml").write_text(f"""
rules:
  - name: storm-{u}
    on: [{u}.alerts.HighCPU]
    actions:
      - http: {{url: "{target.url}/{{{{ event.labels.host }}}}"}}
""")
    results = await Collector.on(nc, f"remediator.results.storm-{u}")
    proc = replica(workdir, nats_server.url, u).start()
    try:
        await publish_all(
            nc, f"{u}.alerts.HighCPU", [alert(f"fp{i}", host=f"web-{i}") for i in range(200)]
        )
        await target.wait_for(1)
        first = time.monotonic()
        await target.wait_for(200, timeout=60)
        spread = time.monotonic() - first
        bodies = await results.wait_for(200)
    finally:
        assert proc.stop() == 0
        await target.stop()
    assert spread <= 5.0, f"the last step started {spread:.1f}s after the first"
    assert Counter(b["status"] for b in bodies) == {"succeeded": 200}
    assert len({r.path for r in target.received}) == 200


def keyed_rules(u: str, slow: HttpTarget, fast: HttpTarget) -> str:
    """`slow-*` hangs until its 2 s timeout; `quick-*` answers at once, firing or resolved."""
    return f"""
rules:
  - name: slow-{u}
    on: [{u}.alerts.Disk]
    match: {{status: firing, labels.slow: "yes"}}
    actions:
      - http: {{url: "{slow.url}/{{{{ event.fingerprint }}}}"}}
        timeout: 2s
  - name: quick-{u}
    on: [{u}.alerts.Disk]
    match: {{status: {{in: [firing, resolved]}}, labels.slow: "no"}}
    actions:
      - http: {{url: "{fast.url}/{{{{ event.fingerprint }}}}/{{{{ event.status }}}}"}}
"""


async def run_keyed(
    nc: Client,
    nats_server: NatsServer,
    workdir: Path,
    u: str,
    events: list[dict[str, object]],
    *flags: str,
) -> list[str]:
    """Publish `events` on one subject; the event ids (`<fingerprint>:<status>`) of the
    results, in the order the results were stored, and the slow rule's step statuses."""
    slow = await HttpTarget(Answer(delay=20.0)).start()
    fast = await HttpTarget().start()
    (workdir / "rules" / "keyed.yaml").write_text(keyed_rules(u, slow, fast))
    results = await Collector.on(nc, "remediator.results.*")
    proc = replica(workdir, nats_server.url, u, *flags).start()
    try:
        await publish_all(nc, f"{u}.alerts.Disk", events)
        mine = await results_of(results, u, len(events))
    finally:
        assert proc.stop() == 0
        await slow.stop()
        await fast.stop()
    for body in mine:  # the hung step ended at its timeout, the others at once
        expected = "failed" if str(body["rule"]).startswith("slow-") else "succeeded"
        assert body["status"] == expected, body
    return [str(body["event_id"]) for body in mine]


async def results_of(results: Collector, u: str, count: int) -> list[dict[str, object]]:
    async with asyncio.timeout(30):
        while True:
            mine = [b for b in results.bodies() if str(b["rule"]).endswith(u)]
            if len(mine) >= count:
                return mine
            await results.wait_for(len(results.messages) + 1)


async def test_firing_then_resolved_in_order_and_other_keys_do_not_wait(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """A's firing hangs until its timeout: A's resolved waits for it, B does not."""
    events = [
        alert("A", slow="yes"),
        alert("A", "resolved", slow="no"),
        alert("B", slow="no"),
        alert("B", "resolved", slow="no"),
    ]
    order = await run_keyed(nc, nats_server, workdir, unique, events)
    assert order.index("A:firing") < order.index("A:resolved")
    assert order.index("B:firing") < order.index("B:resolved")
    assert order.index("B:resolved") < order.index("A:firing"), "B waited for A's hung step"


async def test_order_key_none_orders_nothing(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    events = [alert("A", slow="yes"), alert("A", "resolved", slow="no")]
    order = await run_keyed(nc, nats_server, workdir, unique, events, "--order-key", "none")
    assert order == ["A:resolved", "A:firing"], "with no ordering, resolved did not wait"


async def test_a_custom_order_key_template(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """Ordered by host: C waits for A (same host), D (another host) does not."""
    events = [
        alert("A", slow="yes", host="h1"),
        alert("C", slow="no", host="h1"),
        alert("D", slow="no", host="h2"),
    ]
    flags = ("--order-key", "{{ event.labels.host }}")
    order = await run_keyed(nc, nats_server, workdir, unique, events, *flags)
    assert order == ["D:firing", "A:firing", "C:firing"]


async def test_throttle_key_runs_one_at_a_time_per_target_across_replicas(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """Distinct fingerprints run in parallel, but the throttle key is the one-at-a-time
    guard for a target, across the fleet."""
    u = unique
    target = await HttpTarget(Answer(delay=0.2)).start()
    (workdir / "rules" / "lease.yaml").write_text(f"""
rules:
  - name: lease-{u}
    on: [{u}.alerts.Disk]
    throttle: {{key: "{{{{ event.labels.host }}}}", max_runs: 100, window: 1h}}
    actions:
      - http: {{url: "{target.url}/{{{{ event.labels.host }}}}"}}
""")
    results = await Collector.on(nc, f"remediator.results.lease-{u}")
    first = replica(workdir, nats_server.url, u).start()
    second = replica(workdir, nats_server.url, u).start()
    try:
        events = [alert(f"fp{i}", host="same") for i in range(12)]
        await publish_all(nc, f"{u}.alerts.Disk", events)
        bodies = await results.wait_for(12, timeout=60)
    finally:
        assert first.stop() == 0
        assert second.stop() == 0
        await target.stop()
    assert Counter(b["status"] for b in bodies) == {"succeeded": 12}
    assert target.max_concurrent == 1
    assert all(f"rule lease-{u}" in p.logs() for p in (first, second)), "both replicas ran"
