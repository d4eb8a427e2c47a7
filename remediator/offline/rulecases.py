"""Rule test cases: `remediator test`, the unit tests of a rule set, kept beside the rules.

A case file (`name.cases.yaml`) holds `cases:`, each an event (`subject`,
optional `headers`, `event`) and what it must do: `expect.fired`, exactly the
rules that fire (in any order; `[]` for none), and optionally `expect.steps`,
partial rendered requests by rule and step (see `expectations`), or the word
`skipped` for a step whose `when` is false. `answers` gives each query step
(`prometheus`) its answer, since a test has no Prometheus (see `answers`); a
step that depends on a query without one is undecided, and fails its case.

Each case runs through the real engine in dry run: matching, `stop` and
priorities, vars and every step's templates are exactly the daemon's, but no
action runs and nothing connects anywhere (see `offline`). Throttles do not
apply; each case stands alone, with windows of its own. A fired rule whose
vars or step templates fail to render fails its case, since it would fail in
production. Case files are checked against `CASES_SCHEMA` first; their
problems are `RuleError`s naming file and line, like rule files'.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from remediator.durations import parse_duration
from remediator.engine.engine import Engine, utcnow
from remediator.engine.events import decode_event
from remediator.engine.runner import UNKNOWN
from remediator.engine.state import MemoryStore
from remediator.errors import RuleError, RuleErrors
from remediator.model import Result, StepResult
from remediator.offline.answers import Given, GivenAnswers, answers_of
from remediator.offline.caseschema import CASES_SCHEMA, SKIPPED
from remediator.offline.expectations import compare, diff
from remediator.offline.sandbox import offline_engine, offline_rules
from remediator.offline.tickcases import fire_tick, parse_tick
from remediator.rules.matching import subject_problem
from remediator.rules.rulefiles import CASES_SUFFIX, SUFFIXES, is_case_file
from remediator.rules.secrets import Secrets
from remediator.rules.yamlsource import parse_document

TRACE_ID = "0" * 32  # the trace id of a case's event, unless its headers or payload give one


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseEvent:
    """One event of a case, `after` seconds after the previous one."""

    subject: str
    headers: Mapping[str, str]
    event: Mapping[str, object]
    after: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    name: str
    events: tuple[CaseEvent, ...]
    advance: float
    tick: dt.datetime | None  # a case of scheduled rules: the tick that fires them
    fired: frozenset[str] | None
    steps: Mapping[str, Mapping[str, object]]
    answers: Given
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(slots=True)
class Outcome:
    """One case's verdict: the problems found, each a line, with indented detail lines."""

    case: Case
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # shown, never a failure

    @property
    def passed(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        head = f"{'PASS' if self.passed else 'FAIL'} {self.case.where}: {self.case.name}"
        return [head, *(f"    {line}" for line in (*self.problems, *self.notes))]


@dataclass(frozen=True, slots=True)
class Report:
    outcomes: tuple[Outcome, ...]

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    def text(self) -> str:
        lines = [line for outcome in self.outcomes for line in outcome.lines()]
        failed = sum(not o.passed for o in self.outcomes)
        total = len(self.outcomes)
        if not total:
            lines.append("no test cases found (write NAME.cases.yaml beside the rules)")
        else:
            lines.append(f"{total} case(s): {total - failed} passed, {failed} failed")
        return "\n".join(lines)


async def run_cases(
    rule_paths: Sequence[str | Path], case_paths: Sequence[str | Path], secrets: Secrets
) -> Report:
    """Load the rules and the cases (found beside the rules when none are named), run each."""
    rules = offline_rules(rule_paths, secrets)
    files = [Path(p) for p in case_paths] or case_files(rule_paths)
    cases = load_cases(files)
    engine = offline_engine(rules, secrets)
    return Report(tuple([await run_case(engine, case) for case in cases]))


# --- finding and reading case files -----------------------------------------------------


def case_files(rule_paths: Sequence[str | Path]) -> list[Path]:
    """Case files beside the rules: `*.cases.yaml` under a directory, `x.cases.yaml` by `x.yaml`."""
    found: dict[Path, Path] = {}
    for given in map(Path, rule_paths):
        if given.is_dir():
            candidates = sorted(f for f in given.rglob("*") if _visible_case(f, given))
        else:
            stem = given.with_suffix("")
            candidates = [stem.with_name(stem.name + CASES_SUFFIX + s) for s in SUFFIXES]
        for path in candidates:
            if path.is_file():
                found.setdefault(path.resolve(), path)
    return list(found.values())


def _visible_case(path: Path, root: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    return is_case_file(path) and not hidden


def load_cases(files: Sequence[Path]) -> list[Case]:
    """Every case in `files`; RuleErrors lists every problem in every file."""
    cases: list[Case] = []
    problems: list[RuleError] = []
    for path in files:
        loaded, found = _load_file(path)
        cases += loaded
        problems += found
    if problems:
        raise RuleErrors(problems)
    return cases


def _load_file(path: Path) -> tuple[list[Case], list[RuleError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [RuleError(f"cannot read the case file: {exc}", file=str(path))]
    document, problems = parse_document(text, str(path))
    if document is None:
        return [], problems
    for error in _validator().iter_errors(document.data):
        where = tuple(error.absolute_path)
        problems.append(document.error(where, error.message))
    data = document.data
    raw_cases = data.get("cases") if isinstance(data, Mapping) else None
    if problems or not isinstance(raw_cases, list):
        return [], problems
    cases = []
    for index, raw in enumerate(raw_cases):
        line = document.line(("cases", index))
        case = _case(raw, str(path), line)
        bad = [
            (where, problem)
            for where, item in _subjects(raw)
            if (problem := subject_problem(item, wildcards=False)) is not None
        ]
        for where, problem in bad:
            problems.append(document.error(("cases", index, *where), problem))
        if not bad:
            cases.append(case)
    return cases, problems


def _subjects(raw: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    found: list[tuple[tuple[str | int, ...], str]] = []
    if "subject" in raw:
        found.append((("subject",), raw["subject"]))
    for index, item in enumerate(raw.get("events") or []):
        if "subject" in item:
            found.append((("events", index, "subject"), item["subject"]))
    return found


def _case(raw: Mapping[str, Any], file: str, line: int) -> Case:
    """A schema-checked case: one `event`, or `events` each `after` the one before."""
    expect = raw["expect"]
    sequence = raw.get("events") or ([{"event": raw["event"]}] if "event" in raw else [])
    events = tuple(
        CaseEvent(
            subject=str(item.get("subject", raw["subject"])),
            headers=_text_map(item.get("headers", raw.get("headers") or {})),
            event=dict(item["event"]),
            after=parse_duration(item.get("after", 0)),
        )
        for item in sequence
    )
    fired = expect.get("fired")
    return Case(
        name=str(raw["name"]),
        events=events,
        advance=parse_duration(raw.get("advance", 0)),
        tick=parse_tick(raw["tick"]) if "tick" in raw else None,
        fired=frozenset(map(str, fired)) if isinstance(fired, list) else None,
        steps=dict(expect.get("steps") or {}),
        answers=answers_of(raw.get("answers") or {}),
        file=file,
        line=line,
    )


def _text_map(raw: Mapping[str, object]) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()}


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(CASES_SCHEMA)


# --- running a case ---------------------------------------------------------------------


async def run_case(engine: Engine, case: Case) -> Outcome:
    results = await run_timeline(engine, case)
    outcome = Outcome(case)
    if case.fired is not None and set(results) != case.fired:
        outcome.problems.append(_fired_problem(case.fired, list(results)))
    for result in results.values():
        outcome.problems += _render_errors(result)
        if result.status == "awaiting_approval":
            outcome.notes.append(f"rule {result.rule}: would ask for approval; nothing runs")
    for rule, steps in case.steps.items():
        outcome.problems += _step_problems(rule, steps, results.get(rule))
    return outcome


async def run_timeline(engine: Engine, case: Case) -> dict[str, Result]:
    """The case's events in order on a simulated clock, with fresh windows; what fired.

    Absence timers are swept before each event and after `advance`, as the daemon's
    sweep would have seen them; a rule that fires more than once shows its last result.
    """
    clock = SimulatedClock(case.tick or utcnow())
    actions = {**engine.runner.actions, "prometheus": GivenAnswers(case.answers)}
    runner = dataclasses.replace(engine.runner, actions=actions)
    engine = dataclasses.replace(engine, now=clock, state=MemoryStore(), runner=runner)
    results: dict[str, Result] = {}
    if case.tick is not None:
        results.update((result.rule, result) for result in await fire_tick(engine, case.tick))
    for position, item in enumerate(case.events):
        clock.advance(item.after)
        fired = await engine.sweep()
        data = json.dumps(item.event).encode()
        event_id = f"case-{position + 1}"
        ids = {"Nats-Msg-Id": event_id} if len(case.events) > 1 else {}
        decoded = decode_event(item.subject, {**ids, **item.headers}, data, None, lambda: TRACE_ID)
        fired += await engine.process(decoded)
        results.update((result.rule, result) for result in fired)
    clock.advance(case.advance)
    results.update((result.rule, result) for result in await engine.sweep())
    return results


@dataclass(slots=True)
class SimulatedClock:
    """The engine's `now` in a case: moves only when the case says time passes."""

    at: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)


def _fired_problem(expected: frozenset[str], fired: list[str]) -> str:
    text = f"fired: expected {_names(expected)}, got {_names(fired)}"
    missing, extra = expected - set(fired), set(fired) - expected
    notes = [f"did not fire: {', '.join(sorted(missing))}"] if missing else []
    notes += [f"also fired: {', '.join(sorted(extra))}"] if extra else []
    return f"{text} ({'; '.join(notes)})"


def _names(names: frozenset[str] | list[str]) -> str:
    return "[" + ", ".join(sorted(names)) + "]"


def _render_errors(result: Result) -> list[str]:
    """Template errors: the rule would fail in production, so the case fails."""
    problems = [f"rule {result.rule}: {result.reason}"] if result.status == "failed" else []
    for step in result.steps:
        if step.status == "failed":
            problems.append(f"rule {result.rule}: step {step.name}: {step.error}")
        elif isinstance(step.output, Mapping) and UNKNOWN in step.output:
            why = step.output[UNKNOWN]
            hint = "give the query's answer in the case's `answers: {STEP: value}`"
            problems.append(f"rule {result.rule}: step {step.name}: undecided: {why} ({hint})")
    return problems


def _step_problems(rule: str, expected: Mapping[str, object], result: Result | None) -> list[str]:
    if result is None:
        return [f"steps.{rule}: the rule did not fire, so it has no steps to compare"]
    steps = {step.name: step for step in result.steps}
    problems: list[str] = []
    for name, wanted in expected.items():
        step = steps.get(name)
        path = f"steps.{rule}.{name}"
        if step is None:
            problems.append(f"{path}: no such step (the rule's steps: {', '.join(steps)})")
        else:
            problems += _compare_step(path, wanted, step)
    return problems


def _compare_step(path: str, wanted: object, step: StepResult) -> list[str]:
    if wanted == SKIPPED or step.status == "skipped":
        if (wanted == SKIPPED) == (step.status == "skipped"):
            return []
        expected = "to be skipped" if wanted == SKIPPED else "to run"
        return [f"{path}: expected the step {expected}, but it was {step.status}"]
    # Compared as the result event carries it: `<results.scale.to>` is then a string.
    actual = json.loads(json.dumps(step.output, default=str))
    mismatches = compare(wanted, actual, path)
    if not mismatches:
        return []
    detail = [str(m) for m in mismatches]
    return [*detail, *(f"  {line}" for line in diff(wanted, actual))]
