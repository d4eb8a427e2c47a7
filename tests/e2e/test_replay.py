"""`remediator replay` against what a real daemon did with the same 1,000 stored events.

A daemon subprocess consumes the events (throttled rules, `publish` actions, so no
external target); its result events give what it actually ran and throttled. Then
`replay` re-evaluates the stream offline, and must count the same, without touching
the daemon's durable consumer or publishing anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from nats.aio.client import Client
from nats.js.api import StreamConfig

from remediator.nats import history
from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer

EVENTS = 1000
HOSTS = 30
TEAMS = 3

RULES = """
rules:
  - name: restart-{u}
    on: ["{u}.alerts.>"]
    match: {{labels.severity: critical}}
    throttle: {{key: "{{{{ event.labels.host }}}}", cooldown: 1h}}
    actions:
      - publish: {{subject: "{u}.actions.restart", json: {{host: "{{{{ event.labels.host }}}}"}}}}
  - name: page-{u}
    on: ["{u}.alerts.disk"]
    throttle: {{key: "{{{{ event.labels.team }}}}", max_runs: 5, window: 1h,
               escalate: "{u}.escalations"}}
    actions:
      - publish: {{subject: "{u}.actions.page", json: {{team: "{{{{ event.labels.team }}}}"}}}}
  - name: never-{u}
    on: ["{u}.alerts.cpu"]
    match: {{value: {{gt: 100000}}}}
    actions:
      - publish: {{subject: "{u}.actions.never", json: {{}}}}
"""

# The rules before the change under review: one restart bucket for the whole fleet,
# no paging, and a rule the change removes.
OLD_RULES = """
rules:
  - name: restart-{u}
    on: ["{u}.alerts.>"]
    match: {{labels.severity: critical}}
    throttle: {{cooldown: 1h}}
    actions:
      - publish: {{subject: "{u}.actions.restart", json: {{}}}}
  - name: legacy-{u}
    on: ["{u}.alerts.cpu"]
    actions:
      - publish: {{subject: "{u}.actions.legacy", json: {{}}}}
"""


def event(i: int) -> tuple[str, dict[str, object]]:
    kind = "disk" if i % 2 else "cpu"
    severity = "warning" if i % 4 == 3 else "critical"
    labels = {"host": f"h{i % HOSTS}", "team": f"t{i % TEAMS}", "severity": severity}
    return kind, {"labels": labels, "value": i}


async def publish_events(nc: Client, unique: str) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=f"S{unique}", subjects=[f"{unique}.alerts.>"]))
    for i in range(EVENTS):
        kind, payload = event(i)
        await js.publish(f"{unique}.alerts.{kind}", json.dumps(payload).encode())


def run_replay(workdir: Path, server: NatsServer, unique: str, *extra: str) -> str:
    command = [sys.executable, "-m", "remediator", "replay", "--rules", "rules"]
    command += ["--nats", server.url, "--stream", f"S{unique}", "--since", "1h", *extra]
    done = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def consumer_state(nc: Client, unique: str) -> tuple[object, ...]:
    js = nc.jetstream()
    info = await js.consumer_info(f"S{unique}", f"D{unique}")
    stream = await js.stream_info(f"S{unique}")
    names = sorted(c.name for c in await js.consumers_info(f"S{unique}"))
    return (
        info.num_pending,
        info.num_ack_pending,
        info.num_redelivered,
        info.delivered.stream_seq,
        info.ack_floor.stream_seq,
        stream.state.messages,
        stream.state.last_seq,
        names,
    )


async def test_replay_counts_what_the_daemon_did(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    (workdir / "rules" / "fleet.yaml").write_text(RULES.format(u=unique))
    (workdir / "old").mkdir()
    (workdir / "old" / "fleet.yaml").write_text(OLD_RULES.format(u=unique))
    names = [f"restart-{unique}", f"page-{unique}"]
    collectors = {name: await Collector.on(nc, f"remediator.results.{name}") for name in names}
    escalations = await Collector.on(nc, f"{unique}.escalations")
    await publish_events(nc, unique)
    args = ["--rules", "rules", "--nats", nats_server.url]
    args += ["--stream", f"S{unique}", "--durable", f"D{unique}"]
    proc = DaemonProcess(args, workdir).start()
    try:
        fired = {names[0]: EVENTS * 3 // 4, names[1]: EVENTS // 2}
        done = {name: await collectors[name].wait_for(fired[name], 90) for name in names}
        await escalations.wait_for(TEAMS)
    finally:
        assert proc.stop() == 0
    daemon = {name: Counter(str(body["status"]) for body in done[name]) for name in names}
    assert daemon[names[0]] == {"succeeded": HOSTS, "throttled": fired[names[0]] - HOSTS}
    before = await consumer_state(nc, unique)

    report = json.loads(await asyncio.to_thread(run_replay, workdir, nats_server, unique, "--json"))
    table = await asyncio.to_thread(run_replay, workdir, nats_server, unique, "--against", "old")

    assert await consumer_state(nc, unique) == before
    assert report["events"] == EVENTS
    for name in names:
        counts = report["rules"][name]
        assert counts["ran"] == daemon[name]["succeeded"]
        assert counts["throttled"] == daemon[name]["throttled"]
        assert counts["suppressed"] == counts["failed"] == 0
    assert report["rules"][f"never-{unique}"] == dict.fromkeys(
        ["ran", "throttled", "suppressed", "failed", "asked", "undecided"], 0
    )
    assert report["escalations"] == {"circuit_open": len(escalations.messages)}
    lines = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:] if line}
    assert lines[f"restart-{unique}"] == [
        "1/749/0/0/0/0",
        f"{HOSTS}/{750 - HOSTS}/0/0/0/0",
        "+29/-29/0/0/0/0",
    ]
    assert lines[f"page-{unique}"] == ["(not", "in", "old)", "15/485/0/0/0/0", "+15/+485/0/0/0/0"]
    assert lines[f"legacy-{unique}"] == ["500/0/0/0/0/0", "(not", "in", "new)", "-500/0/0/0/0/0"]


async def test_history_reads_a_span_and_leaves_no_consumer_behind(nc: Client, unique: str) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=f"H{unique}", subjects=[f"{unique}.h.>"]))
    for i in range(1, 11):
        await js.publish(f"{unique}.h.x", json.dumps({"n": i}).encode(), headers={"k": str(i)})

    async def sequences(span: history.Span) -> list[int]:
        return [stored.sequence async for stored in history.read(nc, f"H{unique}", span)]

    assert await sequences(history.Span(first=3, last=6)) == [3, 4, 5, 6]
    assert await sequences(history.Span(since=time.time() - 3600)) == list(range(1, 11))
    assert await sequences(history.Span(since=time.time() + 3600)) == []
    (first,) = [s async for s in history.read(nc, f"H{unique}", history.Span(first=10))]
    assert (first.subject, first.headers["k"], json.loads(first.data)) == (
        f"{unique}.h.x",
        "10",
        {"n": 10},
    )
    assert abs(first.time - time.time()) < 3600  # the stored time, in epoch seconds
    assert await js.consumers_info(f"H{unique}") == []
