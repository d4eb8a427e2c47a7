"""Hostile but legitimate input (issue 13): the daemon keeps consuming, stores a result or
a dead letter for every message, leaks no secret, bounds its memory, answers 4xx for what
can never work, and exits non-zero when it can no longer work.

One test per numbered finding of the issue, each against a real nats-server, a real
daemon subprocess and real HTTP targets; then liveness, then a seeded fuzz run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError

from tests.support.collect import Collector, stored, stored_until
from tests.support.daemon import DaemonProcess
from tests.support.hostile import CONTROL, Fuzzer, HostileTarget, nested
from tests.support.nats import NatsServer
from tests.support.poll import until

SECRET = "s3cr+t/Tok=en"
JSON = {"Content-Type": "application/json"}
FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "20"))


@pytest.fixture
async def hostile() -> AsyncIterator[HostileTarget]:
    target = await HostileTarget().start()
    yield target
    await target.stop()


def start(workdir: Path, url: str, unique: str, rules: str, *extra: str) -> DaemonProcess:
    (workdir / "rules" / "r.yaml").write_text(rules)
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    webhook = ["--webhook-subject", f"{unique}.ev.webhook"]
    return DaemonProcess([*args, *webhook, *extra], workdir, env={"S": SECRET}).start()


def echo_rule(unique: str) -> str:
    return f"""
rules:
  - name: echo-{unique}
    on: ["{unique}.ev.>"]
    actions:
      - publish: {{subject: "{unique}.out", json: {{ok: true}}}}
"""


async def post(proc: DaemonProcess, body: bytes, headers: dict[str, str] | None = None) -> int:
    url = f"http://127.0.0.1:{proc.http_port}/webhook/alertmanager"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=JSON if headers is None else headers) as response,
    ):
        return response.status


def alertmanager(alertname: str = "A", fingerprint: str = "fp", **annotations: str) -> bytes:
    alert = {
        "status": "firing",
        "labels": {"alertname": alertname},
        "annotations": annotations,
        "startsAt": "2026-12-03T10:00:00Z",
        "fingerprint": fingerprint,
    }
    # Raw UTF-8, as Alertmanager sends it: the published event escapes it (x6 for é).
    return json.dumps({"version": "4", "alerts": [alert]}, ensure_ascii=False).encode()


async def still_works(nc: Client, proc: DaemonProcess, unique: str, results: Collector) -> None:
    """A plain event after the hostile ones still gets its result; the daemon is ready."""
    before = len(results.messages)
    await nc.jetstream().publish(f"{unique}.ev.plain", b'{"plain": true}')
    await results.wait_for(before + 1)
    assert proc.get("/readyz")[0] == 200 and proc.get("/healthz")[0] == 200


def strict(data: bytes) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(data, parse_constant=refuse)


# --- 1. a deeply nested event -------------------------------------------------------------


async def test_1_deeply_nested_event_is_dead_lettered_and_consuming_goes_on(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    results = await Collector.on(nc, f"remediator.results.echo-{unique}")
    dead = await Collector.on(nc, "remediator.deadletter")
    proc = start(workdir, nats_server.url, unique, echo_rule(unique))
    try:
        await nc.jetstream().publish(f"{unique}.ev.deep", nested(10000))
        await still_works(nc, proc, unique, results)
        await until(
            lambda: any(d["subject"] == f"{unique}.ev.deep" for d in dead.bodies()), 10, "dl"
        )
    finally:
        assert proc.stop() == 0
    (letter,) = [d for d in dead.bodies() if d["subject"] == f"{unique}.ev.deep"]
    assert letter["reason"] == "invalid_json" and "nested too deeply" in str(letter["error"])


# --- 2. oversized headers and ids -----------------------------------------------------------


async def test_2_oversized_ids_never_close_the_connection(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    results = await Collector.on(nc, f"remediator.results.echo-{unique}")
    proc = start(workdir, nats_server.url, unique, echo_rule(unique))
    big = "f" * 600_000
    try:
        js = nc.jetstream()
        await js.publish(f"{unique}.ev.trace", json.dumps({"trace_id": big}).encode())
        await js.publish(f"{unique}.ev.id", b"{}", headers={"Nats-Msg-Id": "m" * 60_000})
        assert await post(proc, alertmanager(fingerprint=big)) == 200
        bodies = await results.wait_for(3)
        await still_works(nc, proc, unique, results)
        assert await post(proc, alertmanager(fingerprint="small")) == 200
    finally:
        assert proc.stop() == 0
    for result in bodies:
        assert len(str(result["event_id"])) <= 256 and len(str(result["trace_id"])) <= 256
    for msg in results.messages:
        assert all(len(v) <= 600 for v in (msg.headers or {}).values())


# --- 3. a poison message too big for its dead letter ---------------------------------------


async def test_3_huge_poison_message_is_dead_lettered_truncated_and_counted(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    proc = start(workdir, nats_server.url, unique, echo_rule(unique))
    subject = f"{unique}.ev.poison"
    data = (CONTROL * 10_000)[:300_000].encode()
    try:
        ack = await nc.jetstream().publish(subject, data)
        letters = await stored_until(
            nc,
            "remediator.deadletter",
            lambda bodies: any(b["subject"] == subject for b in bodies),
            timeout=20,
        )
        metrics = proc.get("/metrics")[1]
    finally:
        assert proc.stop() == 0
    (letter,) = [b for b in letters if b["subject"] == subject]
    assert letter["size"] == len(data) and letter["data_truncated"] is True
    assert letter["delivery"]["sequence"] == ack.seq  # type: ignore[index]
    assert len(json.dumps(letter["data"])) <= 64 * 1024
    assert letter["sha256"] == hashlib.sha256(data).hexdigest()
    assert re.search(r'remediator_dead_letters_total\{reason="invalid_json"\} [1-9]', metrics)


# --- 4. a result over max_payload -----------------------------------------------------------


async def test_4_huge_outputs_are_capped_and_steps_run_once(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, hostile: HostileTarget
) -> None:
    steps = "\n".join(
        f"      - name: s{i}\n        http: {{url: '{hostile.url}/control'}}" for i in range(3)
    )
    rules = f"rules:\n  - name: big-{unique}\n    on: ['{unique}.ev.>']\n    actions:\n{steps}\n"
    results = await Collector.on(nc, f"remediator.results.big-{unique}")
    proc = start(workdir, nats_server.url, unique, rules)
    try:
        await nc.jetstream().publish(f"{unique}.ev.big", b"{}")
        (result,) = await results.wait_for(1)
        info = await nc.jetstream().consumer_info(f"S{unique}", f"D{unique}")
    finally:
        assert proc.stop() == 0
    assert result["status"] == "succeeded"
    assert len(hostile.requests) == 3 and info.num_redelivered == 0
    for step in result["steps"]:  # type: ignore[attr-defined]
        assert step["output"]["status"] == 200
        assert step["output"]["body"]["truncated"] is True
    assert len(results.messages[0].data) < 1024 * 1024


# --- 5. a secret in every encoding -----------------------------------------------------------


async def test_5_secret_is_masked_raw_percent_encoded_and_base64(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, hostile: HostileTarget
) -> None:
    rules = f"""
rules:
  - name: leak-{unique}
    on: ["{unique}.ev.>"]
    actions:
      - name: call
        http:
          url: "{hostile.url}/echo/{{{{ secret('S') }}}}"
          params: {{token: "{{{{ secret('S') }}}}"}}
          headers: {{X-Token: "{{{{ secret('S') }}}}"}}
"""
    results = await Collector.on(nc, f"remediator.results.leak-{unique}")
    proc = start(workdir, nats_server.url, unique, rules)
    try:
        await nc.jetstream().publish(f"{unique}.ev.x", b"{}")
        (result,) = await results.wait_for(1)
    finally:
        assert proc.stop() == 0
    sent, _ = hostile.requests[0]
    assert urllib.parse.quote(SECRET, safe="/") in sent  # it really was sent encoded
    forms = {
        SECRET,
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote(SECRET, safe="/"),
        urllib.parse.quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
    }
    published = results.messages[0].data.decode()
    assert result["status"] == "failed" and "***" in published
    for form in forms:
        assert form not in published, form
        assert form not in proc.logs(), form


# --- 6. a huge HTTP answer ---------------------------------------------------------------------


async def test_6_huge_answer_is_read_only_up_to_the_cap(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, hostile: HostileTarget
) -> None:
    rules = f"""
rules:
  - name: huge-{unique}
    on: ["{unique}.ev.>"]
    actions:
      - http: {{url: "{hostile.url}/huge"}}
"""
    results = await Collector.on(nc, f"remediator.results.huge-{unique}")
    proc = start(workdir, nats_server.url, unique, rules)
    try:
        await nc.jetstream().publish(f"{unique}.ev.x", b"{}")
        (result,) = await results.wait_for(1, timeout=60)
        assert proc.process is not None
        status = await asyncio.to_thread(Path(f"/proc/{proc.process.pid}/status").read_text)
    finally:
        assert proc.stop() == 0
    peak_kb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    assert result["status"] == "succeeded"
    assert peak_kb < 200 * 1024, f"peak RSS {peak_kb} kB for a 300 MB answer"
    assert hostile.sent_bytes < 100 * 1024 * 1024  # it stopped reading


# --- 7. webhook bodies no retry can fix ------------------------------------------------------


async def test_7_webhook_answers_4xx_for_what_can_never_work(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    results = await Collector.on(nc, f"remediator.results.echo-{unique}")
    proc = start(workdir, nats_server.url, unique, echo_rule(unique))
    try:
        deep = await post(proc, b'{"version": "4", "alerts": ' + nested(10000) + b"}")
        surrogate = await post(proc, alertmanager().replace(b'"A"', b'"\\ud800"'))
        unpublishable = await post(proc, alertmanager(big="é" * 400_000))
        plain = await post(proc, alertmanager(), {"Content-Type": "text/plain"})
        await still_works(nc, proc, unique, results)
    finally:
        assert proc.stop() == 0
    assert (deep, surrogate, unpublishable, plain) == (400, 400, 413, 415)


# --- 8. strict JSON out -----------------------------------------------------------------------


async def test_8_publish_never_emits_non_standard_json(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    rules = f"""
rules:
  - name: inf-{unique}
    on: ["{unique}.ev.>"]
    actions:
      - publish: {{subject: "{unique}.out", json: {{v: "{{{{ event.v }}}}"}}}}
"""
    results = await Collector.on(nc, f"remediator.results.inf-{unique}")
    proc = start(workdir, nats_server.url, unique, rules)
    try:
        await nc.jetstream().publish(f"{unique}.ev.x", b'{"v": 1e999}')
        await results.wait_for(1)
    finally:
        assert proc.stop() == 0
    result = strict(results.messages[0].data)
    assert isinstance(result, dict) and result["status"] == "failed"
    assert "not standard JSON" in str(result["steps"][0]["error"])


# --- liveness ---------------------------------------------------------------------------------


async def test_daemon_exits_non_zero_when_nats_is_gone_for_good(
    tmp_path: Path, workdir: Path, unique: str
) -> None:
    server = NatsServer(tmp_path / "own-nats").start()
    try:
        proc = start(workdir, server.url, unique, echo_rule(unique), "--reconnect-attempts", "2")
    finally:
        server.stop()
    started = time.monotonic()
    try:
        code = await asyncio.to_thread(proc.wait, 20)
    finally:
        proc.stop()
    assert code == 1, proc.logs()
    assert time.monotonic() - started < 20
    assert "the NATS connection is closed for good" in proc.logs()


async def every_record(nc: Client) -> list[dict[str, object]]:
    """Every result and dead letter stored so far (the results stream is shared)."""
    try:
        return await stored(nc, "remediator.>")
    except (NatsError, TimeoutError):
        return []


# --- fuzz -------------------------------------------------------------------------------------


async def test_fuzz_every_message_ends_as_a_result_or_a_dead_letter(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """~20 s of seeded random and adversarial messages and webhook posts; then the daemon
    is still ready and every message the stream stored has a result or a dead letter."""
    proc = start(workdir, nats_server.url, unique, echo_rule(unique))
    fuzzer = Fuzzer(seed=13)
    statuses: list[int] = []
    js = nc.jetstream()
    try:
        deadline = time.monotonic() + FUZZ_SECONDS
        while time.monotonic() < deadline:
            data, headers = fuzzer.message()
            await js.publish(f"{unique}.ev.fuzz", data, headers=headers)
            if fuzzer.count % 3 == 0:
                body, ctype = fuzzer.webhook()
                statuses.append(await post(proc, body, {"Content-Type": ctype}))
        stored = (await js.stream_info(f"S{unique}")).state.messages
        ours: list[dict[str, object]] = []

        async def all_ended() -> bool:
            ours[:] = [
                b
                for b in await every_record(nc)
                if str(b.get("subject", "")).startswith(f"{unique}.ev")
            ]
            return len(ours) >= stored

        try:
            await until(all_ended, 90, "every message ended", every=1.0)
        except AssertionError:
            info = await js.consumer_info(f"S{unique}", f"D{unique}")
            raise AssertionError(f"{len(ours)} of {stored} ended; consumer {info}") from None
        assert proc.get("/readyz")[0] == 200
    finally:
        assert proc.stop() == 0
    assert len(ours) == stored and stored > 50
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {200, 400, 413, 415}
