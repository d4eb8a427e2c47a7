"""The audit trail (SPEC §18): every pause, resume, approve, deny and trigger, and every
control call refused for its token, in `REMEDIATOR_AUDIT`, without a token in sight; an
act whose record cannot be stored is not done; an old results stream is narrowed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats.js.errors import NoKeysError

from remediator.nats.audit import narrow_results
from remediator.nats.jsconfig import MANAGED, RESULTS_SUBJECTS
from tests.support.cli import cli
from tests.support.collect import stored
from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer

VIEWER = "view-a0d1f3c9e2-token"
OPERATOR = "op-9b7c5e1d44-token"
CONFIG = f"""
api:
  tokens:
    - {{name: dashboard, token: {VIEWER}, role: viewer}}
    - {{name: ops-bot, token: "secret(OP_TOKEN)", role: operator}}
"""


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path_factory.mktemp("nats-audit")).start()
    yield server
    server.stop()


def daemon(workdir: Path, url: str, unique: str) -> DaemonProcess:
    (workdir / "rules" / "a.yaml").write_text(
        f"""
rules:
  - name: fix-{unique}
    on: [{unique}.alert]
    actions:
      - publish: {{subject: {unique}.out, json: {{}}}}
"""
    )
    (workdir / "config.yaml").write_text(CONFIG)
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    return DaemonProcess([*args, "--config", "config.yaml"], workdir, env={"OP_TOKEN": OPERATOR})


async def post(base: str, path: str, token: str, body: object, console: bool = False) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    if console:
        headers["X-Remediator-Client"] = "console"
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + path, headers=headers, json=body) as response,
    ):
        return response.status


async def test_every_act_is_recorded_without_a_token(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    rule = f"fix-{unique}"
    proc = daemon(workdir, nats_server.url, unique).start()
    try:
        base = f"http://127.0.0.1:{proc.http_port}"
        body = {"rules": [rule], "for": "10m", "reason": f"maintenance, token {OPERATOR}"}
        assert await post(base, "/api/pause", OPERATOR, body, console=True) == 200
        assert await post(base, "/api/pause", VIEWER, body) == 403
        assert await post(base, "/api/resume", "not-a-token", {"rules": [rule]}) == 401
        assert await post(base, "/api/resume", OPERATOR, {"rules": [rule]}) == 200
        code, _, err = await cli(nats_server.url, "pause", rule, "--by", "alice", "--reason", "db")
        assert code == 0, err
        code, out, err = await cli(nats_server.url, "audit", "--json")
        assert code == 0, err
    finally:
        proc.stop()
    records = [json.loads(line) for line in out.splitlines()]
    mine = [
        r for r in records if rule in r["target"] or r["target"] in ("/api/pause", "/api/resume")
    ]
    acts = [(r["act"], r["by"], r["source"], r["outcome"].split(" ")[0]) for r in mine]
    assert acts == [
        ("pause", "ops-bot", "console", "paused"),
        ("pause", "dashboard", "api", "refused"),
        ("resume", "unknown token", "api", "refused"),
        ("resume", "ops-bot", "api", "resumed"),
        ("pause", "alice", "cli", "paused"),
    ]
    first = mine[0]
    assert set(first) == {"at", "act", "by", "source", "remote", "target", "reason", "outcome"}
    assert first["remote"] == "127.0.0.1" and first["target"] == rule
    assert first["reason"] == "maintenance, token ***"
    assert mine[-1]["remote"] is None and mine[-1]["reason"] == "db"
    raw = json.dumps(await stored(nc, "remediator.audit.>", "REMEDIATOR_AUDIT"))
    assert OPERATOR not in raw and VIEWER not in raw and "not-a-token" not in raw
    code, text, _ = await cli(nats_server.url, "audit")
    assert f"pause    {rule}  by alice via cli: paused until" in text


async def test_an_act_that_cannot_be_audited_is_not_done(tmp_path: Path, unique: str) -> None:
    """A results stream someone else made over `remediator.>` blocks the audit stream: the
    CLI refuses the pause, says why, and pauses nothing."""
    server = NatsServer(store=tmp_path / "nats").start()
    try:
        client = await nats.connect(server.url)
        js = client.jetstream()
        await js.add_stream(StreamConfig(name="REMEDIATOR_RESULTS", subjects=["remediator.>"]))
        # `--all`: no daemon has reported its rules here, and a named rule is checked first.
        code, _, err = await cli(server.url, "pause", "--all", "--by", "bob")
        assert code == 1
        assert "pause refused: the audit record cannot be stored" in err
        assert "nothing was done" in err
        kv = await js.key_value("REMEDIATOR_CONTROL")
        with pytest.raises(NoKeysError):
            await kv.keys()
        await client.close()
    finally:
        server.stop()


async def test_an_old_results_stream_is_narrowed_and_keeps_its_messages(
    tmp_path: Path,
) -> None:
    server = NatsServer(store=tmp_path / "nats").start()
    try:
        client = await nats.connect(server.url)
        js = client.jetstream()
        config = StreamConfig(
            name="REMEDIATOR_RESULTS", subjects=["remediator.>"], description=MANAGED
        )
        await js.add_stream(config)
        await js.publish("remediator.results.old", b"{}")
        await narrow_results(js)
        info = await js.stream_info("REMEDIATOR_RESULTS")
        assert info.config.subjects == RESULTS_SUBJECTS
        assert info.state.messages == 1
        await client.close()
    finally:
        server.stop()


async def test_decisions_are_recorded_and_a_lost_race_says_so(nc: Client, unique: str) -> None:
    """Approve, then a second decision: both recorded, the second as refused."""
    import datetime as dt

    from remediator.engine.control import AlreadyDecided, ApprovalRequest
    from remediator.model import Event
    from remediator.nats.acts import Acts
    from remediator.nats.audit import AuditLog
    from remediator.nats.control import Control

    js = nc.jetstream()
    control = await Control.open(js)
    event = Event(subject="a.b", headers={}, payload={}, event_id=f"e{unique}", trace_id="t")
    request = ApprovalRequest.ask(f"r{unique}", event, (), dt.datetime.now(dt.UTC), 600.0)
    await control.create(request)
    audit = AuditLog(js)
    await Acts(control, audit, "alice", "cli").decide(request.id, "approved", "looks right")
    with pytest.raises(AlreadyDecided):
        await Acts(control, audit, "bob", "api", "10.0.0.9").decide(request.id, "denied", "")
    bodies = await stored(nc, "remediator.audit.>", "REMEDIATOR_AUDIT")
    mine = [b for b in bodies if request.id in str(b["target"])]
    assert [(b["act"], b["by"], b["outcome"]) for b in mine] == [
        ("approve", "alice", "approved"),
        ("deny", "bob", f"refused: approval {request.id} already decided by alice (approved)"),
    ]
    assert mine[0]["reason"] == "looks right" and mine[1]["remote"] == "10.0.0.9"


async def test_the_api_refuses_an_act_it_cannot_audit(tmp_path: Path, unique: str) -> None:
    """The daemon runs (remediation goes on) but answers 503 to a pause, pausing nothing."""
    server = NatsServer(store=tmp_path / "nats").start()
    workdir = tmp_path / "w"
    (workdir / "rules").mkdir(parents=True)
    try:
        client = await nats.connect(server.url)
        js = client.jetstream()
        await js.add_stream(StreamConfig(name="REMEDIATOR_RESULTS", subjects=["remediator.>"]))
        proc = daemon(workdir, server.url, unique).start()
        try:
            base = f"http://127.0.0.1:{proc.http_port}"
            body = {"rules": [f"fix-{unique}"], "reason": "x"}
            assert await post(base, "/api/pause", OPERATOR, body) == 503
        finally:
            proc.stop()
        assert "audit trail unavailable" in proc.logs()
        kv = await js.key_value("REMEDIATOR_CONTROL")
        try:
            keys = await kv.keys()
        except NoKeysError:
            keys = []
        assert not [k for k in keys if k.startswith("pause.")]
        await client.close()
    finally:
        server.stop()
