"""One rule's fields compiled, each problem reported at the field it is in.

`FieldCompiler` is what the loader's rule compiler is built on: it turns a field's
YAML value into its compiled form (a template, an expression, a duration, a
literal subject) and, when that fails, reports a `RuleError` naming file, line,
rule and field instead of raising, so one pass finds every problem of a rule. A
template syntax error is placed on the line of the template inside a `|` block.
Which fields a rule has, and what they mean together, is `loader`'s concern.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jinja2

from remediator.durations import parse_duration
from remediator.errors import RuleError
from remediator.model import Renderable, Source
from remediator.rules.matching import subject_problem
from remediator.rules.templating import Templates
from remediator.rules.windows import RuleWindows, compile_windows
from remediator.rules.yamlsource import Document, Where, field_path, rule_and_field

T = TypeVar("T")
D = TypeVar("D")
Raw = Mapping[str, Any]  # a mapping the schema has already checked


class FieldCompiler:
    """Compiles the fields of rule `index` of `document`; parts the schema already
    rejected (`tainted`) are skipped, their problem being reported already."""

    def __init__(
        self,
        document: Document,
        index: int,
        templates: Templates,
        problems: list[RuleError],
        tainted: list[Where],
    ) -> None:
        self.document = document
        self.index = index
        self.templates = templates
        self.problems = problems
        self.tainted = tainted
        self.failed = bool(tainted)
        self.name, _ = rule_and_field(document.data, ("rules", index, "name"))

    def report(self, where: Where, message: str, line: int | None = None) -> None:
        self.failed = True
        self.problems.append(self.document.error(("rules", self.index, *where), message, line))

    def source(self, where: Where = ()) -> Source:
        return Source(
            file=self.document.file, line=self.document.line(("rules", self.index, *where))
        )

    def guard(self, where: Where, default: D, build: Callable[[], T]) -> T | D:
        """`build()`, or `default` after reporting why it failed at `where`."""
        if self.tainted and any(bad[: len(where)] == where for bad in self.tainted):
            return default
        try:
            return build()
        except jinja2.TemplateSyntaxError as exc:
            self.template_error(where, exc)
        except ValueError as exc:
            self.report(where, str(exc))
        return default

    def template_error(self, where: Where, exc: jinja2.TemplateSyntaxError) -> None:
        raw = _at(self.document.data, ("rules", self.index, *where))
        leaf = _leaf_with(raw, where, exc.source or "") or where
        absolute = ("rules", self.index, *leaf)
        block = self.document.blocks.get(absolute)
        line = block + (exc.lineno or 1) - 1 if block is not None else None
        self.report(leaf, f"template syntax error: {exc.message}", line)

    def compile(self, value: object, where: Where) -> Renderable:
        return self.templates.compile(value, rule=self.name, field=field_path(where))

    def expression(self, raw: Raw, key: str, base: Where) -> Renderable | None:
        if key not in raw:
            return None
        where = (*base, key)
        source = _unwrap(raw[key])
        return self.templates.compile_expression(source, rule=self.name, field=field_path(where))

    def template(self, raw: Raw, key: str, base: Where) -> Renderable | None:
        if key not in raw:
            return None
        where = (*base, key)
        return self.guard(where, None, lambda: self.compile(raw[key], where))

    def duration(
        self, raw: Raw, key: str, base: Where, default: T, *, positive: bool = False
    ) -> float | T:
        if key not in raw:
            return default
        return self.guard((*base, key), default, lambda: _seconds(raw[key], positive))

    def windows(self, raw: Raw | None) -> RuleWindows | None:
        """`windows:` compiled (`rules.windows`), each bad value reported at its line."""
        if not isinstance(raw, Mapping) or any(w[:1] == ("windows",) for w in self.tainted):
            return None
        windows, problems = compile_windows(raw)
        for where, message in problems:
            self.report(("windows", *where), message)
        return windows

    def literal_subject(self, raw: Raw, key: str, base: Where) -> str | None:
        subject = raw.get(key)
        if isinstance(subject, str) and (problem := subject_problem(subject, wildcards=False)):
            self.report((*base, key), problem)
        return subject


def _seconds(value: object, positive: bool) -> float:
    seconds = parse_duration(value)
    if positive and seconds <= 0:
        raise ValueError(f"must be longer than 0, got {value!r}")
    return seconds


def _unwrap(source: str) -> str:
    """`when: "{{ x > 1 }}"` means `when: "x > 1"`; a bare expression passes unchanged."""
    text = source.strip()
    inner = text[2:-2]
    if text.startswith("{{") and text.endswith("}}") and "{{" not in inner and "}}" not in inner:
        return inner.strip()
    return source


def _at(data: object, where: Where) -> object:
    for part in where:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, Mapping):
            data = data.get(part)
        else:
            return None
    return data


def _leaf_with(value: object, where: Where, source: str) -> Where | None:
    """The path of the first string under `value` that holds the template `source`."""
    if isinstance(value, str):
        return where if source in value else None
    items = (
        value.items()
        if isinstance(value, Mapping)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        if (found := _leaf_with(item, (*where, key), source)) is not None:
            return found
    return None
