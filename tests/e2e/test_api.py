"""`/api/` on a running daemon: tokens from the config file, the two roles, decisions and
pauses that record who, and the 403 that says how to configure a token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget
from tests.support.nats import NatsServer

VIEWER = "view-5e1f0c2a-token"
OPERATOR = "op-77d1b9e4-token"


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path_factory.mktemp("nats-api")).start()
    yield server
    server.stop()


def daemon(workdir: Path, url: str, unique: str, config: str | None) -> DaemonProcess:
    (workdir / "rules" / "api.yaml").write_text(
        f"""
rules:
  - name: restart-{unique}
    on: [{unique}.web.*]
    approval: {{timeout: 30m}}
    actions:
      - http: {{url: "{{{{ event.target }}}}/restart"}}
"""
    )
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    if config is not None:
        (workdir / "config.yaml").write_text(config)
        args += ["--config", "config.yaml"]
    return DaemonProcess(args, workdir, env={"OP_TOKEN": OPERATOR})


class Api:
    def __init__(self, session: aiohttp.ClientSession, proc: DaemonProcess) -> None:
        self.session, self.base = session, f"http://127.0.0.1:{proc.http_port}"

    async def call(
        self, method: str, path: str, token: str | None = None, body: object = None
    ) -> tuple[int, dict[str, object]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base + path, headers=headers, json=body
        ) as response:
            return response.status, await response.json()


CONFIG = f"""
api:
  tokens:
    - {{name: dashboard, token: {VIEWER}, role: viewer}}
    - {{name: ops-bot, token: "secret(OP_TOKEN)", role: operator}}
"""


async def test_tokens_roles_and_who_decided(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rule = f"restart-{unique}"
    results = await Collector.on(nc, f"remediator.results.{rule}")
    proc = daemon(workdir, nats_server.url, unique, CONFIG).start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, proc)
            assert (await api.call("GET", "/api/status"))[0] == 401
            assert (await api.call("GET", "/api/status", "wrong-token"))[0] == 401
            status, report = await api.call("GET", "/api/status", VIEWER)
            assert status == 200 and set(report) >= {"pauses", "approvals", "replicas"}
            _, listed = await api.call("GET", "/api/rules", VIEWER)
            pause = {"rules": [rule], "for": "1h", "reason": "change freeze"}
            refused = await api.call("POST", "/api/pause", VIEWER, pause)
            made = await api.call("POST", "/api/pause", OPERATOR, pause)
            typo = await api.call("POST", "/api/pause", OPERATOR, {"rules": [f"rsetart-{unique}"]})
            _, paused_rules = await api.call("GET", "/api/rules", VIEWER)
            resumed = await api.call("POST", "/api/resume", OPERATOR, {"rules": [rule]})
            again_resumed = await api.call("POST", "/api/resume", OPERATOR, {"rules": [rule]})

            await nc.jetstream().publish(
                f"{unique}.web.down", json.dumps({"target": http_target.url}).encode()
            )
            (waiting,) = await results.wait_for(1)
            _, pending = await api.call("GET", "/api/approvals", VIEWER)
            request_id = str(waiting["approval_id"])
            path = f"/api/approvals/{request_id}/approve"
            viewer_decides = await api.call("POST", path, VIEWER)
            approved = await api.call("POST", path, OPERATOR, {"comment": "ok from chat"})
            again = await api.call("POST", f"/api/approvals/{request_id}/deny", OPERATOR)
            unknown = await api.call("POST", "/api/approvals/nope/deny", OPERATOR)
            ran = (await results.wait_for(2))[1]
    finally:
        proc.stop()
    (described,) = listed["rules"]  # type: ignore[misc]
    assert described["name"] == rule and described["approval"] == {"timeout_s": 1800.0}
    assert refused[0] == 403 and "operator" in str(refused[1]["error"])
    assert made[0] == 200 and made[1]["pauses"][0]["by"] == "ops-bot"  # type: ignore[index]
    assert "change freeze" in str(paused_rules["rules"][0]["paused"])  # type: ignore[index]
    assert typo == (
        400,
        {"error": f"unknown rule 'rsetart-{unique}' (did you mean '{rule}'?)"},
    )
    assert resumed == (200, {"resumed": [f"rule {rule}"], "not_paused": []})
    assert again_resumed == (404, {"error": f"not paused: rule {rule}"})
    assert [a["id"] for a in pending["approvals"]] == [request_id]  # type: ignore[attr-defined]
    assert viewer_decides[0] == 403
    assert approved[0] == 200 and approved[1]["approval"]["decided_by"] == "ops-bot"  # type: ignore[index]
    assert again[0] == 409 and "already decided by ops-bot" in str(again[1]["error"])
    assert unknown[0] == 404
    assert ran["status"] == "succeeded" and ran["approval"]["by"] == "ops-bot"  # type: ignore[index]
    assert len(http_target.received) == 1
    logs = proc.logs()
    assert VIEWER not in logs and OPERATOR not in logs


async def test_no_token_reads_on_loopback_and_refuses_control(
    nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    proc = daemon(workdir, nats_server.url, unique, None).start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, proc)
            reads = [(await api.call("GET", p))[0] for p in ("/api/status", "/api/rules")]
            pause = await api.call("POST", "/api/pause", None, {"all": True})
            decide = await api.call("POST", "/api/approvals/x/approve")
    finally:
        proc.stop()
    assert reads == [200, 200]
    assert pause[0] == 403 and "api: {tokens:" in str(pause[1]["error"])
    assert decide[0] == 403
