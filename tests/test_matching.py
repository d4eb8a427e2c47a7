"""Matching: subject patterns, payload paths, operators, verdicts and the rule index."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from remediator.model import Condition, Rule, Source
from remediator.rules.conditions import MISSING, build_condition, resolve
from remediator.rules.matching import RuleIndex, evaluate, subject_matches, subject_problem
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates

TEMPLATES = Templates(Secrets({}))


def make_rule(
    name: str,
    *on: str,
    priority: int = 0,
    stop: bool = False,
    match: Mapping[str, object] | None = None,
    when: str | None = None,
) -> Rule:
    conditions: list[Condition] = []
    for path, spec in (match or {}).items():
        ops = spec.items() if isinstance(spec, dict) else [("eq", spec)]
        conditions.extend(build_condition(path, op, operand) for op, operand in ops)
    return Rule(
        name=name,
        subjects=on or ("alerts.cpu",),
        conditions=tuple(conditions),
        when=TEMPLATES.compile_expression(when, rule=name, field="when") if when else None,
        priority=priority,
        stop=stop,
        source=Source(file="test.yaml", line=1),
    )


def holds(op: str, operand: object, value: object) -> bool:
    return build_condition("x", op, operand).test(value)


# --- subjects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("high.cpu.alert", "high.cpu.alert", True),
        ("high.cpu.alert", "high.cpu", False),
        ("high.*.alert", "high.cpu.alert", True),
        ("high.*.alert", "high.cpu.mem.alert", False),
        ("*", "high", True),
        ("*", "high.cpu", False),
        ("high.>", "high.cpu", True),
        ("high.>", "high.cpu.alert.now", True),
        ("high.>", "high", False),
        (">", "anything.at.all", True),
        ("*.cpu.>", "high.cpu.alert", True),
        ("*.cpu.>", "high.cpu", False),
    ],
)
def test_subject_matches(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("a..b", "empty token"),
        ("a.b.", "empty token"),
        ("", "non-empty"),
        ("a b", "whitespace"),
        ("a.>.b", "'>' may only be the last token"),
        ("a.b*", "whole tokens"),
        # Past the server's control line (SUB or PUB): it would close the connection.
        ("alerts." + "x" * 4000, "over 3072 bytes"),
    ],
)
def test_subject_problems(pattern: str, problem: str) -> None:
    found = subject_problem(pattern)
    assert found is not None and problem in found


def test_literal_subjects_refuse_wildcards() -> None:
    assert subject_problem("a.*.c") is None
    assert subject_problem("a.*.c", wildcards=False) is not None


# --- paths -----------------------------------------------------------------------------

PAYLOAD = {
    "labels": {"severity": "critical", "empty": None},
    "alerts": [{"labels": {"instance": "web-1"}}, {"labels": {"instance": "web-2"}}],
    "value": "97.5",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("labels.severity", "critical"),
        ("labels.empty", None),
        ("alerts.0.labels.instance", "web-1"),
        ("alerts.1.labels.instance", "web-2"),
        ("alerts.-1.labels.instance", "web-2"),
        ("alerts.2.labels.instance", MISSING),
        ("alerts.first", MISSING),
        ("labels.severity.more", MISSING),
        ("nothing", MISSING),
        ("value", "97.5"),
    ],
)
def test_resolve(path: str, expected: object) -> None:
    assert resolve(PAYLOAD, path) == expected
    assert resolve(PAYLOAD, tuple(path.split("."))) == expected


# --- operators -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "operand", "value", "expected"),
    [
        ("eq", "critical", "critical", True),
        ("eq", "critical", "warning", False),
        ("eq", 5, 5.0, True),
        ("eq", 500, "500", True),  # labels are strings; YAML reads `500` as a number
        ("eq", "500", 500, True),
        ("eq", "5.0", "5", False),  # two strings compare as strings
        ("eq", True, 1, False),
        ("eq", 1, True, False),
        ("eq", True, True, True),
        ("eq", "true", True, False),
        ("eq", None, None, True),
        ("eq", None, "", False),
        ("ne", "critical", "warning", True),
        ("ne", "critical", "critical", False),
        ("ne", 5, "5", False),
        ("gt", 90, 97.5, True),
        ("gt", 90, "97.5", True),
        ("gt", 90, 90, False),
        ("gt", "90", 91, True),
        ("gte", 90, 90, True),
        ("gte", 90, "abc", False),
        ("gte", 90, True, False),
        ("gte", 90, None, False),
        ("gte", 90, [100], False),
        ("gt", 0, "nan", False),
        ("lt", 101, "100", True),
        ("lt", 101, 101, False),
        ("lte", 101, 101, True),
        ("lte", 1.5, "1.5", True),
        ("in", ["prod", "staging"], "prod", True),
        ("in", ["prod", "staging"], "dev", False),
        ("in", [200, 204], "204", True),
        ("in", [200, 204], 204.0, True),
        ("in", ["200"], 200, True),
        ("in", [True, None], None, True),
        ("in", [1], True, False),
        ("in", ["a"], ["a"], False),
        ("not_in", ["prod"], "dev", True),
        ("not_in", ["prod"], "prod", False),
        ("regex", "^web-\\d+$", "web-12", True),
        ("regex", "web", "my-web-1", True),  # search, not match
        ("regex", "^web", "my-web-1", False),
        ("regex", "1", 1, False),  # only strings are searched
        ("exists", True, "x", True),
        ("exists", True, None, True),
        ("exists", False, None, False),
    ],
)
def test_operators(op: str, operand: object, value: object, expected: bool) -> None:
    assert holds(op, operand, value) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "regex"])
def test_a_missing_path_matches_no_operator(op: str) -> None:
    operand: object = {"in": ["x"], "not_in": ["x"], "regex": "x"}.get(op, 1)
    assert holds(op, operand, MISSING) is False


def test_exists_false_is_the_one_match_for_a_missing_path() -> None:
    assert holds("exists", False, MISSING) is True
    assert holds("exists", True, MISSING) is False


@pytest.mark.parametrize(
    ("op", "operand", "message"),
    [
        ("gt", "lots", "expected a number"),
        ("regex", "(", "bad regular expression"),
        ("in", "prod", "expected a list"),
        ("exists", "yes", "expected true or false"),
        ("like", "x", "unknown operator 'like'"),
    ],
)
def test_bad_operands_fail_at_build_time(op: str, operand: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_condition("x", op, operand)


# --- verdicts --------------------------------------------------------------------------


def test_every_condition_must_hold() -> None:
    rule = make_rule("r", match={"value": {"gte": 90, "lt": 101}, "labels.severity": "critical"})
    assert evaluate(rule, PAYLOAD, {}).matched
    verdict = evaluate(rule, PAYLOAD | {"value": 101}, {})
    assert not verdict.matched
    assert verdict.failed == "match value lt 101: saw 101"
    assert verdict.seen == 101 and verdict.error is None


def test_failed_names_the_condition_and_what_was_seen() -> None:
    rule = make_rule("r", match={"labels.severity": "critical", "labels.env": "prod"})
    verdict = evaluate(rule, {"labels": {"severity": "warning"}}, {})
    assert verdict.failed == "match labels.severity eq 'critical': saw 'warning'"
    verdict = evaluate(rule, {"labels": {"severity": "critical"}}, {})
    assert verdict.failed == "match labels.env eq 'prod': saw nothing (the path is missing)"
    assert verdict.seen is MISSING


def test_when_true_false_and_raising() -> None:
    rule = make_rule("r", when="event.value > 3")
    assert evaluate(rule, {}, {"event": {"value": 4}}).matched
    verdict = evaluate(rule, {}, {"event": {"value": 2}})
    assert (verdict.matched, verdict.failed) == (False, "when: event.value > 3 was false")
    verdict = evaluate(rule, {}, {"event": {}})
    assert not verdict.matched and verdict.error is not None
    assert "undefined" in verdict.error
    assert verdict.failed is not None and verdict.failed.startswith("when: event.value > 3 raised")


def test_when_runs_only_after_match_holds() -> None:
    rule = make_rule("r", match={"ok": True}, when="event.missing.attribute")
    verdict = evaluate(rule, {"ok": False}, {"event": {}})
    assert verdict.error is None and verdict.condition is not None


def test_when_uses_truthiness() -> None:
    rule = make_rule("r", when="event.hosts")
    assert evaluate(rule, {}, {"event": {"hosts": [1]}}).matched
    assert not evaluate(rule, {}, {"event": {"hosts": []}}).matched


# --- the index -------------------------------------------------------------------------


def names(rules: tuple[Rule, ...]) -> list[str]:
    return [rule.name for rule in rules]


def test_candidates_are_only_rules_whose_subject_can_match() -> None:
    index = RuleIndex(
        [
            make_rule("exact", "high.cpu.alert"),
            make_rule("star", "high.*.alert"),
            make_rule("tail", "high.>"),
            make_rule("root", ">"),
            make_rule("other", "low.cpu.alert"),
            make_rule("short", "high.*"),
        ]
    )
    assert names(index.candidates("high.cpu.alert")) == ["exact", "star", "tail", "root"]
    assert names(index.candidates("high.cpu")) == ["tail", "root", "short"]
    assert names(index.candidates("low.cpu.alert")) == ["root", "other"]
    assert names(index.candidates("high")) == ["root"]


def test_candidates_come_in_priority_order_then_load_order_each_once() -> None:
    index = RuleIndex(
        [
            make_rule("low", "a.b", priority=-1),
            make_rule("first", "a.b", "a.*", "a.b"),
            make_rule("high", "a.>", priority=5),
            make_rule("second", "a.b"),
        ]
    )
    assert names(index.candidates("a.b")) == ["high", "first", "second", "low"]
    assert names(index.rules) == ["high", "first", "second", "low"]


def test_candidates_are_memoized_and_the_memo_is_bounded() -> None:
    index = RuleIndex([make_rule("r", "a.*")], memo_size=2)
    first = index.candidates("a.b")
    assert index.candidates("a.b") is first
    for subject in ("a.c", "a.d", "a.e"):
        index.candidates(subject)
    assert len(index._memo) <= 2


def test_match_fires_every_matching_rule_in_priority_order() -> None:
    index = RuleIndex(
        [
            make_rule("critical", match={"severity": "critical"}),
            make_rule("any", priority=-5),
            make_rule("urgent", priority=5, match={"value": {"gt": 90}}),
        ]
    )
    matches = index.match("alerts.cpu", {"severity": "critical", "value": 95}, {})
    assert names(matches.fired) == ["urgent", "critical", "any"]
    assert [r.name for r, _ in matches.evaluations] == ["urgent", "critical", "any"]
    matches = index.match("alerts.cpu", {"severity": "warning", "value": 50}, {})
    assert names(matches.fired) == ["any"]
    verdicts = {r.name: v for r, v in matches.evaluations}
    assert verdicts["urgent"].failed == "match value gt 90: saw 50"


def test_stop_stops_lower_priority_rules_only() -> None:
    index = RuleIndex(
        [
            make_rule("higher", priority=10),
            make_rule("stopper", priority=5, stop=True),
            make_rule("same", priority=5),
            make_rule("lower", priority=1),
        ]
    )
    matches = index.match("alerts.cpu", {}, {})
    assert names(matches.fired) == ["higher", "stopper", "same"]
    assert matches.stopped_by is not None and matches.stopped_by.name == "stopper"
    assert [r.name for r, _ in matches.evaluations] == ["higher", "stopper", "same"]


def test_a_stop_rule_that_does_not_match_stops_nothing() -> None:
    index = RuleIndex(
        [
            make_rule("stopper", priority=5, stop=True, match={"x": 1}),
            make_rule("lower"),
        ]
    )
    matches = index.match("alerts.cpu", {"x": 2}, {})
    assert names(matches.fired) == ["lower"] and matches.stopped_by is None


def test_explain_evaluates_past_a_stop() -> None:
    index = RuleIndex([make_rule("stopper", priority=5, stop=True), make_rule("lower")])
    matches = index.explain("alerts.cpu", {}, {})
    assert names(matches.fired) == ["stopper"]
    assert [(r.name, v.matched) for r, v in matches.evaluations] == [
        ("stopper", True),
        ("lower", True),
    ]


def test_a_raising_when_is_a_non_match_reported_as_an_error() -> None:
    index = RuleIndex([make_rule("broken", when="event.nope.deeper"), make_rule("fine")])
    matches = index.match("alerts.cpu", {}, {"event": {}})
    assert names(matches.fired) == ["fine"]
    ((_, broken), (_, fine)) = matches.evaluations
    assert broken.error is not None and fine.error is None


def test_no_candidates_means_no_evaluations() -> None:
    index = RuleIndex([make_rule("r", "a.b")])
    matches = index.match("x.y", {}, {})
    assert matches.fired == () and matches.evaluations == () and len(index) == 1
