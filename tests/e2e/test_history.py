"""What did it do: `history`, `show` and the read API, against a real daemon and nats-server.

A daemon subprocess runs three rules over two events (a succeeded and a
throttled run, two dry runs whose output holds a secret, two failures); then
the command line reads the results stream back through an ephemeral consumer,
and the API answers from the daemon's own state, including after a restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client

from remediator.model import RESULT_STATUSES
from remediator.nats.transport import RESULTS_STREAM
from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer
from tests.support.poll import until

RULES = """
rules:
  - name: ok-{u}
    on: ["{u}.alerts.>"]
    throttle: {{cooldown: 1h}}
    actions:
      - name: tell
        publish: {{subject: "{u}.actions.done", json: {{host: "{{{{ event.host }}}}"}}}}
  - name: dry-{u}
    on: ["{u}.alerts.>"]
    dry_run: true
    actions:
      - name: call
        http:
          url: "http://127.0.0.1:9/hook"
          headers: {{Authorization: "Bearer {{{{ secret('HIST_TOKEN') }}}}"}}
  - name: fail-{u}
    on: ["{u}.alerts.>"]
    actions:
      - name: refused
        http: {{url: "http://127.0.0.1:9/down"}}
        timeout: 5s
"""


def start_daemon(workdir: Path, server: NatsServer, unique: str) -> DaemonProcess:
    args = ["--rules", "rules", "--nats", server.url]
    args += ["--stream", f"S{unique}", "--durable", f"D{unique}"]
    return DaemonProcess(args, workdir, env={"HIST_TOKEN": f"tok-{unique}-s3cret"}).start()


async def fire(nc: Client, workdir: Path, server: NatsServer, unique: str) -> DaemonProcess:
    """Start a daemon and let it handle two events (six results); return it running."""
    (workdir / "rules" / "r.yaml").write_text(RULES.format(u=unique))
    results = await Collector.on(nc, "remediator.results.*")
    proc = start_daemon(workdir, server, unique)
    js = nc.jetstream()
    for count, host in ((3, "h1"), (6, "h2")):  # one at a time: the throttle sees h1 first
        await js.publish(f"{unique}.alerts.disk", json.dumps({"host": host}).encode())
        await until(
            lambda n=count: (
                len([b for b in results.bodies() if str(b["rule"]).endswith(unique)]) >= n
            ),
            30,
            f"the results for {host}",
        )
    return proc


def cli(server: NatsServer, *args: str) -> str:
    command = [sys.executable, "-m", "remediator", *args, "--nats", server.url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def cli_into_closed_pipe(server: NatsServer, *args: str) -> tuple[int, str]:
    """`remediator ARGS | head -0`: the reader is gone before the first line is written."""
    command = [sys.executable, "-m", "remediator", *args, "--nats", server.url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    with process.stderr:
        error = process.stderr.read().decode()
    return process.wait(60), error


async def consumers(nc: Client) -> set[str]:
    return {c.name for c in await nc.jetstream().consumers_info(RESULTS_STREAM)}


async def test_history_and_show_read_the_results_stream(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    proc = await fire(nc, workdir, nats_server, unique)
    try:
        before = await consumers(nc)
        lines = cli(nats_server, "history", "--rule", f"ok-{unique}", "--json").splitlines()
        ok = [json.loads(line) for line in lines]
        assert [b["status"] for b in ok] == ["succeeded", "throttled"]  # newest last
        assert all(b["rule"] == f"ok-{unique}" for b in ok)

        table = cli(nats_server, "history", "--rule", f"fail-{unique}", "--status", "failed")
        header, *rows = table.splitlines()
        assert header.split() == ["TIME", "RULE", "STATUS", "EVENT", "DURATION", "REASON"]
        assert len(rows) == 2
        assert all(" ago " in row and "failed" in row and "refused:" in row for row in rows)

        limited = cli(nats_server, "history", "--rule", f"dry-{unique}", "--limit", "1", "--json")
        assert len(limited.splitlines()) == 1
        # `history --json | head` used to end in a BrokenPipeError traceback.
        assert cli_into_closed_pipe(nats_server, "history", "--json") == (1, "")

        first = ok[0]["event_id"]
        shown = cli(nats_server, "show", str(first))
        for text in (f"ok-{unique}: succeeded", f"dry-{unique}: dry_run", f"fail-{unique}: failed"):
            assert text in shown
        assert "1. tell  publish  succeeded  attempts 1" in shown
        assert "1. call  http  dry_run" in shown and "Bearer ***" in shown
        assert f"tok-{unique}-s3cret" not in shown
        assert await consumers(nc) <= before  # it left no consumer behind
    finally:
        proc.stop()


def test_show_says_when_an_event_has_no_result(nats_server: NatsServer) -> None:
    command = [sys.executable, "-m", "remediator", "show", "no-such-event", "--since", "1m"]
    done = subprocess.run(
        [*command, "--nats", nats_server.url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "no result for event no-such-event" in done.stderr


async def test_api_answers_from_the_daemons_state_and_survives_a_restart(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    proc = await fire(nc, workdir, nats_server, unique)
    try:
        status, text = proc.get(f"/api/results?rule=ok-{unique}")
        assert status == 200
        ok = json.loads(text)["results"]
        assert [b["status"] for b in ok] == ["throttled", "succeeded"]  # newest first

        status, text = proc.get(f"/api/results/{ok[1]['event_id']}")
        assert status == 200
        detail = json.loads(text)["results"]
        assert sorted(b["rule"] for b in detail) == sorted(
            f"{r}-{unique}" for r in ("ok", "dry", "fail")
        )
        assert f"tok-{unique}-s3cret" not in text and "Bearer ***" in text

        assert proc.get("/api/results/nope")[0] == 404
        assert proc.get("/api/results?since=yesterday")[0] == 400
        assert proc.get("/api/results?limit=0")[0] == 400
        assert proc.get("/api/results?offset=-1")[0] == 400
        assert proc.get("/api/results?until=someday")[0] == 400
        page = json.loads(proc.get(f"/api/results?rule=ok-{unique}&limit=1")[1])
        assert [b["status"] for b in page["results"]] == ["throttled"] and page["more"]
        page = json.loads(proc.get(f"/api/results?rule=ok-{unique}&limit=1&offset=1")[1])
        assert [b["status"] for b in page["results"]] == ["succeeded"] and not page["more"]
        found = json.loads(proc.get(f"/api/results?rule=ok-{unique}&q=COOLDOWN")[1])["results"]
        assert [b["status"] for b in found] == ["throttled"]  # its reason says cooldown
        assert json.loads(proc.get("/api/statuses")[1])["statuses"] == list(RESULT_STATUSES)
        assert_overview(proc, unique)
    finally:
        proc.stop()
    restarted = start_daemon(workdir, nats_server, unique)
    try:
        await until(lambda: overview_of(restarted, unique) != {}, 30, "the seeded overview")
        assert_overview(restarted, unique)
    finally:
        restarted.stop()


def overview_of(proc: DaemonProcess, unique: str) -> dict[str, dict[str, object]]:
    status, text = proc.get("/api/overview")
    assert status == 200
    rules = json.loads(text)["rules"]
    mine = {r["rule"]: r for r in rules if r["rule"].endswith(unique)}
    return mine if any(r["last_day"]["fired"] for r in mine.values()) else {}


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {status: n for status, n in counts.items() if n}


def assert_overview(proc: DaemonProcess, unique: str) -> None:
    rules = overview_of(proc, unique)
    # fired: steps ran (succeeded or failed); a throttled or dry run is counted apart
    assert nonzero(rules[f"ok-{unique}"]["last_hour"]) == {
        "fired": 1,
        "succeeded": 1,
        "throttled": 1,
    }
    assert nonzero(rules[f"fail-{unique}"]["last_day"]) == {"fired": 2, "failed": 2}
    assert nonzero(rules[f"dry-{unique}"]["last_hour"]) == {"dry_run": 2}
    assert set(rules[f"dry-{unique}"]["last_hour"]) == {"fired", *RESULT_STATUSES}
    series = json.loads(proc.get("/api/overview")[1])["per_minute"]
    assert len(series) == 60
    assert sum(m["counts"].get("failed", 0) for m in series) >= 2
