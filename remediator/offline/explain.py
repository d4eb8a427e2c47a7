"""Explain: why an event fires the rules it fires, and why every other rule stays quiet.

Every rule gets one verdict. Rules whose `on` takes the subject are evaluated
in priority order, even those a `stop: true` rule cut off, and a rule that does
not match names the first condition that failed and the value it saw there
(`match value gt 90: saw '42'`), or its `when` and what that gave. A rule that
matches but does not fire says why (a `stop` rule above it; a resolving event,
which fires only rules that match `status`). The rest are listed briefly as
`subject does not match`. Nothing runs: this is matching only.

A rule over several events reports its window for the event's group instead:
`correlate` how many of `count` this event makes (offline the window holds this
event alone: "1 of 3 within 5m"), `absent` the timer the event restarts. A rule
that asks Prometheus first says what it would ask (`would ask: <rendered query>`);
the answer is unknown offline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from remediator.actions.base import Previewing, changes_things
from remediator.actions.prometheus import WOULD_ASK
from remediator.engine.correlation import group_of
from remediator.engine.engine import Engine
from remediator.engine.events import decode_event
from remediator.engine.rulecontext import render_vars, resolving
from remediator.engine.schedule import iso, next_tick
from remediator.engine.unknowns import DryResults
from remediator.errors import StepError, TemplateError
from remediator.model import Event, Rule
from remediator.offline.sandbox import offline_engine, offline_rules
from remediator.rules.matching import Matches, Verdict
from remediator.rules.secrets import Secrets

TRACE_ID = "0" * 32


@dataclass(frozen=True, slots=True)
class Explanation:
    rule: str
    fires: bool
    why: str

    @property
    def verdict(self) -> str:
        return "fires" if self.fires else "quiet"


def explain_event(
    rule_paths: Sequence[str | Path],
    subject: str,
    headers: Mapping[str, str],
    data: bytes,
    secrets: Secrets,
) -> str:
    """`remediator explain` as text; EventError when `data` is not a JSON object."""
    rules = offline_rules(rule_paths, secrets)
    event = decode_event(subject, headers, data, None, lambda: TRACE_ID)
    return text(event, explain(offline_engine(rules, secrets), rules, event))


def explain(engine: Engine, rules: Sequence[Rule], event: Event) -> list[Explanation]:
    """One explanation per rule: the candidates in priority order, then the others."""
    matches = engine.index.explain(event.subject, event.payload, engine.context(event))
    fired = {rule.name for rule in engine.fired(event)}
    explained = [
        _candidate(rule, verdict, rule.name in fired, matches)
        for rule, verdict in matches.evaluations
    ]
    context = engine.context(event)
    explained = [
        _windowed(e, rule, context) if e.fires and rule.windowed else e
        for e, (rule, _) in zip(explained, matches.evaluations, strict=True)
    ]
    explained = [
        _asks(e, rule, engine, context) if e.fires else e
        for e, (rule, _) in zip(explained, matches.evaluations, strict=True)
    ]
    seen = {e.rule for e in explained}
    for rule in rules:
        if rule.schedule is not None:
            explained.append(_scheduled(rule, engine.now()))
        elif rule.name not in seen:
            on = ", ".join(rule.subjects)
            explained.append(Explanation(rule.name, False, f"subject does not match (on: {on})"))
    return explained


def _scheduled(rule: Rule, now: dt.datetime) -> Explanation:
    """A scheduled rule fires on its clock, never on an event: say when it next runs."""
    assert rule.schedule is not None
    when = iso(next_tick(rule.schedule, now))
    why = f"runs on a clock ({rule.schedule.describe()}), not on events: next run {when}"
    return Explanation(rule.name, False, why)


def _candidate(rule: Rule, verdict: Verdict, fires: bool, matches: Matches) -> Explanation:
    if fires and rule.approval is not None:
        why = f"matches (priority {rule.priority}); would ask for approval first, nothing runs yet"
        return Explanation(rule.name, True, why)
    if fires:
        return Explanation(rule.name, True, f"matches (priority {rule.priority})")
    if not verdict.matched:
        return Explanation(rule.name, False, f"no match: {verdict.failed}")
    stopper = matches.stopped_by
    if stopper is not None and rule.priority < stopper.priority:
        why = f"matches, but {stopper.name} (stop: true, priority {stopper.priority}) fired first"
        return Explanation(rule.name, False, why)
    return Explanation(
        rule.name,
        False,
        "matches, but this is a resolving event (status: resolved), which fires only "
        "rules whose `match` names `status`",
    )


def _windowed(found: Explanation, rule: Rule, context: Mapping[str, object]) -> Explanation:
    """A matching rule over several events fires only when its window says so."""
    try:
        group = group_of(rule, context)
    except TemplateError as exc:
        return Explanation(rule.name, False, f"matches, but group_by failed: {exc}")
    named = f"group {group!r}" if group else "its one group"
    if rule.correlate is not None:
        count, within = rule.correlate.count, span(rule.correlate.within)
        why = f"matches; window of {named}: 1 of {count} within {within}"
        return Explanation(rule.name, count <= 1, why if count <= 1 else f"{why}, fires at {count}")
    assert rule.absent is not None
    why = f"matches; restarts the silence timer of {named}: fires after {span(rule.absent.within)}"
    return Explanation(rule.name, False, f"{why} without another event")


def _asks(
    found: Explanation, rule: Rule, engine: Engine, context: Mapping[str, object]
) -> Explanation:
    """A rule that asks before acting says what it would ask; the answer, and so which of
    its steps would run, is unknown offline."""
    asked: list[str] = []
    for step in rule.steps:
        action = engine.runner.actions.get(step.kind)
        if changes_things(action) or not isinstance(action, Previewing):
            continue
        try:
            scope = dict(context) | {"rule": rule.name, "results": DryResults({})}
            scope["vars"] = render_vars(rule, scope)
            request = step.request.render(scope)
            preview = action.preview(request) if isinstance(request, Mapping) else {}
            asked.append(f"would ask: {preview.get(WOULD_ASK, request)}")
        except (TemplateError, StepError) as exc:
            asked.append(f"would ask, but step {step.name} fails: {exc}")
    if not asked:
        return found
    return Explanation(found.rule, found.fires, "; ".join([found.why, *asked]))


def span(seconds: float) -> str:
    """`300.0` as `5m`: the largest unit that divides it."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def text(event: Event, explained: Sequence[Explanation]) -> str:
    width = max((len(e.rule) for e in explained), default=4)
    lines = [f"event on {event.subject} (event_id {event.event_id})"]
    if resolving(event):
        lines.append("a resolving event: it closes pending verifications")
    lines += [f"  {e.verdict:<5}  {e.rule:<{width}}  {e.why}" for e in explained]
    count = sum(e.fires for e in explained)
    lines.append(f"{count} of {len(explained)} rule(s) fire")
    return "\n".join(lines)
