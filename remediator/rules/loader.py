"""Loading rules: YAML files in, compiled `Rule`s out, or every problem at once.

This module owns the way from rule files to the model. It takes the files
`rulefiles` finds, reads each with `yamlsource.parse_document` (which keeps the
line of every key and item), checks it with `schemacheck.check`, then compiles
it: subject patterns checked, `match` entries built into conditions, templates
and `when` expressions compiled, durations parsed (each field through
`fields.FieldCompiler`). Nothing is compiled later, per event. Every problem in
every file is collected and raised together as `RuleErrors`, each naming file,
line, rule and field (`rules/disk.yaml:14: rule disk-full: actions[0].http.url:
...`), so one `remediator validate` run reports them all.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeGuard

from remediator.errors import RuleError, RuleErrors
from remediator.model import (
    Absent,
    Approval,
    Condition,
    Correlate,
    Renderable,
    RetryPolicy,
    Rule,
    Schedule,
    Source,
    Step,
    Throttle,
    Verify,
    VerifyQuery,
)
from remediator.rules import schema, schemacheck
from remediator.rules.conditions import build_condition
from remediator.rules.fields import FieldCompiler, Raw
from remediator.rules.matching import subject_problem
from remediator.rules.parsecache import ParseCache
from remediator.rules.rulefiles import rule_files
from remediator.rules.schedules import cron_problem, tz_problem
from remediator.rules.templating import Templates, renders_instantly
from remediator.rules.yamlsource import Where, parse_document

DEFAULT_TIMEOUT = 30.0
DEFAULT_EVERY = 30.0  # verification by query: ask again this often
DEFAULT_APPROVAL = 1800.0  # 30m: long enough for a human on call to answer
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def load_rules(
    paths: Sequence[str | Path], templates: Templates, cache: ParseCache | None = None
) -> tuple[Rule, ...]:
    """The rules in `paths` (files, or directories read recursively), in load order;
    `cache` keeps files parsed and schema-checked before (the daemon's start-up).

    Raises RuleErrors listing every problem found in every file.
    """
    files, problems = rule_files(paths)
    rules: list[Rule] = []
    names: dict[str, Source] = {}
    with _no_cycle_collection():
        for path in files:
            loaded, found = _load_file(path, templates, names, cache)
            rules.extend(loaded)
            problems.extend(sorted(found, key=lambda error: error.line))
    if problems:
        raise RuleErrors(problems)
    return tuple(rules)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Loading allocates millions of objects and leaves no reference cycles to collect;
    the cycle collector would walk the growing heap again and again for nothing (half
    the load time at 10,000 rules). Reference counting still frees the YAML as it goes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- one file ---------------------------------------------------------------------------


def _load_file(
    path: Path, templates: Templates, names: dict[str, Source], cache: ParseCache | None
) -> tuple[list[Rule], list[RuleError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [RuleError(f"cannot read the file: {exc}", file=str(path))]
    document = None if cache is None else cache.get(text, str(path))
    structural: list[schemacheck.Problem] = []
    problems: list[RuleError] = []
    if document is None:
        document, problems = parse_document(text, str(path))
        if document is None:
            return [], problems
        structural = schemacheck.check(document.data)
        problems.extend(document.error(p.where, p.message) for p in structural)
        if cache is not None and not problems:
            cache.put(text, document)
    data = document.data
    raw_rules = data.get("rules") if isinstance(data, Mapping) else None
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
        if not isinstance(raw, Mapping):
            continue
        tainted = [p.where[2:] for p in structural if p.where[:2] == ("rules", index)]
        compiler = _RuleCompiler(document, index, templates, problems, tainted)
        compiler.claim_name(raw.get("name"), names)
        rule = compiler.rule(raw)
        if rule is not None:
            rules.append(rule)
    return rules, problems


# --- one rule ---------------------------------------------------------------------------


class _RuleCompiler(FieldCompiler):
    """Compiles one schema-checked rule, reporting each problem at its own field.

    Parts the schema already rejected are skipped (their problem is reported), so a
    rule with a typo still has its templates, regexes and durations checked.
    """

    def claim_name(self, name: object, names: dict[str, Source]) -> None:
        if not isinstance(name, str) or not name:
            return
        if name == RESERVED_NAME:
            # `pause all` and a pause's scope `all` mean every rule: such a rule could be
            # neither paused alone nor told apart from `--all`.
            self.report(("name",), f"{name!r} is reserved (it means every rule in pauses)")
        first = names.setdefault(name, self.source())
        if first != self.source():
            self.report(("name",), f"duplicate rule name {name!r} (first defined at {first})")

    def rule(self, raw: Raw) -> Rule | None:
        subjects = self.guard(("on",), (), lambda: self.subjects(raw.get("on", [])))
        conditions = self.conditions(raw.get("match", {}))
        when = self.guard(("when",), None, lambda: self.expression(raw, "when", ()))
        throttle = self.guard(("throttle",), None, lambda: self.throttle(raw.get("throttle")))
        variables = self.variables(raw.get("vars", {}))
        # Step names are unique across both lists: results and `results.<name>` name one step.
        names: dict[object, int] = {}
        steps = self.steps(raw.get("actions", []), "actions", names)
        on_failure = self.steps(raw.get("on_failure", []), "on_failure", names)
        verify = self.guard(("verify",), None, lambda: self.verify(raw.get("verify")))
        correlate = self.guard(("correlate",), None, lambda: self.correlate(raw.get("correlate")))
        absent = self.guard(("absent",), None, lambda: self.absent(raw.get("absent")))
        approval = self.approval(raw.get("approval"), names)
        schedule = self.schedule(raw.get("schedule"))
        if self.failed:
            return None
        return Rule(
            name=self.name,
            description=raw.get("description", ""),
            subjects=subjects,
            conditions=conditions,
            when=when,
            priority=raw.get("priority", 0),
            stop=raw.get("stop", False),
            dry_run=raw.get("dry_run", False),
            throttle=throttle,
            vars=variables,
            steps=steps,
            on_failure=on_failure,
            verify=verify,
            correlate=correlate,
            absent=absent,
            approval=approval,
            schedule=schedule,
            source=self.source(),
            digest=definition_digest(raw),
        )

    def subjects(self, raw: str | list[str]) -> tuple[str, ...]:
        patterns = [raw] if isinstance(raw, str) else raw
        for position, pattern in enumerate(patterns):
            where: Where = ("on",) if isinstance(raw, str) else ("on", position)
            if (problem := subject_problem(pattern)) is not None:
                self.report(where, problem)
        return tuple(dict.fromkeys(patterns))

    def conditions(self, raw: object) -> tuple[Condition, ...]:
        if not isinstance(raw, Mapping):
            return ()
        built: list[Condition | None] = []
        for path, spec in raw.items():
            if isinstance(spec, Mapping):
                for op, operand in spec.items():
                    build = functools.partial(build_condition, path, op, operand)
                    built.append(self.guard(("match", path, op), None, build))
            else:
                build = functools.partial(build_condition, path, "eq", spec)
                built.append(self.guard(("match", path), None, build))
        return tuple(condition for condition in built if condition is not None)

    def variables(self, raw: object) -> tuple[tuple[str, Renderable], ...]:
        if not isinstance(raw, Mapping):
            return ()
        compiled = []
        for name, value in raw.items():
            build = functools.partial(self.compile, value, ("vars", name))
            compiled.append((name, self.guard(("vars", name), None, build)))
        return tuple((name, part) for name, part in compiled if part is not None)

    def steps(
        self, raw: object, section: str, first: dict[object, int], base: Where = ()
    ) -> tuple[Step, ...]:
        built: list[Step] = []
        prefix = "" if section == "actions" else f"{section}-"
        for index, item in enumerate(raw if isinstance(raw, list) else []):
            where: Where = (*base, section, index)
            kinds = [k for k in schema.STEP_KINDS if k in item] if isinstance(item, Mapping) else []
            if len(kinds) != 1:
                continue  # the schema has said why
            name = item.get("name", f"{prefix}{kinds[0]}-{index}")
            if name in first:
                message = f"duplicate step name {name!r} (first at line {first[name]})"
                self.report((*where, "name"), message)
            first.setdefault(name, self.source(where).line)
            step = self.step(item, where, kinds[0], name)
            if step is not None:
                built.append(step)
        return tuple(built)

    def step(self, raw: Raw, where: Where, kind: str, name: str) -> Step | None:
        if isinstance(raw[kind], Mapping):
            for key, problem in _request_problems(kind, raw[kind]):
                self.report((*where, kind, key), problem)
        request = self.template(raw, kind, where)
        when = self.guard((*where, "when"), None, lambda: self.expression(raw, "when", where))
        timeout = self.duration(raw, "timeout", where, DEFAULT_TIMEOUT, positive=True)
        retry = self.guard((*where, "retry"), None, lambda: self.retry(raw, (*where, "retry")))
        if request is None or retry is None:
            return None
        return Step(
            name=name,
            kind=kind,
            request=request,
            timeout=timeout,
            retry=retry,
            when=when,
            continue_on_failure=raw.get("continue_on_failure", False),
            source=self.source(where),
            instant=renders_instantly(request) and renders_instantly(when),
        )

    def retry(self, step: Raw, where: Where) -> RetryPolicy:
        raw = step.get("retry", {})
        backoff = self.duration(raw, "backoff", where, 1.0)
        longest = self.duration(raw, "max_backoff", where, 30.0)
        if backoff > longest:
            message = f"backoff {backoff:g}s is longer than max_backoff {longest:g}s"
            self.report((*where, "backoff"), message)
        return RetryPolicy(attempts=raw.get("attempts", 1), backoff=backoff, max_backoff=longest)

    def throttle(self, raw: Raw | None) -> Throttle | None:
        if raw is None:
            return None
        where: Where = ("throttle",)
        return Throttle(
            key=self.template(raw, "key", where),
            cooldown=self.duration(raw, "cooldown", where, None),
            max_runs=raw.get("max_runs"),
            window=self.duration(raw, "window", where, None, positive=True),
            escalate=self.literal_subject(raw, "escalate", where),
        )

    def approval(self, raw: Raw | None, names: dict[object, int]) -> Approval | None:
        if not isinstance(raw, Mapping):
            return None
        where: Where = ("approval",)
        return Approval(
            timeout=self.duration(raw, "timeout", where, DEFAULT_APPROVAL, positive=True),
            notify=self.steps(raw.get("notify", []), "notify", names, where),
        )

    def schedule(self, raw: Raw | None) -> Schedule | None:
        if not isinstance(raw, Mapping):
            return None
        where: Where = ("schedule",)
        tz, cron = str(raw.get("tz", "UTC")), raw.get("cron")
        if (problem := tz_problem(tz)) is not None:
            self.report((*where, "tz"), problem)
        if isinstance(cron, str) and (problem := cron_problem(cron)) is not None:
            self.report((*where, "cron"), problem)
        every = self.duration(raw, "every", where, None, positive=True)
        return Schedule(every=every, cron=cron if isinstance(cron, str) else None, tz=tz)

    def verify(self, raw: Raw | None) -> Verify | None:
        if raw is None:
            return None
        where: Where = ("verify",)
        query = self.verify_query(raw, where)
        within = "within" if query is not None else "resolved_within"
        return Verify(
            resolved_within=self.duration(raw, within, where, 0.0, positive=True),
            key=self.template(raw, "key", where),
            escalate=self.literal_subject(raw, "escalate", where),
            query=query,
        )

    def verify_query(self, raw: Raw, where: Where) -> VerifyQuery | None:
        query = self.template(raw, "query", where)
        if query is None:
            return None
        every = self.duration(raw, "every", where, DEFAULT_EVERY, positive=True)
        within = self.duration(raw, "within", where, 0.0, positive=True)
        if within and every > within:
            message = f"every {every:g}s is longer than within {within:g}s: it would never ask"
            self.report((*where, "every"), message)
        return VerifyQuery(query=query, below=raw.get("below"), above=raw.get("above"), every=every)

    def correlate(self, raw: Raw | None) -> Correlate | None:
        if raw is None:
            return None
        where: Where = ("correlate",)
        return Correlate(
            count=raw.get("count", 1),
            within=self.duration(raw, "within", where, 0.0, positive=True),
            group_by=self.template(raw, "group_by", where),
        )

    def absent(self, raw: Raw | None) -> Absent | None:
        if raw is None:
            return None
        where: Where = ("absent",)
        return Absent(
            within=self.duration(raw, "within", where, 0.0, positive=True),
            group_by=self.template(raw, "group_by", where),
        )


def _request_problems(kind: str, raw: Raw) -> list[tuple[str, str]]:
    """What the loader can tell about a request before any event: literal values only."""
    found = []
    method, url, subject = raw.get("method", "GET"), raw.get("url"), raw.get("subject")
    if kind == "http" and _literal(method) and method.upper() not in _METHODS:
        found.append(("method", f"unknown HTTP method {method!r} (known: {', '.join(_METHODS)})"))
    if kind == "http" and _literal(url) and not url.startswith(("http://", "https://")):
        found.append(("url", f"{url!r} is not an http:// or https:// URL"))
    if kind == "prometheus" and _literal(url) and not url.startswith(("http://", "https://")):
        found.append(("url", f"{url!r} is not an http:// or https:// URL"))
    problem = subject_problem(subject, wildcards=False) if _literal(subject) else None
    if kind == "publish" and problem is not None:
        found.append(("subject", problem))
    return found


def _literal(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and "{{" not in value and "{%" not in value


RESERVED_NAME = "all"


def definition_digest(raw: object) -> str:
    """A stable hash of a rule's definition as written (key order and layout aside)."""
    text = json.dumps(raw, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=16).hexdigest()
