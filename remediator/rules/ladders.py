"""Escalation ladders across a rule set: `verify.escalate_rule` names a rule that exists,
and no ladder leads back to a rule already on it.

Checked once the whole set is loaded (a ladder crosses files); each problem is placed at
the `escalate_rule` that causes it, with file and line, like every other rule error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from remediator.errors import RuleError
from remediator.model import Rule, Source

FIELD = "verify.escalate_rule"


def ladder_problems(rules: Iterable[Rule], names: Mapping[str, Source]) -> list[RuleError]:
    """`names`: every rule name claimed, compiled or not (a rule with its own problem is
    still a rule: naming it is not an unknown-rule error)."""
    steps = {r.name: r for r in rules if r.verify is not None and r.verify.escalate_rule}
    problems = []
    for rule in steps.values():
        assert rule.verify is not None and rule.verify.escalate_rule is not None
        target = rule.verify.escalate_rule
        if target not in names:
            problems.append(_error(rule, f"unknown rule {target!r}"))
        elif (loop := _loop(rule.name, steps)) is not None:
            problems.append(_error(rule, f"escalation loop: {' -> '.join(loop)}"))
    return problems


def _loop(start: str, steps: Mapping[str, Rule]) -> list[str] | None:
    """The ladder from `start` when it comes back to `start`; None when it ends."""
    path, seen, name = [start], {start}, start
    while (rule := steps.get(name)) is not None and rule.verify is not None:
        name = str(rule.verify.escalate_rule)
        path.append(name)
        if name == start:
            return path
        if name in seen:
            return None  # a loop further up the ladder: reported at its own rules
        seen.add(name)
    return None


def _error(rule: Rule, message: str) -> RuleError:
    assert rule.verify is not None
    at = rule.verify.escalate_at or rule.source
    return RuleError(message, file=at.file, line=at.line, rule=rule.name, field=FIELD)
