"""A redelivered event never runs a finished rule again (SPEC §5, issue 12 e): the engine
as the daemon builds it, on a real nats-server, its completion record in a real
key-value bucket, the encoded result, written together with the result event."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from remediator.actions.publish import PublishAction
from remediator.engine.engine import Engine
from remediator.engine.guards import Guards
from remediator.metrics import Metrics
from remediator.model import Delivery, Event
from remediator.nats.kvstore import KVStore
from remediator.nats.transport import RESULTS_STREAM, Transport
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from remediator.settings import Settings
from tests.support.collect import stored
from tests.support.nats import NatsServer


async def test_a_redelivery_after_the_run_reports_the_stored_result_and_runs_nothing(
    nats_server: NatsServer, nc: Client, tmp_path: Path, unique: str
) -> None:
    u = unique
    (tmp_path / "r.yaml").write_text(f"""
rules:
  - name: once-{u}
    on: [{u}.alert]
    actions:
      - name: tell
        publish: {{subject: "remediator.notifications.{u}", json: {{n: "{{{{ event.n }}}}"}}}}
""")
    secrets = Secrets({})
    settings = Settings(stream=f"S{u}", durable=f"d{u}")
    transport = Transport(nc, settings)
    await transport.prepare([f"{u}.alert"])
    store = await KVStore.open(nc.jetstream(), f"STATE_{u}", ttl=3600)
    guards = Guards(store=store, verifications=store, publisher=transport)
    metrics = Metrics(CollectorRegistry())
    engine = Engine.build(
        RuleIndex(load_rules([tmp_path / "r.yaml"], Templates(secrets))),
        {"publish": PublishAction(transport)},
        secrets,
        guards=guards,
        metrics=metrics,
        report=transport.publish_result,
    )

    def delivery(n: int) -> Event:
        facts = Delivery(stream=f"S{u}", sequence=7, num_delivered=n)
        payload = {"n": 1}
        return Event(
            subject=f"{u}.alert",
            headers={},
            payload=payload,
            event_id=f"evt-{u}",
            trace_id="trace",
            delivery=facts,
        )

    (first,) = await engine.process(delivery(1))
    (again,) = await engine.process(delivery(2))  # e.g. the ack was lost: redelivered

    steps = await stored(nc, f"remediator.notifications.{u}", stream=RESULTS_STREAM)
    results = await stored(nc, f"remediator.results.once-{u}", stream=RESULTS_STREAM)
    record = await guards.completed(engine.index.rules[0], delivery(2))
    assert first.status == again.status == "succeeded"
    assert again.started_at == first.started_at, "the stored result, not a new run"
    assert len(steps) == 1, "the step ran once"
    assert len(results) == 1, "the result stored once (same Nats-Msg-Id)"
    assert results[0]["status"] == "succeeded" and results[0]["redelivered"] is False
    assert record == results[0], "the completion record is the result event's body"
    deduplicated = {"rule": f"once-{u}", "status": "deduplicated"}
    assert metrics.registry.get_sample_value("remediator_rule_results_total", deduplicated) == 1
