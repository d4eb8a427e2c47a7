"""The equality index: `RuleIndex.match` fires exactly what evaluating every rule fires."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from remediator.engine.engine import Engine
from remediator.metrics import Metrics
from remediator.model import Event, Rule, Source
from remediator.rules.conditions import MISSING, build_condition, index_key
from remediator.rules.matching import RuleIndex, evaluate, subject_matches
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates

TEMPLATES = Templates(Secrets({}))
SCALARS = ["a", "b", "5", "5.0", "true", "", "nan", 5, 5.0, 0, 1, True, False, None]
PATHS = ["x", "labels.a", "labels.b", "deep.a.b", "list.0"]
PATTERNS = ["a.b", "a.*", "a.>", ">", "*.b", "a.c", "a.b.c"]
SUBJECTS = ["a.b", "a.c", "a.b.c", "b.b", "c"]
WHENS = [None, None, None, "event.x == 'a'", "event.nope.deeper"]


def naive(rules: tuple[Rule, ...], subject: str, payload: object) -> list[str]:
    """Every rule, in priority order, each evaluated in full; `stop` as the index honours it."""
    fired: list[str] = []
    stopper: Rule | None = None
    for rule in rules:
        if stopper is not None and rule.priority < stopper.priority:
            break
        reached = any(subject_matches(p, subject) for p in rule.subjects)
        if reached and evaluate(rule, payload, {"event": payload}).matched:
            fired.append(rule.name)
            stopper = rule if rule.stop and stopper is None else stopper
    return fired


def random_rule(rng: random.Random, i: int) -> Rule:
    conditions = []
    for path in rng.sample(PATHS, rng.randint(0, 3)):
        op = rng.choice(["eq", "eq", "eq", "ne", "in", "gt", "exists"])
        operand: object = {
            "eq": rng.choice(["a", "b", *SCALARS]),
            "ne": rng.choice(SCALARS),
            "in": rng.sample(SCALARS, 2),
            "gt": rng.choice([0, "4.5"]),
            "exists": rng.choice([True, False]),
        }[op]
        conditions.append(build_condition(path, op, operand))
    when = rng.choice(WHENS)
    return Rule(
        name=f"r{i}",
        subjects=tuple(rng.sample(PATTERNS, rng.randint(1, 2))),
        conditions=tuple(conditions),
        when=TEMPLATES.compile_expression(when, rule=f"r{i}", field="when") if when else None,
        priority=rng.randint(-1, 2),
        stop=rng.random() < 0.15,
        source=Source(file="test.yaml", line=1),
    )


def random_value(rng: random.Random) -> object:
    return rng.choice(["a", "b", "c", *SCALARS, [1], {"a": "a"}])


def random_payload(rng: random.Random) -> dict[str, object]:
    payload: dict[str, object] = {"x": random_value(rng)}
    if rng.random() < 0.9:
        payload["labels"] = {k: random_value(rng) for k in "ab" if rng.random() < 0.8}
    if rng.random() < 0.5:
        payload["deep"] = {"a": {"b": random_value(rng)}}
    if rng.random() < 0.5:
        payload["list"] = [random_value(rng)]
    return payload


@pytest.mark.parametrize("seed", range(5))
def test_match_fires_what_evaluating_every_rule_fires(seed: int) -> None:
    rng = random.Random(seed)
    index = RuleIndex([random_rule(rng, i) for i in range(30)], memo_size=rng.choice([1, 100]))
    for _ in range(300):
        subject, payload = rng.choice(SUBJECTS), random_payload(rng)
        matches = index.match(subject, payload, {"event": payload})
        assert [r.name for r in matches.fired] == naive(index.rules, subject, payload)
        explained = index.explain(subject, payload, {"event": payload})
        assert matches.evaluations == explained.evaluations[: len(matches.evaluations)]


@pytest.mark.parametrize(
    ("operand", "key"),
    [("critical", "critical"), ("5", None), ("nan", "nan"), (5, None), (True, None), (None, None)],
)
def test_only_strings_that_spell_no_number_are_indexed(operand: object, key: object) -> None:
    assert index_key(build_condition("x", "eq", operand)) == key
    assert index_key(build_condition("x", "ne", "critical")) is None


def rule(name: str, match: Mapping[str, object], *, priority: int = 0, stop: bool = False) -> Rule:
    return Rule(
        name=name,
        subjects=("a.b",),
        conditions=tuple(build_condition(path, "eq", value) for path, value in match.items()),
        priority=priority,
        stop=stop,
        source=Source(file="test.yaml", line=1),
    )


def test_numeric_strings_and_booleans_still_compare_by_the_equality_rules() -> None:
    index = RuleIndex([rule("five", {"x": "5"}), rule("yes", {"x": True}), rule("s", {"x": "s"})])
    fired = {
        repr(value): [r.name for r in index.match("a.b", {"x": value}, {}).fired]
        for value in (5, 5.0, "5", "5.0", True, 1, "s", MISSING)
    }
    assert fired == {
        "5": ["five"],
        "5.0": ["five"],
        "'5'": ["five"],
        "'5.0'": [],
        "True": ["yes"],
        "1": [],
        "'s'": ["s"],
        "<missing>": [],
    }


def test_only_matched_and_error_are_counted_per_rule() -> None:
    """A rule the index rules out, or that did not match, costs nothing per event (SPEC §8)."""
    index = RuleIndex(
        [
            rule("critical", {"labels.severity": "critical"}),
            rule("warning", {"labels.severity": "warning"}, stop=True, priority=1),
            rule("low", {}, priority=-1),
            dataclasses.replace(
                rule("broken", {}),
                when=TEMPLATES.compile_expression("event.nope.deeper", rule="broken", field="when"),
            ),
        ]
    )
    metrics = Metrics(CollectorRegistry())
    engine = Engine.build(index, {}, Secrets({}), metrics=metrics)
    for severity in ("critical", "warning", "info"):
        payload = {"labels": {"severity": severity}}
        engine.fired(Event(subject="a.b", headers={}, payload=payload, event_id="e", trace_id="t"))

    def count(name: str, result: str) -> float | None:
        labels = {"rule": name, "result": result}
        return metrics.registry.get_sample_value("remediator_rule_evaluations_total", labels)

    assert [count("critical", r) for r in ("matched", "no_match", "error")] == [1, None, None]
    assert [count("warning", r) for r in ("matched", "no_match", "error")] == [1, None, None]
    assert [count("low", r) for r in ("matched", "no_match", "error")] == [2, None, None]
    # `warning` stops lower priorities: `broken` ran (and raised) for the other two only.
    assert [count("broken", r) for r in ("matched", "no_match", "error")] == [None, None, 2]
