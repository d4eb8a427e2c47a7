"""One view for the fleet (SPEC §18): two replicas share a durable consumer on a real
nats-server, each handles some of 20 alerts, and each one's `/api/results` and
`/api/overview` show all 20 results, whichever replica published them."""

from __future__ import annotations

import json
from pathlib import Path

from nats.aio.client import Client

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer
from tests.support.poll import until

RULES = """
rules:
  - name: restart-web-{u}
    on: ["{u}.alerts.>"]
    actions:
      - name: tell
        publish: {{subject: "{u}.done", json: {{host: "{{{{ event.host }}}}"}}}}
"""


def replica(workdir: Path, server: NatsServer, unique: str) -> DaemonProcess:
    args = ["--rules", "rules", "--nats", server.url]
    return DaemonProcess([*args, "--stream", f"S{unique}", "--durable", f"D{unique}"], workdir)


def listed(proc: DaemonProcess, rule: str) -> set[str]:
    status, text = proc.get(f"/api/results?rule={rule}&limit=1000")
    assert status == 200, text
    return {str(body["event_id"]) for body in json.loads(text)["results"]}


def counted(proc: DaemonProcess, rule: str) -> dict[str, object]:
    rules = json.loads(proc.get("/api/overview")[1])["rules"]
    return next(r["last_day"] for r in rules if r["rule"] == rule)


async def test_every_replica_lists_the_fleets_results(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    (workdir / "rules" / "r.yaml").write_text(RULES.format(u=unique))
    rule = f"restart-web-{unique}"
    results = await Collector.on(nc, f"remediator.results.{rule}")
    replicas = [replica(workdir, nats_server, unique).start() for _ in range(2)]
    try:
        for n in range(20):
            payload = json.dumps({"host": f"web-{n:02d}"}).encode()
            await nc.jetstream().publish(f"{unique}.alerts.down", payload)
        bodies = await results.wait_for(20)
        published = {str(b["event_id"]) for b in bodies}
        for proc in replicas:
            await until(
                lambda p=proc: listed(p, rule) == published,  # type: ignore[misc]
                10,
                f"replica on port {proc.http_port} to list all 20 results",
            )
        assert counted(replicas[0], rule) == counted(replicas[1], rule)
        assert counted(replicas[0], rule)["fired"] == 20
        # and a replica started later reads the same back, then follows
        late = replica(workdir, nats_server, unique).start()
        replicas.append(late)
        await until(lambda: listed(late, rule) == published, 10, "the late replica's list")
    finally:
        for proc in replicas:
            proc.stop()
