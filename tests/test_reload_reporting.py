"""A reload is reported (gauge, counter) only once the new rules are in force (issue 12 f)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from remediator.daemon import Daemon
from remediator.nats.connection import connect
from remediator.nats.transport import Transport
from remediator.settings import Settings
from tests.support.nats import NatsServer


def rules_file(names: list[str], u: str) -> str:
    body = "".join(
        f"""
  - name: {name}
    on: [{u}.{name}]
    actions:
      - publish: {{subject: "{u}.out", json: {{}}}}
"""
        for name in names
    )
    return "rules:" + body


async def test_the_gauge_never_runs_ahead_of_the_rules_in_force(
    nats_server: NatsServer, tmp_path: Path, unique: str
) -> None:
    u = unique
    path = tmp_path / "rules.yaml"
    path.write_text(rules_file(["a"], u))
    settings = Settings(
        rules=(str(path),), nats_url=nats_server.url, stream=f"S{u}", durable=f"d{u}"
    )
    daemon = Daemon(settings, {})
    daemon.transport = Transport(await connect(settings, nats_server.url), settings)
    registry = daemon.registry

    def gauge() -> float | None:
        return registry.get_sample_value("remediator_rules_loaded")

    def reloads() -> float:
        return registry.get_sample_value("remediator_rules_reloads_total", {"result": "ok"}) or 0

    try:
        assert await daemon.reload()
        assert daemon.ruleset is not None and gauge() == 1
        path.write_text(rules_file(["a", "b", "c"], u))
        reload = asyncio.create_task(daemon.reload())
        seen: list[tuple[float | None, int, float]] = []
        while not reload.done():
            # Every turn of the loop while the reload waits on NATS: what a scraper could see.
            seen.append((gauge(), len(daemon.ruleset.rules), reloads()))
            await asyncio.sleep(0)
        assert await reload
        seen.append((gauge(), len(daemon.ruleset.rules), reloads()))
    finally:
        await daemon.transport.close()

    assert len(seen) > 2, "the reload waited on the server at least once"
    for gauge_value, in_force, ok in seen:
        assert gauge_value == in_force, seen
        assert ok == (1 if in_force == 1 else 2), seen
    assert seen[-1] == (3, 3, 2)
