"""Rules that ask Prometheus, with no Prometheus: validate, test cases with `answers`,
explain, replay and dry runs say what they would ask and never guess the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remediator.engine.runner import UNKNOWN
from remediator.errors import RuleErrors
from remediator.model import Event
from remediator.nats.history import Stored
from remediator.offline.explain import explain
from remediator.offline.replay import Replayer, replay, text
from remediator.offline.rulecases import run_cases
from remediator.offline.sandbox import offline_engine, offline_rules, offline_secrets

QUERY = 'sum(errors_ratio{service="{{ event.labels.service }}"})'
RULES = f"""
rules:
  - name: check-then-restart
    on: [alerts.HighErrors]
    actions:
      - name: errors
        prometheus: {{query: '{QUERY}'}}
      - name: restart
        when: "results.errors.value is not none and results.errors.value > 0.05"
        http: {{method: POST, url: "https://deploy.example/restart/{{{{ event.labels.service }}}}"}}
    verify: {{query: '{QUERY}', below: 0.01, within: 10m, every: 30s}}
"""
RENDERED = 'sum(errors_ratio{service="web"})'


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    (tmp_path / "errors.yaml").write_text(RULES)
    return tmp_path / "errors.yaml"


def case(name: str, answers: str | None, expect: str) -> str:
    given = f"    answers: {answers}\n" if answers is not None else ""
    return (
        f"  - name: {name}\n"
        "    subject: alerts.HighErrors\n"
        "    event: {labels: {service: web}}\n"
        f"{given}"
        f"    expect: {expect}\n"
    )


async def run(rules: Path, *cases: str) -> list[tuple[bool, list[str]]]:
    path = rules.with_name("errors.cases.yaml")
    path.write_text("cases:\n" + "".join(cases))
    report = await run_cases([rules], [path], offline_secrets({}, {}))
    return [(o.passed, o.problems) for o in report.outcomes]


async def test_a_case_s_answer_decides_the_next_step(rules: Path) -> None:
    restarts = "{fired: [check-then-restart], steps: {check-then-restart: {restart: {url: x}}}}"
    outcomes = await run(
        rules,
        case("above", "{errors: 0.07}", restarts.replace("url: x", "method: POST")),
        case("below", "{errors: 0.002}", "{steps: {check-then-restart: {restart: skipped}}}"),
        case("empty", "{errors: null}", "{steps: {check-then-restart: {restart: skipped}}}"),
        case(
            "samples",
            "{errors: [{labels: {service: web}, value: 0.5}, {value: 0.01}]}",
            "{steps: {check-then-restart: {errors: {value: 0.5, query: '"
            + RENDERED
            + "'}, restart: {method: POST}}}}",
        ),
        case(
            "wrong", "{errors: 0.002}", "{steps: {check-then-restart: {restart: {method: POST}}}}"
        ),
    )
    assert [passed for passed, _ in outcomes] == [True, True, True, True, False]
    assert "expected the step to run, but it was skipped" in outcomes[4][1][0]


async def test_a_query_without_an_answer_leaves_its_dependants_undecided(rules: Path) -> None:
    ((passed, problems),) = await run(rules, case("none", None, "{fired: [check-then-restart]}"))
    assert not passed
    (problem,) = problems
    assert "step restart: undecided: depends on results.errors.value" in problem
    assert "answers: {STEP: value}" in problem


async def test_answers_are_checked_with_the_case_file(rules: Path) -> None:
    with pytest.raises(RuleErrors) as caught:
        await run(rules, case("bad", "{errors: high}", "{fired: []}"))
    (error,) = caught.value.errors
    assert error.line == 5 and error.field == "cases[0].answers.errors"


def test_explain_says_what_it_would_ask(rules: Path) -> None:
    secrets = offline_secrets({}, {})
    loaded = offline_rules([rules], secrets)
    event = Event(
        subject="alerts.HighErrors",
        headers={},
        payload={"labels": {"service": "web"}},
        event_id="e",
        trace_id="t",
    )
    (found,) = explain(offline_engine(loaded, secrets), loaded, event)
    assert found.fires
    assert found.why == f"matches (priority 0); would ask: {RENDERED}"


async def test_a_dry_run_asks_nothing_and_guesses_nothing(rules: Path) -> None:
    secrets = offline_secrets({}, {})
    engine = offline_engine(offline_rules([rules], secrets), secrets)
    payload = {"labels": {"service": "web"}}
    event = Event(
        subject="alerts.HighErrors", headers={}, payload=payload, event_id="e", trace_id="t"
    )
    (result,) = await engine.process(event)
    errors, restart = result.steps
    assert result.status == "dry_run"
    assert (errors.status, errors.output) == ("dry_run", {"would_ask": RENDERED})
    assert restart.status == "dry_run"
    assert restart.output == {
        UNKNOWN: "depends on results.errors.value, which a dry run does not know"
    }


async def test_replay_counts_undecided_runs_and_lists_the_queries(rules: Path) -> None:
    secrets = offline_secrets({}, {})
    target = Replayer.build(offline_rules([rules], secrets), secrets, None)

    async def history() -> AsyncIterator[Stored]:
        for sequence, service in enumerate(["web", "web", "api"], 1):
            data = json.dumps({"labels": {"service": service}}).encode()
            yield Stored(
                stream="S",
                sequence=sequence,
                subject="alerts.HighErrors",
                headers={},
                data=data,
                time=1_700_000_000.0 + sequence,
            )

    report = await replay(history(), "S", target)
    assert target.counts["check-then-restart"]["undecided"] == 3
    assert target.counts["check-then-restart"]["ran"] == 0
    shown = text(report)
    assert f"  check-then-restart: {RENDERED} (2x)" in shown
    assert '  check-then-restart: sum(errors_ratio{service="api"}) (1x)' in shown


@pytest.mark.parametrize(
    ("verify", "field", "message"),
    [
        ("{query: up, within: 5m}", "verify", "needs below or above"),
        ("{query: up, below: 1, above: 2, within: 5m}", "verify", "use only one of below, above"),
        ("{query: up, below: 1}", "verify.query", "query needs within as well"),
        ("{resolved_within: 5m, below: 1}", "verify.below", "below needs query as well"),
        (
            "{resolved_within: 5m, query: up, below: 1, within: 1m}",
            "verify",
            "use only one of resolved_within, query",
        ),
        ("{query: up, below: 1, within: 1m, every: 2m}", "verify.every", "it would never ask"),
        ("{query: '{{ event.x', below: 1, within: 1m}", "verify.query", "template syntax error"),
    ],
)
def test_validate_checks_the_verify_form(
    tmp_path: Path, verify: str, field: str, message: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "rules:\n"
        "  - name: r\n"
        "    on: [a.b]\n"
        "    actions: [{prometheus: {query: up, url: 'http://prom:9090'}}]\n"
        f"    verify: {verify}\n"
    )
    with pytest.raises(RuleErrors) as caught:
        offline_rules([path], offline_secrets({}, {}))
    (error,) = caught.value.errors
    assert (error.file, error.line, error.field) == (str(path), 5, field)
    assert message in error.message


@pytest.mark.parametrize(
    ("step", "field", "message"),
    [
        (
            "{prometheus: {url: 'http://p'}}",
            "actions[0].prometheus",
            "missing required key 'query'",
        ),
        ("{prometheus: {query: up, url: 'p:9090'}}", "actions[0].prometheus.url", "not an http"),
        ("{prometheus: {query: up, step: 5}}", "actions[0].prometheus.step", "unknown key"),
    ],
)
def test_validate_checks_the_step(tmp_path: Path, step: str, field: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"rules:\n  - name: r\n    on: [a.b]\n    actions:\n      - {step}\n")
    with pytest.raises(RuleErrors) as caught:
        offline_rules([path], offline_secrets({}, {}))
    (error,) = caught.value.errors
    assert (error.line, error.field) == (5, field)
    assert message in error.message
