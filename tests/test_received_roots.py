"""`events_received` is labelled by subject root, which the publisher chooses (a rule on
`>` takes any): past SUBJECT_ROOTS distinct roots they share one series, "other"."""

from __future__ import annotations

from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from remediator.engine.engine import Engine
from remediator.metrics import Metrics
from remediator.nats.transport import Transport
from remediator.pipeline import SUBJECT_ROOTS, Pipeline
from remediator.settings import Settings


def no_engine() -> Engine:
    raise AssertionError("not needed to count")


async def test_subject_roots_from_event_data_are_capped(nc: Client) -> None:
    settings = Settings(core=True)
    registry = CollectorRegistry()
    pipeline = Pipeline(Transport(nc, settings), settings, Metrics(registry), no_engine)
    for index in range(SUBJECT_ROOTS + 50):
        pipeline._count_received(f"root{index}.alert")
    pipeline._count_received("root0.again")
    series = [
        sample
        for metric in registry.collect()
        if metric.name == "remediator_events_received"
        for sample in metric.samples
        if sample.name.endswith("_total")
    ]
    assert len(series) == SUBJECT_ROOTS + 1
    counts = {sample.labels["subject_root"]: sample.value for sample in series}
    assert counts["other"] == 50 and counts["root0"] == 2
