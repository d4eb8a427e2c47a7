"""Hostile input, round two (issue 24), the application's half: against a real
nats-server and a real daemon subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from nats.aio.client import Client

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer

SECRET = 'p"a ss=w|rd%41é'


def start(workdir: Path, url: str, unique: str, rules: str, *extra: str) -> DaemonProcess:
    (workdir / "rules" / "r.yaml").write_text(rules)
    args = ["--rules", "rules", "--nats", url, "--stream", f"S{unique}", "--durable", f"D{unique}"]
    return DaemonProcess([*args, *extra], workdir).start()


async def test_a_750_kb_log_against_a_backtracking_regex_delays_nothing(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """`error.*timeout` is quadratic for Python's re on a large field that does not match (one
    such event froze a daemon for minutes, and its redeliveries the next replica), and
    `a*a*a*a*a*a*b` takes 50 s on 90 characters; with RE2 the events after them all end with
    a result, and so does the big one that matches."""
    rules = f"""
rules:
  - name: slow-{unique}
    on: ["{unique}.ev.>"]
    match:
      log: {{regex: "error.*timeout"}}
    actions:
      - publish: {{subject: "{unique}.out", json: {{ok: true}}}}
  - name: slower-{unique}
    on: ["{unique}.ev.>"]
    match:
      x: {{regex: "a*a*a*a*a*a*b"}}
    actions:
      - publish: {{subject: "{unique}.out", json: {{ok: true}}}}
"""
    results = await Collector.on(nc, f"remediator.results.slow-{unique}")
    proc = start(workdir, nats_server.url, unique, rules)
    try:
        js = nc.jetstream()
        big = ("error " + "y" * 100) * 7070
        await js.publish(f"{unique}.ev.nomatch", json.dumps({"log": big}).encode())
        await js.publish(f"{unique}.ev.aaa", json.dumps({"x": "a" * 90}).encode())
        await js.publish(f"{unique}.ev.big", json.dumps({"log": big + "timeout"}).encode())
        for n in range(5):
            await js.publish(f"{unique}.ev.small{n}", b'{"log": "error: read timeout"}')
        bodies = await results.wait_for(6)
        assert proc.get("/healthz")[0] == 200
    finally:
        assert proc.stop() == 0
    assert sorted(str(b["subject"]) for b in bodies)[0] == f"{unique}.ev.big"
    assert {b["status"] for b in bodies} == {"succeeded"}


async def test_the_stored_alert_is_served_masked_and_any_event_id_can_be_read(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    """An alert quoting a secret a rule sends comes back from the API masked; the events
    with ids `.` and `..` are readable by the query form the console uses."""
    rules = f"""
rules:
  - name: tell-{unique}
    on: ["{unique}.ev.>"]
    actions:
      - publish: {{subject: "{unique}.out", json: {{t: "{{{{ secret('S') }}}}"}}}}
"""
    (workdir / "rules" / "r.yaml").write_text(rules)
    args = ["--rules", "rules", "--nats", nats_server.url]
    args += ["--stream", f"S{unique}", "--durable", f"D{unique}"]
    proc = DaemonProcess(args, workdir, env={"S": SECRET}).start()
    results = await Collector.on(nc, f"remediator.results.tell-{unique}")
    try:
        js = nc.jetstream()
        for msg_id in ("ok-1", ".", ".."):
            body = json.dumps({"quoted": f"token={SECRET}", "raw": SECRET}).encode()
            await js.publish(f"{unique}.ev.x", body, headers={"Nats-Msg-Id": msg_id})
        await results.wait_for(3)
        answers = {
            i: (proc.get(f"/api/event?id={quote(i)}"), proc.get(f"/api/event/alert?id={quote(i)}"))
            for i in ("ok-1", ".", "..")
        }
        by_path = proc.get("/api/results/ok-1/event")
    finally:
        assert proc.stop() == 0
    for event_id, ((status, text), (alert_status, alert)) in answers.items():
        assert status == 200 and json.loads(text)["results"][0]["event_id"] == event_id
        assert alert_status == 200 and SECRET not in alert
        assert json.loads(alert)["event"] == {"quoted": "token=***", "raw": "***"}
    assert by_path[0] == 200 and SECRET not in by_path[1] and "***" in by_path[1]
