"""Operating the daemon: metrics, the Alertmanager webhook, log lines, and reloading rules.

Each test drives `remediator run` as a subprocess against a real nats-server,
through NATS, its HTTP listener and its signals, the way an operator does.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nats
import pytest
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget
from tests.support.nats import NatsServer
from tests.support.poll import until

DATA = Path(__file__).parents[1] / "data" / "alertmanager"
FIRING = (DATA / "alertmanager-0.25-firing.json").read_bytes()
RESOLVED = (DATA / "alertmanager-0.25-resolved.json").read_bytes()
FINGERPRINT, STARTS = "99e23bf2b740734b", "2026-11-29T13:09:27.119Z"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape:
    """One `/metrics` answer, parsed by prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: Samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in self.families.values()
            for s in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))


async def scrape(proc: DaemonProcess) -> Scrape:
    status, text = await asyncio.to_thread(proc.get, "/metrics")
    assert status == 200
    return Scrape(text)


async def metric_reaches(proc: DaemonProcess, name: str, value: float, **labels: str) -> bool:
    return ((await scrape(proc))(name, **labels) or 0) >= value


def daemon(workdir: Path, url: str, unique: str, *extra: str) -> DaemonProcess:
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    return DaemonProcess([*args, *extra], workdir)


# --- metrics, the webhook and trace ids, on one daemon ------------------------------------

OPERATIONS_RULES = """
rules:
  - name: cpu-{u}
    on: [{u}.cpu]
    match: {{labels.severity: critical}}
    actions:
      - name: notify
        http: {{method: POST, url: "{url}/hook"}}
        retry: {{attempts: 3, backoff: 50ms, max_backoff: 100ms}}
  - name: am-{u}
    on: [alerts.HighCPU]
    match: {{status: firing}}
    actions:
      - name: tell
        publish: {{subject: "{u}.told", json: {{host: "{{{{ event.labels.host }}}}"}}}}
    verify: {{resolved_within: 5m, key: "{{{{ event.fingerprint }}}}"}}
"""


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of its own: this test's stream captures `alerts.HighCPU`, which no other may."""
    server = NatsServer(store=tmp_path / "own-nats").start()
    yield server
    server.stop()


@pytest.fixture
async def own_nc(own_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(own_server.url)
    yield client
    await client.drain()


async def post(proc: DaemonProcess, body: bytes) -> int:
    url = f"http://127.0.0.1:{proc.http_port}/webhook/alertmanager"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"Content-Type": "application/json"}) as response,
    ):
        return response.status


async def test_metrics_webhook_and_trace_ids_after_a_known_sequence(
    own_nc: Client, own_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    u = unique
    rules = OPERATIONS_RULES.format(u=u, url=http_target.url)
    (workdir / "rules" / "ops.yaml").write_text(rules)
    cpu = await Collector.on(own_nc, f"remediator.results.cpu-{u}")
    am = await Collector.on(own_nc, f"remediator.results.am-{u}")
    verified = await Collector.on(own_nc, f"remediator.verified.am-{u}")
    dead = await Collector.on(own_nc, "remediator.deadletter")
    http_target.then(503).then(200).then(400)  # first event: one retry; second: a 4xx failure
    proc = daemon(workdir, own_server.url, u).start()
    js = own_nc.jetstream()
    try:
        for n, severity in ((1, "critical"), (2, "critical"), (3, "warning")):
            event = json.dumps({"labels": {"severity": severity}}).encode()
            headers = {"Nats-Msg-Id": f"evt-{u}-{n}", "trace-id": f"trace-{u}-{n}"}
            await js.publish(f"{u}.cpu", event, headers=headers)
        await js.publish(f"{u}.cpu", b"not json {", headers={"trace-id": f"trace-{u}-4"})
        first, second = await cpu.wait_for(2)
        await dead.wait_for(1)
        # Alertmanager: firing, the same post again (a retry), then resolved.
        statuses = [await post(proc, body) for body in (FIRING, FIRING, RESOLVED)]
        await am.wait_for(1)
        await verified.wait_for(1)
        await until(
            lambda: metric_reaches(proc, "remediator_event_duration_seconds_count", 6),
            30,
            "six events acked",
        )
        m = await scrape(proc)
    finally:
        assert proc.stop() == 0

    assert statuses == [200, 200, 200]
    assert (first["status"], second["status"]) == ("succeeded", "failed")
    assert len(am.messages) == 1 and len(cpu.messages) == 2  # the repeated post fired nothing

    cpu_rule, am_rule = f"cpu-{u}", f"am-{u}"
    assert m("remediator_events_received_total", subject_root=u) == 4
    assert m("remediator_events_received_total", subject_root="alerts") == 2
    assert m("remediator_rule_evaluations_total", rule=cpu_rule, result="matched") == 2
    assert m("remediator_rule_evaluations_total", rule=cpu_rule, result="no_match") is None
    assert m("remediator_rule_evaluations_total", rule=am_rule, result="matched") == 1
    assert m("remediator_rule_evaluations_total", rule=am_rule, result="no_match") is None
    assert m("remediator_rule_results_total", rule=cpu_rule, status="succeeded") == 1
    assert m("remediator_rule_results_total", rule=cpu_rule, status="failed") == 1
    assert m("remediator_rule_results_total", rule=am_rule, status="succeeded") == 1
    step = {"rule": cpu_rule, "step": "notify", "kind": "http"}
    assert m("remediator_steps_total", **step, status="succeeded") == 1
    assert m("remediator_steps_total", **step, status="failed") == 1
    assert (
        m("remediator_steps_total", rule=am_rule, step="tell", kind="publish", status="succeeded")
        == 1
    )
    assert m("remediator_step_duration_seconds_count", kind="http") == 2
    assert m("remediator_step_duration_seconds_count", kind="publish") == 1
    assert m("remediator_step_retries_total", rule=cpu_rule, step="notify") == 1
    assert m("remediator_verifications_total", rule=am_rule, result="resolved") == 1
    assert m("remediator_event_duration_seconds_count") == 6
    assert m("remediator_inflight_events") == 0
    assert m("remediator_dead_letters_total", reason="invalid_json") == 1
    assert m("remediator_redeliveries_total") == 0
    backlog = {"stream": f"S{u}", "consumer": f"D{u}"}
    assert (m("remediator_consumer_pending_messages", **backlog) or 0) >= 0
    assert m("remediator_consumer_pending_messages", **backlog) is not None
    assert m("remediator_consumer_ack_pending_messages", **backlog) is not None
    assert m("remediator_rules_loaded") == 2
    # No reload happened: the counter has no sample yet, but its family is exposed.
    assert m.families["remediator_rules_reloads"].type == "counter"
    assert len(http_target.received) == 3

    # Every log line about a processed event carries its trace id.
    records = proc.log_records()
    ids = {f"evt-{u}-{n}": f"trace-{u}-{n}" for n in (1, 2, 3)}
    about_events = [
        r
        for r in records
        if "event_id" in r or "rule" in r or any(i in str(r["message"]) for i in ids)
    ]
    assert about_events and all(r.get("trace_id") for r in about_events)
    for record in about_events:
        if record.get("event_id") in ids:
            assert record["trace_id"] == ids[str(record["event_id"])]
    failure = [r for r in records if "HTTP 400" in str(r["message"])]
    assert failure and failure[0]["trace_id"] == f"trace-{u}-2"
    poison = [r for r in records if "dead letter" in str(r["message"])]
    assert poison and poison[0]["trace_id"] == f"trace-{u}-4"
    # The first post's trace id follows the alert into the engine and its result.
    firing = [r for r in records if r.get("event_id") == f"{FINGERPRINT}:firing:{STARTS}"]
    posted = [r["trace_id"] for r in firing if r["logger"] == "remediator.http.webhook"]
    processed = {r["trace_id"] for r in firing if r["logger"] != "remediator.http.webhook"}
    assert len(posted) == 2  # both posts were answered; JetStream stored the first only
    assert processed == {posted[0]} == {am.bodies()[0]["trace_id"]}


# --- reloading ----------------------------------------------------------------------------


def rule(name: str, subject: str, u: str) -> str:
    return f"""
  - name: {name}
    on: [{subject}]
    actions:
      - publish: {{subject: "{u}.out", json: {{rule: "{{{{ rule }}}}"}}}}
"""


async def send(nc: Client, subject: str, core: bool) -> None:
    if core:
        await nc.publish(subject, b"{}")
        await nc.flush()
    else:
        await nc.jetstream().publish(subject, b"{}")


@pytest.mark.parametrize("mode", ["jetstream", "core"])
async def test_reload_on_sighup_on_file_change_and_not_on_an_invalid_file(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, mode: str
) -> None:
    u, core = unique, mode == "core"
    rules_dir = workdir / "rules"
    (rules_dir / "a.yaml").write_text("rules:" + rule(f"one-{u}", f"{u}.one", u))
    two = await Collector.on(nc, f"remediator.results.two-{u}")
    three = await Collector.on(nc, f"remediator.results.three-{u}")
    proc = daemon(workdir, nats_server.url, u, *(["--core"] if core else [])).start()
    reloads = "remediator_rules_reloads_total"
    try:
        # A rule added, then SIGHUP: its new subject is captured and it fires.
        (rules_dir / "b.yaml").write_text("rules:" + rule(f"two-{u}", f"{u}.two", u))
        proc.signal(signal.SIGHUP)
        await until(lambda: metric_reaches(proc, reloads, 1, result="ok"), 10, "SIGHUP reload")
        await send(nc, f"{u}.two", core)
        await two.wait_for(1)
        done = (await scrape(proc))(reloads, result="ok") or 0

        # An edit and no signal: in force within 5 s.
        edited = rule(f"two-{u}", f"{u}.two", u) + rule(f"three-{u}", f"{u}.three", u)
        (rules_dir / "b.yaml").write_text("rules:" + edited)
        await until(lambda: metric_reaches(proc, reloads, done + 1, result="ok"), 5, "reload")
        await send(nc, f"{u}.three", core)
        await three.wait_for(1)

        # An invalid edit: counted, logged with file:line, and the old rules stay.
        invalid = f"""\
rules:
  - name: two-{u}
    on: [{u}.two]
    priority: high
    actions:
      - publish: {{subject: "{u}.out", json: {{}}}}
"""
        (rules_dir / "b.yaml").write_text(invalid)
        await until(lambda: metric_reaches(proc, reloads, 1, result="error"), 5, "failed reload")
        await send(nc, f"{u}.three", core)
        await three.wait_for(2)
        m = await scrape(proc)
    finally:
        assert proc.stop() == 0

    assert m("remediator_rules_loaded") == 3
    assert m(reloads, result="error") == 1
    assert m(reloads, result="ok") == done + 1
    errors = [r for r in proc.log_records() if r["level"] == "error"]
    assert any("b.yaml:4" in str(r["message"]) and "priority" in str(r["message"]) for r in errors)
