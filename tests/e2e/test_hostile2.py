"""Hostile input, round two (issue 24), the NATS-level half: whatever the server delivers
the consume loop lives; no message ends without a trace; every write is checked before it
is sent; the sweep and status leave no consumers behind.

Each test publishes what a hostile publisher would, at the protocol level where nats-py
would refuse it (tests/support/rawnats.py), against a real nats-server and a real daemon
subprocess. bench/redteam.py runs the same cases, longer, from the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from remediator.engine.scopes import ScopeError, pauses_for
from tests.e2e.test_hostile import alertmanager, echo_rule, post, start
from tests.support.collect import Collector, stored_until
from tests.support.daemon import DaemonProcess
from tests.support.http_target import Answer, HttpTarget
from tests.support.nats import NatsServer
from tests.support.poll import until
from tests.support.protofuzz import every_message_traced, hostile_messages, publish_all
from tests.support.rawnats import raw_publish


async def test_a_subject_that_is_not_utf8_is_dead_lettered_and_consuming_goes_on(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    results = await Collector.on(nc, f"remediator.results.echo-{unique}")
    proc = start(workdir, nats_server.url, unique, echo_rule(unique))
    try:
        await raw_publish(nats_server.url, f"{unique}.ev.".encode() + b"\xff\xfe", b"hi")
        await nc.jetstream().publish(f"{unique}.ev.plain", b'{"plain": true}')
        await results.wait_for(1)  # delivered after the bad one: the loop lived
        bad = f"{unique}.ev.\\xff\\xfe"
        found = await stored_until(
            nc, "remediator.deadletter", lambda ds: any(d["subject"] == bad for d in ds)
        )
        (letter,) = [d for d in found if d["subject"] == bad]
        assert letter["reason"] == "invalid_subject" and letter["data"] == "hi"
        assert proc.get("/healthz")[0] == 200 and proc.get("/readyz")[0] == 200
        metrics = proc.get("/metrics")[1]
        assert 'remediator_dead_letters_total{reason="invalid_subject"} 1.0' in metrics
    finally:
        assert proc.stop() == 0


# --- b. what the server gave up on is dead-lettered from its advisory ---------------------


def inflight(proc: DaemonProcess) -> float:
    for line in proc.get("/metrics")[1].splitlines():
        if line.startswith("remediator_inflight_events "):
            return float(line.split()[1])
    return 0.0


def dead_letters(proc: DaemonProcess, reason: str) -> float:
    prefix = f'remediator_dead_letters_total{{reason="{reason}"}} '
    for line in proc.get("/metrics")[1].splitlines():
        if line.startswith(prefix):
            return float(line.split()[1])
    return 0.0


async def test_b_a_message_no_daemon_could_finish_is_dead_lettered_from_the_advisory(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """Each delivery dies with the daemon holding it (killed mid-step), so no daemon ever
    reaches its own last-delivery dead letter; after --max-deliver 2 the server drops the
    message, and only its max-deliveries advisory is left to say so. Two replicas are
    listening then: exactly one dead letter is stored."""
    target = await HttpTarget(Answer(delay=300)).start()  # every step hangs
    rules = f"""
rules:
  - name: hang-{unique}
    on: ["{unique}.ev.>"]
    actions:
      - http: {{url: "{target.url}/hang"}}
        timeout: 300s
"""
    first = start(workdir, nats_server.url, unique, rules, "--max-deliver", "2", "--ack-wait", "2s")
    second = DaemonProcess(first.args, workdir, env=first.env).start()
    listeners: list[DaemonProcess] = []
    try:
        await nc.jetstream().publish(f"{unique}.ev.x", b"{}", headers={"Nats-Msg-Id": "gone-1"})
        await target.wait_for(1)
        holder = first if inflight(first) == 1 else second
        other = second if holder is first else first
        holder.kill()
        await target.wait_for(2)  # redelivered to the one left, which hangs as well
        listeners = [DaemonProcess(first.args, workdir, env=first.env).start() for _ in "ab"]
        other.kill()
        found = await stored_until(
            nc, "remediator.deadletter", lambda ds: any(d["event_id"] == "gone-1" for d in ds)
        )
        (letter,) = [d for d in found if d["event_id"] == "gone-1"]
        assert letter["reason"] == "max_deliveries" and letter["subject"] == f"{unique}.ev.x"
        assert letter["delivery"] == {"stream": f"S{unique}", "sequence": 1, "num_delivered": 2}
        await until(
            lambda: sum(dead_letters(p, "max_deliveries") for p in listeners) == 1, 10, "count"
        )
    finally:
        for proc in [first, second, *listeners]:
            proc.stop()
        await target.stop()


# --- c. state too big for the server: dead-lettered at once, the slots all come back ------


async def test_c_state_too_big_for_the_server_is_dead_lettered_and_nothing_wedges(
    tmp_path: Path, workdir: Path, unique: str
) -> None:
    """The issue's case: max_payload lowered to 64 KiB, an `absent` timer keeping 44 KB
    events whose JSON escapes non-ASCII (x6 for é). Each write was refused after taking
    one of nats-py's publish_async slots for good; at 4,000 the daemon stopped. Now each
    is dead-lettered as unpublishable at once and every later event is processed."""
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 65536\n")
    server = NatsServer(store=tmp_path / "nats", extra_args=["-c", str(config)]).start()
    rules = f"""
rules:
  - name: silent-{unique}
    on: ["{unique}.ev.>"]
    absent: {{within: 1h, group_by: "{{{{ event.n }}}}"}}
    actions:
      - publish: {{subject: "{unique}.out", json: {{ok: true}}}}
"""
    proc = start(workdir, server.url, unique, rules)
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        for n in range(30):  # each under max_payload as published, 3x over it as stored
            await js.publish(f"{unique}.ev.big", big(n))
        letters = await stored_until(
            nc, "remediator.deadletter", lambda ds: len(ds) >= 30, timeout=60
        )
        await js.publish(f"{unique}.ev.small", json.dumps({"n": "small"}).encode())
        await until(lambda: dead_letters(proc, "unpublishable") == 30, 10, "30 counted")
        await until(settled(js, unique), 30, "the small event is done")
        assert proc.get("/readyz")[0] == 200
    finally:
        assert proc.stop() == 0
        await nc.close()
        server.stop()
    assert {d["reason"] for d in letters} == {"unpublishable"}


def big(n: int) -> bytes:
    return json.dumps({"n": n, "t": "é" * 22000}, ensure_ascii=False).encode()  # 44 KB


def settled(js: JetStreamContext, unique: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        info = await js.consumer_info(f"S{unique}", f"D{unique}")
        return info.num_pending == 0 and info.num_ack_pending == 0

    return check


async def test_c_a_daemon_that_cannot_finish_exits_on_sigterm_within_the_drain_timeout(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """Its one event hangs in a step: SIGTERM stops receiving, waits --drain-timeout,
    leaves the event unacked for another replica, and exits 0 (a guard: this held before
    too, and must keep holding with every write under a deadline)."""
    target = await HttpTarget(Answer(delay=300)).start()
    rules = f"""
rules:
  - name: hang-{unique}
    on: ["{unique}.ev.>"]
    actions:
      - http: {{url: "{target.url}/hang"}}
        timeout: 300s
"""
    proc = start(workdir, nats_server.url, unique, rules, "--drain-timeout", "2s")
    try:
        await nc.jetstream().publish(f"{unique}.ev.x", b"{}")
        await target.wait_for(1)
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        proc.stop()
        await target.stop()
    assert "drain timeout: 1 events left unacked" in proc.logs()


# --- d. names that cannot be subjects or keys; pauses that never end -----------------------

OPERATOR = "op-2f0d3e-token"
API_CONFIG = f"""
api:
  tokens:
    - {{name: ops, token: {OPERATOR}, role: operator}}
"""


async def call(proc: DaemonProcess, path: str, body: object) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"}
    url = f"http://127.0.0.1:{proc.http_port}{path}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_d_names_that_cannot_be_subjects_are_refused_and_the_daemon_lives(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """A 4,100-character alertname closed the connection for good (exit 1, and
    Alertmanager's retries made it a crash loop); so did a 4,100-character rule name
    given to POST /api/pause."""
    results = await Collector.on(nc, f"remediator.results.echo-{unique}")
    (workdir / "config.yaml").write_text(API_CONFIG)
    subject = ["--webhook-subject", f"{unique}.ev.{{{{ alert.labels.alertname }}}}"]
    config = ["--config", "config.yaml"]
    proc = start(workdir, nats_server.url, unique, echo_rule(unique), *config, *subject)
    lone_surrogate = alertmanager("X").replace(b'"X"', b'"\\udcff"')
    try:
        bodies = [alertmanager(n) for n in ["A" * 4100, "a b", "a.*", "a..b", "a\x00"]]
        for body in [*bodies, lone_surrogate]:
            assert 400 <= await post(proc, body) < 500, body[:60]
        for body in [
            {"rules": ["r" * 4100], "for": "1h"},
            {"rules": ["bad name"], "for": "1h"},
            {"rules": [f"echo-{unique}"], "key": "k" * 5000, "for": "1h"},
        ]:
            assert (await call(proc, "/api/pause", body))[0] == 400
            assert (await call(proc, "/api/resume", body))[0] == 400
        for duration in [b"NaN", b"Infinity", b"1e400", b'"' + b"9" * 400 + b'"', b'"400d"']:
            raw = b'{"rules": ["echo-%s"], "for": %s}' % (unique.encode(), duration)
            assert (await call(proc, "/api/pause", raw))[0] == 400, duration
        assert await post(proc, alertmanager("Fine")) == 200
        await results.wait_for(1)
        assert proc.get("/healthz")[0] == 200 and proc.get("/readyz")[0] == 200
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), 400 * 86400.0, 0.0])
def test_d_a_pause_is_finite_and_bounded(seconds: float) -> None:
    with pytest.raises(ScopeError):
        pauses_for(["r"], False, None, seconds=seconds, reason="", by="me", now=0.0)


def test_d_the_command_line_refuses_a_duration_that_is_not_finite() -> None:
    from remediator.durations import parse_duration

    for given in ["9" * 400, float("nan"), float("inf")]:
        with pytest.raises(ValueError, match="finite"):
            parse_duration(given)


# --- g. sweeps and status leave no consumers behind ---------------------------------------

KV_STREAMS = ("KV_REMEDIATOR_STATE", "KV_REMEDIATOR_VERIFY", "KV_REMEDIATOR_CONTROL")
SWEEP_SECONDS = float(os.environ.get("SWEEP_SECONDS", "30"))


async def kv_consumers(nc: Client) -> int:
    js, count = nc.jetstream(), 0
    for stream in KV_STREAMS:
        with contextlib.suppress(NotFoundError):
            count += (await js.stream_info(stream)).state.consumer_count
    return count


async def test_g_four_replicas_sweeping_and_serving_status_keep_consumers_bounded(
    tmp_path: Path, workdir: Path, unique: str
) -> None:
    """Each keys() read left an ordered consumer on the server for 5 minutes: with four
    replicas sweeping verifications and absence timers every second (and the console
    polling /api/status), the server's consumer limit filled within minutes."""
    server = NatsServer(store=tmp_path / "nats").start()  # its own: counts nobody else's
    rules = f"""
rules:
  - name: quiet-{unique}
    on: ["{unique}.ev.>"]
    absent: {{within: 1h}}
    actions:
      - publish: {{subject: "{unique}.out", json: {{ok: true}}}}
"""
    first = start(workdir, server.url, unique, rules)
    replicas = [first, *(DaemonProcess(first.args, workdir, env=first.env) for _ in "abc")]
    nc = await nats.connect(server.url)
    seen = []
    try:
        for proc in replicas[1:]:
            proc.start()
        deadline = time.monotonic() + SWEEP_SECONDS
        while time.monotonic() < deadline:
            for proc in replicas:
                assert proc.get("/api/status")[0] == 200
            seen.append(await kv_consumers(nc))
            await asyncio.sleep(0.5)
    finally:
        for proc in replicas:
            proc.stop()
        await nc.close()
        server.stop()
    # Four replicas, each with at most a scan or two in flight at a sample.
    assert max(seen) <= 12, seen


# --- k. the red team's quick part: seeded hostile messages at the protocol level ----------

FUZZ_MESSAGES = int(os.environ.get("FUZZ_MESSAGES", "200"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "24"))


async def test_k_seeded_protocol_fuzz_every_message_ends_traced(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """scripts/redteam.py runs this with more messages and seeds."""
    proc = start(workdir, nats_server.url, unique, echo_rule(unique))
    try:
        sent = await publish_all(
            nats_server.url, hostile_messages(unique, FUZZ_SEED, FUZZ_MESSAGES)
        )
        kept, results, letters = await every_message_traced(
            nc, f"S{unique}", f"D{unique}", unique, f"remediator.results.echo-{unique}"
        )
        assert proc.get("/healthz")[0] == 200 and proc.get("/readyz")[0] == 200
    finally:
        assert proc.stop() == 0
    assert 0 < kept <= sent and results + letters == kept, (sent, kept, results, letters)
