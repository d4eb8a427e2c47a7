"""A rule whose steps ran always ends with a stored result (remediator.engine.storing),
and a first delivery that may be stale finds the stored one. Engine with an in-memory
store; the report (the results stream in the daemon) is our own seam."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from remediator.engine.engine import Engine
from remediator.errors import TransportError
from remediator.model import Delivery, Result
from tests.test_guards import RULE, build, event


class FlakyReport:
    """Refuses the first `failures` results, as a results stream whose node is down."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.stored: list[Result] = []

    async def __call__(self, result: Result, body: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise TransportError("publish to remediator.results.clean: nats: timeout")
        self.stored.append(result)


def with_report(engine: Engine, report: FlakyReport, pauses: list[float]) -> Engine:
    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    engine.report, engine.sleep = report, sleep
    return engine


async def test_steps_that_ran_are_held_until_their_result_is_stored(tmp_path: Path) -> None:
    engine, recorder, _ = build(tmp_path, RULE % "cooldown: 1h")
    report, pauses = FlakyReport(failures=4), []
    (result,) = await with_report(engine, report, pauses).process(event({"host": "a"}, "e1"))
    assert result.status == "succeeded" and len(recorder.runs) == 1
    assert report.stored == [result], "stored in the end, never given up on"
    assert pauses == [0.5, 1.0, 2.0, 4.0]


async def test_nothing_ran_so_the_failure_goes_back_to_the_pipeline(tmp_path: Path) -> None:
    engine, recorder, _ = build(tmp_path, RULE % "cooldown: 1h")
    await engine.process(event({"host": "a"}, "e1"))
    report, pauses = FlakyReport(failures=1), []
    with pytest.raises(TransportError):  # throttled: no step ran; nak and try later
        await with_report(engine, report, pauses).process(event({"host": "a"}, "e2"))
    assert len(recorder.runs) == 1 and pauses == []


async def test_a_stale_first_delivery_of_a_finished_event_runs_nothing(tmp_path: Path) -> None:
    engine, recorder, _ = build(tmp_path, RULE % "cooldown: 1h")
    (first,) = await engine.process(event({"host": "a"}, "same"))
    held = Delivery(stream="S", sequence=1, num_delivered=1, may_be_stale=True)
    stale = dataclasses.replace(event({"host": "a"}, "same"), delivery=held)
    (again,) = await engine.process(stale)
    assert len(recorder.runs) == 1
    assert again.to_json() == first.to_json()
