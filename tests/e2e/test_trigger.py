"""Manual runs on real daemons (SPEC §16): `remediator trigger` and `POST
/api/rules/<rule>/run` are answered by exactly one of two replicas; throttle applies
unless --force, a pause always; --from reruns a stored event; --dry-run runs nothing;
with no daemon the CLI says so and exits 1; each request is in the audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client

from tests.e2e.test_audit import CONFIG, OPERATOR, VIEWER, cli
from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget
from tests.support.nats import NatsServer


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path_factory.mktemp("nats-trigger")).start()
    yield server
    server.stop()


def replicas(workdir: Path, url: str, unique: str, target: HttpTarget) -> list[DaemonProcess]:
    (workdir / "rules" / "t.yaml").write_text(
        f"""
rules:
  - name: restart-{unique}
    on: [{unique}.alert]
    throttle: {{cooldown: 1h}}
    actions:
      - http: {{url: "{target.url}/restart/{{{{ event.host }}}}", method: POST}}
"""
    )
    (workdir / "config.yaml").write_text(CONFIG)
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    args += ["--config", "config.yaml"]
    env = {"OP_TOKEN": OPERATOR}
    return [DaemonProcess(args, workdir, env=env).start() for _ in range(2)]


async def trigger(url: str, rule: str, *args: str) -> tuple[int, dict[str, object], str]:
    code, out, err = await cli(url, "trigger", rule, *args)
    return code, (json.loads(out) if code == 0 else {}), err


async def test_manual_runs_from_the_cli_and_the_api(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    rule, url = f"restart-{unique}", nats_server.url
    results = await Collector.on(nc, f"remediator.results.{rule}")
    procs = replicas(workdir, url, unique, http_target)
    try:
        await nc.jetstream().publish(f"{unique}.alert", b'{"host": "web-1"}')
        first = (await results.wait_for(1))[0]
        assert first["status"] == "succeeded"
        # The throttle holds a plain manual run; --force skips it, and exactly one runs it.
        code, result, err = await trigger(url, rule, "--event", '{"host": "web-2"}')
        assert code == 0, err
        assert result["status"] == "throttled"
        code, result, err = await trigger(
            url, rule, "--from", str(first["event_id"]), "--force", "--by", "alice",
            "--reason", "target fixed",
        )  # fmt: skip
        assert code == 0, err
        assert result["status"] == "succeeded"
        trig = result["trigger"]
        assert isinstance(trig, dict)
        assert (trig["by"], trig["forced"], trig["reason"]) == ("alice", True, "target fixed")
        assert trig["from"] == first["event_id"]
        assert str(result["event_id"]).startswith("trigger:")
        assert [r.path for r in http_target.received] == ["/restart/web-1", "/restart/web-1"]
        (workdir / "event.json").write_text('{"host": "from-a-file"}')
        at_file = f"@{workdir / 'event.json'}"
        code, result, err = await trigger(url, rule, "--event", at_file, "--dry-run", "--force")
        assert "from-a-file" in json.dumps(result["steps"])
        assert code == 0 and result["status"] == "dry_run", err
        # A pause holds even a forced run.
        assert (await cli(url, "pause", rule, "--by", "bob"))[0] == 0
        code, result, err = await trigger(url, rule, "--force", "--event", '{"host": "x"}')
        assert code == 0 and result["status"] == "paused", err
        assert (await cli(url, "resume", rule))[0] == 0
        # The API: a viewer may not; an operator's run records the token's name.
        base = f"http://127.0.0.1:{procs[0].http_port}/api/rules/{rule}/run"
        async with aiohttp.ClientSession() as session:
            for token, expected in ((VIEWER, 403), (OPERATOR, 200)):
                headers = {"Authorization": f"Bearer {token}"}
                body = {"event": {"host": "web-3"}, "force": True, "reason": "api"}
                async with session.post(base, json=body, headers=headers) as response:
                    assert response.status == expected, await response.text()
                    answer = await response.json()
        assert answer["result"]["status"] == "succeeded"
        assert answer["result"]["trigger"]["by"] == "ops-bot"
        assert http_target.received[-1].path == "/restart/web-3"
        assert len(http_target.received) == 3  # one run per request, whatever the replicas
    finally:
        for proc in procs:
            proc.stop()
    code, out, _ = await cli(url, "audit", "--json")
    mine = [json.loads(line) for line in out.splitlines()]
    mine = [r for r in mine if r["act"] == "trigger" and r["target"] == rule]
    assert [(r["by"], r["source"], r["outcome"].split(" ")[0]) for r in mine] == [
        (mine[0]["by"], "cli", "requested"),
        ("alice", "cli", "requested"),
        (mine[0]["by"], "cli", "requested"),
        (mine[0]["by"], "cli", "requested"),
        ("dashboard", "api", "refused"),
        ("ops-bot", "api", "requested"),
    ]


async def test_no_daemon_means_a_clear_failure(nats_server: NatsServer, unique: str) -> None:
    code, _, err = await trigger(nats_server.url, f"r{unique}", "--wait", "1s")
    assert code == 1
    assert "no daemon answered within 1s" in err and "nothing ran" in err
