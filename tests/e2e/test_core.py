"""`--core`: a plain NATS subscription, at-most-once, state in memory."""

from __future__ import annotations

import json
from pathlib import Path

from nats.aio.client import Client

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget
from tests.support.nats import NatsServer


async def test_core_mode_fires_rules_and_throttles_in_memory(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str, http_target: HttpTarget
) -> None:
    (workdir / "rules" / "r.yaml").write_text(f"""
rules:
  - name: core-{unique}
    on: [{unique}.alerts.>, {unique}.alerts.Disk]
    throttle: {{key: "{{{{ event.host }}}}", cooldown: 1h}}
    actions:
      - http: {{url: "{http_target.url}/{{{{ event.host }}}}"}}
""")
    results = await Collector.on(nc, f"remediator.results.core-{unique}")
    args = ["--rules", "rules", "--nats", nats_server.url, "--core"]
    proc = DaemonProcess(args, workdir).start()
    try:
        for n, host in enumerate(("a", "a", "b")):
            data = json.dumps({"host": host, "n": n}).encode()
            await nc.publish(f"{unique}.alerts.Disk", data)
        bodies = await results.wait_for(3)
    finally:
        assert proc.stop() == 0
    # Overlapping patterns subscribe once: each event is seen once, not twice.
    assert [b["status"] for b in bodies] == ["succeeded", "throttled", "succeeded"]
    assert sorted(r.path for r in http_target.received) == ["/a", "/b"]
    streams = [info.config.name for info in await nc.jetstream().streams_info()]
    assert "ALERTS" not in streams  # core mode creates no stream
