"""Scheduled rules on real daemons (SPEC §15): two replicas fire each tick once, with the
tick's event and `trigger: {by: schedule}`; a tick that passed while every daemon was down
fires at the next start; `status` shows the last and next tick."""

from __future__ import annotations

import calendar
import json
import math
import time
from collections import Counter
from pathlib import Path

from nats.aio.client import Client

from tests.support.cli import cli
from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer
from tests.support.poll import until

EVERY = 2.0
SLOW = 10.0  # the catch-up rule: longer than a daemon takes to start, even under load


def replica(workdir: Path, url: str, unique: str) -> DaemonProcess:
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    return DaemonProcess(args, workdir)


def tick_time(body: dict[str, object]) -> float:
    trigger = body["trigger"]
    assert isinstance(trigger, dict)
    return calendar.timegm(time.strptime(str(trigger["at"]), "%Y-%m-%dT%H:%M:%SZ"))


async def test_two_replicas_fire_each_tick_once_and_catch_up_after_a_restart(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    rule = f"reconcile-{unique}"
    (workdir / "rules" / "s.yaml").write_text(
        f"""
rules:
  - name: {rule}
    schedule: {{every: {EVERY:g}s}}
    actions:
      - publish: {{subject: {unique}.ran, json: {{tick: "{{{{ event.schedule.tick }}}}"}}}}
  - name: slow-{unique}
    schedule: {{every: {SLOW:g}s}}
    actions:
      - publish: {{subject: {unique}.slow, json: {{}}}}
"""
    )
    results = await Collector.on(nc, f"remediator.results.{rule}")
    slow = await Collector.on(nc, f"remediator.results.slow-{unique}")
    ran = await Collector.on(nc, f"{unique}.ran")
    replicas = [replica(workdir, nats_server.url, unique).start() for _ in range(2)]
    try:
        await until(lambda: len(results.messages) >= 3, 30, "three ticks fired")
        for proc in replicas:
            proc.stop()
        stopped = time.time()
        counts = Counter(str(b["event_id"]) for b in results.bodies())
        assert all(n == 1 for n in counts.values()), counts
        body = results.bodies()[0]
        assert body["status"] == "succeeded" and body["subject"] == f"remediator.schedule.{rule}"
        assert str(body["event_id"]).startswith(f"schedule:{rule}:")
        assert body["trigger"] == {"by": "schedule", "at": str(body["event_id"]).split(":", 2)[2]}
        assert len(ran.messages) == len(results.messages)
        # Down across a tick of the slow rule, then one replica back: that tick fires at
        # once (a daemon that only looked from its first tick on would fire the next).
        missed = math.ceil(stopped / SLOW) * SLOW
        await until(lambda: time.time() > missed, SLOW + 5, "a tick passed while down")
        before = len(slow.messages)
        replicas.append(replica(workdir, nats_server.url, unique).start())
        await until(lambda: len(slow.messages) > before, 30, "a tick after the restart")
        assert tick_time(slow.bodies()[before]) == missed, "the missed tick fires at start"
        assert len(slow.messages) == before + 1
        code, out, err = await cli(nats_server.url, "status", "--json")
        assert code == 0, err
        row = [r for r in json.loads(out)["schedules"] if r["rule"] == rule]
        assert row and row[0]["last_tick"] and row[0]["next_tick"] > row[0]["last_tick"]
        # Run by hand: a tick's event at the time asked, and the result says who.
        code, out, err = await cli(nats_server.url, "trigger", rule, "--by", "carol")
        assert code == 0, err
        manual = json.loads(out)
        assert manual["status"] == "succeeded" and manual["trigger"]["by"] == "carol"
        ticks = [m for m in ran.bodies() if m["tick"].startswith("20")]
        assert len(ticks) == len(ran.messages)  # every run rendered a tick
    finally:
        for proc in replicas:
            proc.stop()
