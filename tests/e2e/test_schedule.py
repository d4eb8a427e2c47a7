"""Scheduled rules on real daemons (SPEC §15): two replicas fire each tick once, with the
tick's event and `trigger: {by: schedule}`; a tick that passed while every daemon was down
fires at the next start; `status` shows the last and next tick."""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from nats.aio.client import Client

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer
from tests.support.poll import until

EVERY = 2.0


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
"""
    )
    results = await Collector.on(nc, f"remediator.results.{rule}")
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
        # Down across a tick, then one replica back.
        await until(lambda: time.time() > stopped + EVERY, 10, "a tick passed while down")
        before, launched = len(results.messages), time.time()
        replicas.append(replica(workdir, nats_server.url, unique).start())
        await until(lambda: len(results.messages) > before, 30, "a tick after the restart")
        # A daemon that only looked from its first tick on would fire no tick before it.
        missed = [b for b in results.bodies()[before:] if stopped < tick_time(b) < launched]
        assert len(missed) == 1, "the latest tick missed while down fires once at start"
        code, out, err = await cli(nats_server.url, "status", "--json")
        assert code == 0, err
        row = [r for r in json.loads(out)["schedules"] if r["rule"] == rule]
        assert row and row[0]["last_tick"] and row[0]["next_tick"] > row[0]["last_tick"]
    finally:
        for proc in replicas:
            proc.stop()


async def cli(url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remediator",
        *args,
        "--nats",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "REMEDIATOR_NATS_URL"},
    )
    out, err = await process.communicate()
    return int(process.returncode or 0), out.decode(), err.decode()
