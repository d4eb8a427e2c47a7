"""Verification by query, end to end: daemons as subprocesses on a real nats-server ask a
real Prometheus (scraping an exporter the test controls) until the fix shows, or escalate.

Pending verifications live in the REMEDIATOR_VERIFY bucket: a daemon killed while one is
pending is replaced by another process, which asks on, and the verification ends once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.errors import NoKeysError

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget
from tests.support.nats import NatsServer
from tests.support.poll import until
from tests.support.prometheus import Prometheus, running_prometheus


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with running_prometheus(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


def rule(unique: str, name: str, within: str, target: str) -> str:
    query = f'max(errors_{unique}{{service="{{{{ event.service }}}}"}})'
    return f"""
  - name: {name}-{unique}
    on: [{unique}.{name}]
    throttle: {{key: "{{{{ event.service }}}}", max_runs: 5, window: 1h}}
    actions:
      - name: errors
        prometheus: {{query: '{query}'}}
      - name: restart
        when: "results.errors.value is not none and results.errors.value > 0.05"
        http: {{url: "{target}/restart/{{{{ event.service }}}}"}}
    verify:
      query: '{query}'
      below: 0.01
      within: {within}
      every: 1s
      escalate: {unique}.escalations
"""


def replica(workdir: Path, nats_url: str, unique: str) -> DaemonProcess:
    args = ["--rules", "rules", "--nats", nats_url, "--config", "config.yaml"]
    return DaemonProcess([*args, "--stream", f"S{unique}", "--durable", f"D{unique}"], workdir)


def setup(workdir: Path, prometheus: Prometheus, text: str) -> None:
    (workdir / "rules" / "verify.yaml").write_text("rules:" + text)
    (workdir / "config.yaml").write_text(f"prometheus: {{url: '{prometheus.url}'}}\n")


async def publish(nc: Client, subject: str, payload: dict[str, object]) -> None:
    await nc.jetstream().publish(subject, json.dumps(payload).encode())


async def pending(nc: Client, prefix: str) -> list[str]:
    kv = await nc.jetstream().key_value("REMEDIATOR_VERIFY")
    try:
        return [k for k in await kv.keys() if k.startswith(prefix)]
    except NoKeysError:
        return []


async def test_two_replicas_verify_by_query_or_escalate_once(
    nc: Client,
    nats_server: NatsServer,
    workdir: Path,
    unique: str,
    http_target: HttpTarget,
    prometheus: Prometheus,
) -> None:
    exporter = prometheus.exporter
    exporter.set(f"errors_{unique}", 0.5, service="web")
    exporter.set(f"errors_{unique}", 0.5, service="api")
    await prometheus.sees(f'errors_{unique}{{service="api"}}', 0.5)
    setup(
        workdir,
        prometheus,
        rule(unique, "fixed", "120s", http_target.url)
        + rule(unique, "stuck", "3s", http_target.url),
    )
    verified = await Collector.on(nc, f"remediator.verified.fixed-{unique}")
    escalations = await Collector.on(nc, f"{unique}.escalations")
    fixed = await Collector.on(nc, f"remediator.results.fixed-{unique}")
    stuck = await Collector.on(nc, f"remediator.results.stuck-{unique}")
    replicas = [replica(workdir, nats_server.url, unique).start() for _ in range(2)]
    try:
        await publish(nc, f"{unique}.fixed", {"service": "web"})
        await publish(nc, f"{unique}.stuck", {"service": "api"})
        (ran,) = await fixed.wait_for(1)
        await stuck.wait_for(1)
        (late,) = await escalations.wait_for(1)  # api stays at 0.5: never below 0.01
        assert await pending(nc, f"fixed-{unique}.") != []  # web is still being asked
        exporter.set(f"errors_{unique}", 0.001, service="web")  # the fix shows
        (ok,) = await verified.wait_for(1, timeout=60)
        left = await pending(nc, "")
        # The stuck service ran out of verifications: its circuit is open.
        await publish(nc, f"{unique}.stuck", {"service": "api"})
        again = (await stuck.wait_for(2))[1]
    finally:
        for proc in replicas:
            proc.stop()
    assert ok["query"] == f'max(errors_{unique}{{service="web"}})'
    assert ran["status"] == "succeeded" and ran["steps"][0]["output"]["value"] == 0.5
    assert ok["value"] == pytest.approx(0.001) and ok["key"]
    assert late["reason"] == "not_resolved" and late["rule"] == f"stuck-{unique}"
    assert "the query did not hold (below 0.01) in time" in str(late["detail"])
    assert again["status"] == "throttled" and "not verified" in str(again["reason"])
    assert [k for k in left if unique in k] == []
    assert len(verified.messages) == 1 and len(escalations.messages) == 1
    assert sorted(r.path for r in http_target.received) == ["/restart/api", "/restart/web"]


async def test_a_daemon_killed_mid_verification_is_replaced_and_it_ends_once(
    nc: Client,
    nats_server: NatsServer,
    workdir: Path,
    unique: str,
    http_target: HttpTarget,
    prometheus: Prometheus,
) -> None:
    exporter = prometheus.exporter
    exporter.set(f"errors_{unique}", 0.5, service="web")
    await prometheus.sees(f'errors_{unique}{{service="web"}}', 0.5)
    setup(workdir, prometheus, rule(unique, "fixed", "120s", http_target.url))
    verified = await Collector.on(nc, f"remediator.verified.fixed-{unique}")
    escalations = await Collector.on(nc, f"{unique}.escalations")
    results = await Collector.on(nc, f"remediator.results.fixed-{unique}")
    first = replica(workdir, nats_server.url, unique).start()
    try:
        await publish(nc, f"{unique}.fixed", {"service": "web"})
        await results.wait_for(1)
        await until(lambda: "verification query gave 0.5" in first.logs(), 30, "a first ask")
    finally:
        first.kill()  # no drain, no goodbye: the record stays in the store
    assert await pending(nc, f"fixed-{unique}.") != []
    exporter.set(f"errors_{unique}", 0.001, service="web")
    second = replica(workdir, nats_server.url, unique).start()
    try:
        (ok,) = await verified.wait_for(1, timeout=60)
        left = await pending(nc, f"fixed-{unique}.")
    finally:
        second.stop()
    assert ok["value"] == pytest.approx(0.001)
    assert left == []  # ended by a compare-and-set delete: nobody else can end it again
    assert len(verified.messages) == 1 and escalations.messages == []
    assert len(http_target.received) == 1  # the fix ran once; only the question went on
