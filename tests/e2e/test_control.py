"""The brake and the hand on it: pauses and approvals across daemon replicas, on a real
nats-server of this module's own (a pause of every rule must not reach other tests)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import cli
from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget
from tests.support.nats import NatsServer
from tests.support.poll import until

HONOURED_WITHIN = 2.0  # seconds: every replica follows a pause or resume within this


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path_factory.mktemp("nats-control")).start()
    yield server
    server.stop()


def replica(workdir: Path, url: str, unique: str, *extra: str) -> DaemonProcess:
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    return DaemonProcess([*args, *extra], workdir)


def metric(proc: DaemonProcess, name: str, **labels: str) -> float | None:
    status, text = proc.get("/metrics")
    assert status == 200
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def publish(nc: Client, subject: str, payload: dict[str, object]) -> None:
    await nc.jetstream().publish(subject, json.dumps(payload).encode())


def write_rules(workdir: Path, text: str) -> None:
    (workdir / "rules" / "control.yaml").write_text(text)


def cooldown_rule(unique: str, url: str) -> str:
    return f"""
rules:
  - name: fix-{unique}
    on: [{unique}.disk.*]
    throttle: {{key: "{{{{ event.host }}}}", cooldown: 1h}}
    actions:
      - http: {{url: "{url}/{{{{ event.host }}}}"}}
"""


async def paused_everywhere(procs: list[DaemonProcess], scope: str, value: float) -> None:
    await until(
        lambda: all(metric(p, "remediator_paused", scope=scope) == value for p in procs),
        HONOURED_WITHIN,
        f"remediator_paused{{scope={scope}}} == {value} on every replica",
    )


async def test_pause_one_key_on_two_replicas_spends_no_throttle(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rule = f"fix-{unique}"
    write_rules(workdir, cooldown_rule(unique, http_target.url))
    results = await Collector.on(nc, f"remediator.results.{rule}")
    procs = [replica(workdir, nats_server.url, unique).start() for _ in range(2)]
    try:
        code, _out, err = await cli(
            nats_server.url, "pause", rule, "--key", "a", "--reason", "disk swap", "--by", "alice"
        )
        assert code == 0, err
        await paused_everywhere(procs, rule, 1)
        for i in range(10):  # ten subjects spread the events over both replicas
            await publish(nc, f"{unique}.disk.s{i}", {"host": "a"})
        await publish(nc, f"{unique}.disk.b", {"host": "b"})
        bodies = await results.wait_for(11)
        code, _, err = await cli(nats_server.url, "resume", rule, "--key", "a")
        assert code == 0, err
        await paused_everywhere(procs, rule, 0)
        await publish(nc, f"{unique}.disk.again", {"host": "a"})
        (after,) = (await results.wait_for(12))[11:]
    finally:
        for proc in procs:
            proc.stop()
    statuses = Counter(b["status"] for b in bodies)
    assert statuses == {"paused": 10, "succeeded": 1}
    paused = [b for b in bodies if b["status"] == "paused"]
    assert all("alice" in str(b["reason"]) and "disk swap" in str(b["reason"]) for b in paused)
    assert all(b["steps"] == [] for b in paused)
    # The cooldown was never spent while paused: the first run after the resume goes.
    assert after["status"] == "succeeded"
    assert sorted(r.path for r in http_target.received) == ["/a", "/b"]
    assert all("rule fix-" in p.logs() for p in procs), "both replicas processed events"


async def test_pause_all_then_it_ends_by_itself(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rule = f"fix-{unique}"
    write_rules(workdir, cooldown_rule(unique, http_target.url))
    results = await Collector.on(nc, f"remediator.results.{rule}")
    procs = [replica(workdir, nats_server.url, unique).start() for _ in range(2)]
    try:
        code, out, err = await cli(nats_server.url, "pause", "--all", "--for", "3s", "--by", "bob")
        assert code == 0 and "all rules" in out, err
        await paused_everywhere(procs, "all", 1)
        await publish(nc, f"{unique}.disk.x", {"host": "x"})
        (first,) = await results.wait_for(1)
        # Expiry is evaluated when a rule fires, and the gauge follows within a clean-up tick.
        await until(lambda: metric(procs[0], "remediator_paused", scope="all") == 0, 15, "expiry")
        await publish(nc, f"{unique}.disk.x", {"host": "x"})
        second = (await results.wait_for(2))[1]
        code, out, _ = await cli(nats_server.url, "status", "--json")
    finally:
        for proc in procs:
            proc.stop()
    assert first["status"] == "paused" and "all rules" in str(first["reason"])
    assert second["status"] == "succeeded"
    report = json.loads(out)
    assert report["pauses"] == []
    assert len(report["replicas"]) >= 2


def approval_rule(unique: str, url: str, timeout: str = "30m", name: str = "restart") -> str:
    return f"""
rules:
  - name: {name}-{unique}
    on: [{unique}.{name}.*]
    approval:
      timeout: {timeout}
      notify:
        - http:
            url: "{url}/chat"
            json: {{text: "approve {{{{ approval.id }}}} at {{{{ approval.url }}}}",
                   expires: "{{{{ approval.expires_at }}}}"}}
    actions:
      - http: {{url: "{url}/restart/{{{{ event.host }}}}"}}
"""


def restarts(target: HttpTarget) -> list[str]:
    return [r.path for r in target.received if r.path.startswith("/restart/")]


async def asked(nc: Client, results: Collector, unique: str, name: str = "restart") -> str:
    await publish(nc, f"{unique}.{name}.down", {"host": "web-1"})
    waiting = (await results.wait_for(len(results.messages) + 1))[-1]
    assert waiting["status"] == "awaiting_approval", waiting
    return str(waiting["approval_id"])


async def request_state(nc: Client, request_id: str) -> str:
    kv = await nc.jetstream().key_value("REMEDIATOR_CONTROL")
    entry = await kv.get(f"approval.{request_id}")
    return str(json.loads(entry.value or b"{}")["state"])


async def test_approval_two_replicas_two_approvals_one_run(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rule = f"restart-{unique}"
    write_rules(workdir, approval_rule(unique, http_target.url))
    results = await Collector.on(nc, f"remediator.results.{rule}")
    requests = await Collector.on(nc, f"remediator.approvals.{rule}")
    procs = [replica(workdir, nats_server.url, unique).start() for _ in range(2)]
    try:
        request_id = await asked(nc, results, unique)
        (announced,) = await requests.wait_for(1)
        await http_target.wait_for(1)
        await until(
            lambda: all(metric(p, "remediator_approvals_pending") == 1 for p in procs),
            HONOURED_WITHIN,
            "every replica counts the pending request",
        )
        _code, listed, _ = await cli(nats_server.url, "approvals", "--json")
        decisions = await asyncio.gather(
            cli(nats_server.url, "approve", request_id, "--by", "carol"),
            cli(nats_server.url, "approve", request_id, "--by", "dave", "--comment", "go"),
        )
        ran = (await results.wait_for(2))[1]
        await until(lambda: _done(nc, request_id), 10, "request done")
        late = await cli(nats_server.url, "deny", request_id, "--by", "erin")
        requested = [
            metric(p, "remediator_approvals_total", rule=rule, result="requested") for p in procs
        ]
        approved = [
            metric(p, "remediator_approvals_total", rule=rule, result="approved") for p in procs
        ]
    finally:
        for proc in procs:
            proc.stop()
    assert announced["id"] == request_id and announced["steps"][0]["output"]["url"].endswith(
        "/restart/web-1"
    )
    (chat,) = [r for r in http_target.received if r.path == "/chat"]
    text = str(chat.json()["text"])  # type: ignore[index]
    assert request_id in text and f"/#/approvals/{request_id}" in text
    assert [a["id"] for a in json.loads(listed)] == [request_id]
    assert sorted(code for code, _, _ in decisions) == [0, 1]
    loser = next(err for code, _, err in decisions if code == 1)
    assert "already decided by" in loser
    winner = "carol" if decisions[0][0] == 0 else "dave"
    assert ran["status"] == "succeeded"
    assert ran["approval"]["id"] == request_id and ran["approval"]["by"] == winner
    assert ran["approval"]["decision"] == "approved" and ran["approval"]["at"]
    assert late[0] == 1 and f"already decided by {winner}" in late[2]
    assert restarts(http_target) == ["/restart/web-1"]
    assert len(results.messages) == 2
    assert sum(v or 0 for v in requested) == 1 and sum(v or 0 for v in approved) == 1


async def _done(nc: Client, request_id: str) -> bool:
    return await request_state(nc, request_id) == "done"


async def test_killed_before_the_run_runs_once_after_restart(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rule = f"restart-{unique}"
    write_rules(workdir, approval_rule(unique, http_target.url))
    results = await Collector.on(nc, f"remediator.results.{rule}")
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        request_id = await asked(nc, results, unique)
        proc.kill()  # SIGKILL: no drain, nothing of its own left to do
        code, _out, err = await cli(nats_server.url, "approve", request_id, "--by", "frank")
        assert code == 0, err
        assert await request_state(nc, request_id) == "approved"
        proc.start()
        ran = (await results.wait_for(2))[1]
        await until(lambda: _done(nc, request_id), 10, "request done")
    finally:
        proc.stop()
    assert ran["status"] == "succeeded" and ran["approval"]["by"] == "frank"
    assert restarts(http_target) == ["/restart/web-1"]


async def test_deny_and_timeout(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rule, hasty = f"restart-{unique}", f"hasty-{unique}"
    two = approval_rule(unique, http_target.url)
    two += approval_rule(unique, http_target.url, "2s", "hasty").removeprefix("\nrules:\n")
    write_rules(workdir, two)
    results = await Collector.on(nc, f"remediator.results.{rule}")
    timed_out = await Collector.on(nc, f"remediator.results.{hasty}")
    escalations = await Collector.on(nc, "remediator.escalations")
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        denied_id = await asked(nc, results, unique)
        code, _, err = await cli(
            nats_server.url, "deny", denied_id, "--by", "gina", "--comment", "not now"
        )
        assert code == 0, err
        denied = (await results.wait_for(2))[1]
        await asked(nc, timed_out, unique, "hasty")
        waiting, expired = await timed_out.wait_for(2)
        (escalation,) = await escalations.wait_for(1)
        counts = {
            (name, result): metric(proc, "remediator_approvals_total", rule=name, result=result)
            for name, result in ((rule, "requested"), (rule, "denied"), (hasty, "expired"))
        }
        escalated = metric(proc, "remediator_escalations_total", reason="approval_expired")
        pending = metric(proc, "remediator_approvals_pending")
    finally:
        proc.stop()
    assert denied["status"] == "denied" and "gina" in str(denied["reason"])
    assert denied["approval"] == {**denied["approval"], "decision": "denied", "by": "gina"}
    assert waiting["status"] == "awaiting_approval"
    assert expired["status"] == "expired" and expired["approval"]["id"] == waiting["approval_id"]
    assert escalation["reason"] == "approval_expired" and escalation["rule"] == hasty
    assert set(counts.values()) == {1}
    assert escalated == 1 and pending == 0
    assert restarts(http_target) == []


async def test_sigterm_is_still_clean(workdir: Path, nats_server: NatsServer, unique: str) -> None:
    write_rules(workdir, cooldown_rule(unique, "http://127.0.0.1:9"))
    proc = replica(workdir, nats_server.url, unique).start()
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


async def test_a_typo_in_pause_is_refused_and_resume_says_what_was_not_paused(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """`pause restart-wbe` used to answer "paused" and exit 0 (a pause of nothing), and
    `resume` of something not paused printed the bucket's key and exited 0."""
    rule = f"fix-{unique}"
    write_rules(workdir, cooldown_rule(unique, "http://127.0.0.1:9"))
    typo = f"fxi-{unique}"
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        from_fleet = await cli(nats_server.url, "pause", typo, "--by", "ann")
        from_files = await cli(
            nats_server.url, "pause", typo, "--rules", str(workdir / "rules"), "--by", "ann"
        )
        not_paused = await cli(nats_server.url, "resume", rule)
        good = await cli(nats_server.url, "pause", rule, "--by", "ann")
        resumed = await cli(nats_server.url, "resume", rule)
    finally:
        proc.stop()
    kv = await nc.jetstream().key_value("REMEDIATOR_CONTROL")
    keys = await kv.keys()
    for code, out, err in (from_fleet, from_files):
        assert code == 2 and out == ""
        assert err.strip() == f"remediator: unknown rule '{typo}' (did you mean '{rule}'?)"
    assert f"pause.rule.{typo}" not in keys
    assert not_paused[0] == 1
    assert not_paused[2].strip() == f"remediator: not paused: rule {rule}"
    assert good[0] == 0 and resumed == (0, f"resumed rule {rule}\n", "")
    assert all("pause." not in text for text in (*not_paused[1:], *resumed[1:]))


async def test_pause_with_no_daemon_and_no_rule_files_says_how(tmp_path: Path) -> None:
    """On a server no daemon has reported to, a name cannot be checked: say so, and how."""
    server = NatsServer(store=tmp_path / "nats").start()
    try:
        code, out, err = await cli(server.url, "pause", "anything")
        everything = await cli(server.url, "pause", "--all", "--for", "1s")
    finally:
        server.stop()
    assert code == 2 and out == ""
    assert "pass --rules PATH" in err and len(err.strip().splitlines()) == 1
    assert everything[0] == 0


async def test_a_rule_changed_after_asking_expires_its_approved_request(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    """The approver approved the steps shown; an edit since then must not run instead."""
    rule = f"restart-{unique}"
    write_rules(workdir, approval_rule(unique, http_target.url))
    results = await Collector.on(nc, f"remediator.results.{rule}")
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        request_id = await asked(nc, results, unique)
        edited = approval_rule(unique, http_target.url).replace("/restart/", "/restart-all/")
        write_rules(workdir, edited)
        await until(lambda: "reloaded 1 rules" in proc.logs(), 20, "the edit reloaded")
        code, _out, err = await cli(nats_server.url, "approve", request_id, "--by", "hal")
        assert code == 0, err
        closed = (await results.wait_for(2))[1]
        await until(lambda: _done(nc, request_id), 10, "request done")
    finally:
        proc.stop()
    assert closed["status"] == "expired", closed
    assert "changed since the request was made" in str(closed["reason"])
    assert [r.path for r in http_target.received if "/restart" in r.path] == []


async def test_a_key_pause_holds_an_approved_run_until_resumed(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rule = f"restart-{unique}"
    throttled = approval_rule(unique, http_target.url).replace(
        "    approval:\n",
        '    throttle: {key: "{{ event.host }}", cooldown: 1s}\n    approval:\n',
    )
    write_rules(workdir, throttled)
    results = await Collector.on(nc, f"remediator.results.{rule}")
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        request_id = await asked(nc, results, unique)
        code, _, err = await cli(nats_server.url, "pause", rule, "--key", "web-1", "--by", "ida")
        assert code == 0, err
        await paused_everywhere([proc], rule, 1)
        code, _, err = await cli(nats_server.url, "approve", request_id, "--by", "jo")
        assert code == 0, err
        await until(lambda: f"approval {request_id} of rule" in proc.logs(), 10, "held")
        state_while_paused = await request_state(nc, request_id)
        ran_while_paused = restarts(http_target)
        code, _, err = await cli(nats_server.url, "resume", rule, "--key", "web-1")
        assert code == 0, err
        ran = (await results.wait_for(2))[1]
    finally:
        proc.stop()
    assert state_while_paused == "approved" and ran_while_paused == []
    assert "held: paused" in proc.logs() and "ida" in proc.logs()
    assert ran["status"] == "succeeded" and ran["approval"]["by"] == "jo"
    assert restarts(http_target) == ["/restart/web-1"]


async def test_a_big_event_is_not_stored_in_its_request_and_still_runs(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    """Requests stay small in the bucket and in memory: an event over 64 KiB is read back
    from its stream when the approved steps run."""
    rule = f"restart-{unique}"
    write_rules(workdir, approval_rule(unique, http_target.url))
    results = await Collector.on(nc, f"remediator.results.{rule}")
    proc = replica(workdir, nats_server.url, unique).start()
    try:
        await publish(nc, f"{unique}.restart.down", {"host": "web-9", "log": "x" * 200_000})
        (waiting,) = await results.wait_for(1)
        request_id = str(waiting["approval_id"])
        kv = await nc.jetstream().key_value("REMEDIATOR_CONTROL")
        stored = await kv.get(f"approval.{request_id}")
        status, listed = proc.get("/api/approvals")
        code, _, err = await cli(nats_server.url, "approve", request_id, "--by", "lee")
        assert code == 0, err
        ran = (await results.wait_for(2))[1]
    finally:
        proc.stop()
    assert len(stored.value or b"") < 16 * 1024
    assert json.loads(stored.value or b"{}")["origin"][1] >= 1
    assert status == 200 and [a["id"] for a in json.loads(listed)["approvals"]] == [request_id]
    assert ran["status"] == "succeeded" and restarts(http_target) == ["/restart/web-9"]
