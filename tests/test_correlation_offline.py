"""Rules over several events offline: `remediator test` sequences on a simulated clock,
`explain`'s window state, and `replay` counting windows on the stored times."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remediator.errors import RuleErrors
from remediator.nats.history import Stored
from remediator.offline.explain import explain_event
from remediator.offline.replay import Replayer, replay
from remediator.offline.rulecases import run_cases
from remediator.offline.sandbox import offline_rules, offline_secrets

RULES = """
rules:
  - name: burst
    on: [svc.error]
    correlate: {count: 3, within: 5m, group_by: "{{ event.svc }}"}
    actions:
      - publish: {subject: ops, json: {n: "{{ correlated | length }}", svc: "{{ event.svc }}"}}
  - name: quiet
    on: [job.done]
    absent: {within: 1h}
    actions:
      - publish: {subject: ops, json: {silent_for: "{{ silent_for }}", last: "{{ event.n }}"}}
"""


def write(tmp_path: Path, cases: str) -> tuple[Path, Path]:
    (tmp_path / "r.yaml").write_text(RULES)
    (tmp_path / "r.cases.yaml").write_text(textwrap.dedent(cases))
    return tmp_path / "r.yaml", tmp_path / "r.cases.yaml"


async def report_of(tmp_path: Path, cases: str) -> str:
    rules, case_file = write(tmp_path, cases)
    report = await run_cases([rules], [case_file], offline_secrets({}, {}))
    return report.text()


async def test_a_sequence_fires_on_the_simulated_clock(tmp_path: Path) -> None:
    text = await report_of(
        tmp_path,
        """
        cases:
          - name: three identical errors fire once
            subject: svc.error
            events:
              - event: {svc: a}
              - {after: 1m, event: {svc: a}}
              - {after: 1m, event: {svc: a}}
            expect:
              fired: [burst]
              steps: {burst: {publish-0: {json: {n: 3, svc: a}}}}
          - name: an hour of silence after the last report fires, not before
            subject: job.done
            events:
              - event: {n: 1}
              - {after: 50m, event: {n: 2}}
            advance: 59m
            expect: {fired: []}
          - name: then it does, with the last event
            subject: job.done
            events:
              - event: {n: 1}
              - {after: 50m, event: {n: 2}}
            advance: 61m
            expect:
              fired: [quiet]
              steps: {quiet: {publish-0: {json: {silent_for: 3660.0, last: 2}}}}
        """,
    )
    assert text.endswith("3 case(s): 3 passed, 0 failed"), text


async def test_a_sequence_that_should_not_fire_fails_the_case(tmp_path: Path) -> None:
    text = await report_of(
        tmp_path,
        """
        cases:
          - name: spread over more than the window
            subject: svc.error
            events:
              - event: {svc: a}
              - {after: 4m, event: {svc: a}}
              - {after: 4m, event: {svc: a}}
            expect: {fired: [burst]}
        """,
    )
    assert "FAIL" in text and "did not fire: burst" in text


async def test_case_problems_name_their_line(tmp_path: Path) -> None:
    with pytest.raises(RuleErrors) as caught:
        await report_of(
            tmp_path,
            """
            cases:
              - name: bad
                subject: svc.error
                events:
                  - {after: soon, event: {svc: a}}
                expect: {fired: []}
            """,
        )
    (error,) = caught.value.errors
    assert error.line == 6 and "soon" in error.message


def test_explain_reports_the_window_of_the_group(tmp_path: Path) -> None:
    rules, _ = write(tmp_path, "cases: []\n")
    secrets = offline_secrets({}, {})
    text = explain_event([rules], "svc.error", {}, b'{"svc": "web"}', secrets)
    assert "burst" in text and "window of group 'web': 1 of 3 within 5m" in text
    text = explain_event([rules], "job.done", {}, b"{}", secrets)
    assert "restarts the silence timer of its one group: fires after 1h" in text


async def test_replay_honours_windows_on_the_stored_times(tmp_path: Path) -> None:
    rules, _ = write(tmp_path, "cases: []\n")
    secrets = offline_secrets({}, {})
    target = Replayer.build(offline_rules([rules], secrets), secrets, None)
    start = 1_700_000_000.0
    history = [
        ("svc.error", start, {"svc": "a"}),
        ("svc.error", start + 60, {"svc": "a"}),
        ("svc.error", start + 600, {"svc": "a"}),  # the first two left the window
        ("svc.error", start + 660, {"svc": "a"}),
        ("svc.error", start + 700, {"svc": "a"}),  # three within 5m: fires
        ("job.done", start + 800, {"n": 1}),
        ("svc.error", start + 800 + 3601, {"svc": "b"}),  # after an hour of silence
    ]
    messages = [
        Stored(stream="S", sequence=i, subject=s, headers={}, data=json.dumps(p).encode(), time=t)
        for i, (s, t, p) in enumerate(history, 1)
    ]

    async def feed() -> AsyncIterator[Stored]:
        for message in messages:
            yield message

    await replay(feed(), "S", target)
    assert target.counts["burst"]["ran"] == 1
    assert target.counts["quiet"]["ran"] == 1
