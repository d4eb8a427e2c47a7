"""The daemon end to end: a subprocess against a real nats-server and a real HTTP target."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from nats.aio.client import Client

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget
from tests.support.nats import NatsServer

RULE = """
rules:
  - name: {name}
    on: [{prefix}.high.cpu.alert]
    match:
      labels.severity: critical
      value: {{gt: 90}}
    when: "event.labels.service.startswith('web')"
    actions:
      - name: notify
        http:
          method: POST
          url: "{url}/hooks/{{{{ event.labels.service }}}}"
          headers: {{Authorization: "Bearer {{{{ secret('CHAT_TOKEN') }}}}"}}
          json: {{text: "cpu {{{{ event.value }}}} on {{{{ event.labels.service }}}}",
                 literal: "{{{{ event.note | default('') }}}}"}}
        retry: {{attempts: 3, backoff: 100ms, max_backoff: 200ms}}
        timeout: {timeout}
"""


def write_rule(workdir: Path, unique: str, target: HttpTarget, timeout: str = "30s") -> str:
    name = f"cpu-{unique}"
    text = RULE.format(name=name, prefix=unique, url=target.url, timeout=timeout)
    (workdir / "rules" / "cpu.yaml").write_text(text)
    return name


def daemon(workdir: Path, server: NatsServer, unique: str, *extra: str) -> DaemonProcess:
    args = [
        "--rules",
        "rules",
        "--nats",
        server.url,
        "--stream",
        f"S{unique}",
        "--durable",
        f"D{unique}",
        *extra,
    ]
    return DaemonProcess(args, workdir, env={"CHAT_TOKEN": f"tok-{unique}-s3cret"})


async def publish(nc: Client, subject: str, event: object, **headers: str) -> None:
    js = nc.jetstream()
    await js.publish(subject, json.dumps(event).encode(), headers=headers or None)


def alert(severity: str = "critical", value: str = "97.5", service: str = "web-1") -> dict:
    return {
        "labels": {"severity": severity, "service": service},
        "value": value,
        "note": "{{ 7*7 }}",
    }


async def test_matching_alert_calls_target_and_publishes_result(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    name = write_rule(workdir, unique, http_target)
    results = await Collector.on(nc, f"remediator.results.{name}")
    proc = daemon(workdir, nats_server, unique).start()
    try:
        subject = f"{unique}.high.cpu.alert"
        await publish(nc, subject, alert(severity="warning"), **{"trace-id": "t-no"})
        await publish(nc, subject, alert(service="db-1"), **{"trace-id": "t-no2"})
        await publish(nc, subject, alert(), **{"trace-id": "t-1", "Nats-Msg-Id": "evt-1"})
        (request,) = await http_target.wait_for(1)
        (result,) = await results.wait_for(1)
    finally:
        assert proc.stop() == 0
    assert request.path == "/hooks/web-1"
    assert request.json() == {"text": "cpu 97.5 on web-1", "literal": "{{ 7*7 }}"}
    assert request.headers["Idempotency-Key"] == f"evt-1:{name}:notify"
    assert request.headers["Authorization"] == f"Bearer tok-{unique}-s3cret"
    assert request.headers["trace-id"] == "t-1"
    assert result["status"] == "succeeded"
    assert result["trace_id"] == "t-1"
    assert result["event_id"] == "evt-1"
    assert result["redelivered"] is False
    assert results.messages[0].headers["Nats-Msg-Id"] == f"evt-1:{name}"
    # Non-matching alerts (warning; db service) produced neither a request nor a result.
    assert len(http_target.received) == 1 and len(results.messages) == 1
    # The secret never shows up in the result event or any log line.
    assert f"tok-{unique}-s3cret" not in results.messages[0].data.decode()
    assert f"tok-{unique}-s3cret" not in proc.logs()
    traced = [r for r in proc.log_records() if r.get("event_id") == "evt-1"]
    assert traced and all(r["trace_id"] == "t-1" for r in traced)


async def test_transient_errors_are_retried_and_permanent_ones_are_not(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    name = write_rule(workdir, unique, http_target)
    results = await Collector.on(nc, f"remediator.results.{name}")
    http_target.then(503).then(503).then(200)
    proc = daemon(workdir, nats_server, unique).start()
    try:
        await publish(nc, f"{unique}.high.cpu.alert", alert())
        (first,) = await results.wait_for(1)
        http_target.then(400)
        await publish(nc, f"{unique}.high.cpu.alert", alert(value="99"))
        _, second = await results.wait_for(2)
    finally:
        proc.stop()
    assert first["status"] == "succeeded"
    assert first["steps"][0]["attempts"] == 3
    assert second["status"] == "failed"
    assert second["steps"][0]["attempts"] == 1
    assert "HTTP 400" in second["steps"][0]["error"]
    assert len(http_target.received) == 4


async def test_sigkill_mid_step_redelivers_after_restart(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    name = write_rule(workdir, unique, http_target)
    results = await Collector.on(nc, f"remediator.results.{name}")
    http_target.then(200, delay=60)  # the first call hangs until the daemon dies
    proc = daemon(workdir, nats_server, unique, "--ack-wait", "2s").start()
    await publish(nc, f"{unique}.high.cpu.alert", alert())
    await http_target.wait_for(1)
    proc.kill()
    restarted = daemon(workdir, nats_server, unique, "--ack-wait", "2s").start()
    try:
        (result,) = await results.wait_for(1)
    finally:
        restarted.stop()
    assert result["status"] == "succeeded"
    assert result["redelivered"] is True
    assert len(http_target.received) == 2
    # The alert carries no trace id: the one made for it must survive the crash, or the
    # logs of the two deliveries cannot be correlated (issue 22 c).
    first, second = (r.headers["trace-id"] for r in http_target.received)
    assert first == second == result["trace_id"]


async def test_long_step_is_not_redelivered_past_ack_wait(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    name = write_rule(workdir, unique, http_target)
    results = await Collector.on(nc, f"remediator.results.{name}")
    http_target.then(200, delay=7)
    proc = daemon(workdir, nats_server, unique, "--ack-wait", "2s").start()
    try:
        await publish(nc, f"{unique}.high.cpu.alert", alert())
        (result,) = await results.wait_for(1, timeout=30)
        # A redelivery at ack_wait (2 s) would have reached the target well before the
        # first call's 7 s answer; the server's own count says none happened.
        info = await nc.jetstream().consumer_info(f"S{unique}", f"D{unique}")
    finally:
        proc.stop()
    assert result["status"] == "succeeded"
    assert len(http_target.received) == 1
    assert info.num_redelivered == 0


async def test_poison_messages_go_to_dead_letter_and_processing_continues(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    name = write_rule(workdir, unique, http_target)
    results = await Collector.on(nc, f"remediator.results.{name}")
    dead = await Collector.on(nc, "remediator.deadletter")
    proc = daemon(workdir, nats_server, unique).start()
    subject = f"{unique}.high.cpu.alert"
    try:
        await nc.jetstream().publish(subject, b"not json {")
        await nc.jetstream().publish(subject, b"[1, 2, 3]")
        await publish(nc, subject, alert())
        (result,) = await results.wait_for(1)
        letters = [d for d in await dead.wait_for(2) if d["subject"] == subject]
    finally:
        proc.stop()
    assert result["status"] == "succeeded"
    assert [d["data"] for d in letters] == ["not json {", "[1, 2, 3]"]
    assert {d["reason"] for d in letters} == {"invalid_json", "not_an_object"}
    assert all(d["delivery"]["num_delivered"] == 1 for d in letters)


async def test_sigterm_waits_for_the_step_and_stores_its_result(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    name = write_rule(workdir, unique, http_target)
    http_target.then(200, delay=3)
    proc = daemon(workdir, nats_server, unique).start()
    await publish(nc, f"{unique}.high.cpu.alert", alert())
    await http_target.wait_for(1)
    proc.signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0
    stored = await nc.jetstream().get_last_msg("REMEDIATOR_RESULTS", f"remediator.results.{name}")
    assert json.loads(stored.data)["status"] == "succeeded"
    info = await nc.jetstream().consumer_info(f"S{unique}", f"D{unique}")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_sandbox_refuses_unsafe_templates(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    name = f"unsafe-{unique}"
    (workdir / "rules" / "bad.yaml").write_text(f"""
rules:
  - name: {name}
    on: [{unique}.x]
    actions:
      - http: {{url: "{http_target.url}/{{{{ ''.__class__.__mro__ }}}}"}}
""")
    results = await Collector.on(nc, f"remediator.results.{name}")
    proc = daemon(workdir, nats_server, unique).start()
    try:
        await publish(nc, f"{unique}.x", {"a": 1})
        (result,) = await results.wait_for(1)
    finally:
        proc.stop()
    assert result["status"] == "failed"
    assert "unsafe" in result["steps"][0]["error"]
    assert result["steps"][0]["attempts"] == 0
    assert http_target.received == []


async def test_a_rule_on_remediators_own_subjects_is_a_clear_setting_error(
    workdir: Path, nats_server: NatsServer, unique: str
) -> None:
    """JetStream gives a subject to one stream: a rule on `remediator.results.>` made the
    alerts stream impossible, and the server's refusal was retried for a minute as if a
    leader were being elected. Now: one line saying why, exit 2."""
    (workdir / "rules" / "r.yaml").write_text(
        "rules:\n"
        "  - name: on-failures\n"
        "    on: [remediator.results.>]\n"
        "    match: {status: failed}\n"
        "    actions:\n"
        "      - name: tell\n"
        "        publish: {subject: ops.failed, json: {rule: '{{ event.rule }}'}}\n"
    )
    process = DaemonProcess(
        ["--rules", "rules", "--nats", nats_server.url, "--stream", f"S{unique}"], workdir
    ).start(wait_ready=False)
    try:
        code = await asyncio.to_thread(process.wait, 30)
    finally:
        process.stop()
    assert code == 2
    assert "rules listen on remediator.results.>" in process.logs()
    assert "a leader election" not in process.logs()
