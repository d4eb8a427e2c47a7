"""Templates: one sandboxed Jinja environment, compiled at load, rendered per event.

Security comes first: templates run in Jinja's sandbox, undefined names are
errors (never an empty string), values are never re-rendered (event data that
looks like a template arrives literally), and `secret(name)` values are
remembered by `Secrets` so every result and log line can mask them, in every
form they may be sent in (raw, percent-encoded, base64).

A template that is a single expression (`"{{ vars.n }}"`) keeps its type, so
`replicas: "{{ vars.n }}"` renders to a number when `vars.n` is one.

Each distinct source is compiled once per `Templates` and shared by every rule and field
that uses it (generated and copy-pasted rules share most of theirs): Jinja's compiled
code is the larger part of a loaded rule. The wrapper around it is per use, and keeps
the rule and field its errors name.
"""

from __future__ import annotations

import re
import shlex
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jinja2
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError

from remediator.errors import TemplateError
from remediator.model import Renderable
from remediator.rules.budgets import MAX_OUTPUT, BudgetedEnvironment, render_budget, value_size
from remediator.rules.later import Later
from remediator.rules.secrets import Secrets


def shell_quote(value: object) -> str:
    return shlex.quote(str(value))


class Templates:
    """The environment and the compiler. One per daemon (or CLI command); no globals."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.env = BudgetedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
        self.env.filters["shell_quote"] = shell_quote
        self.env.globals["secret"] = secrets.get
        # Weak: a source no loaded rule uses any more (after a reload) is not kept.
        self._templates: weakref.WeakValueDictionary[str, jinja2.Template] = (
            weakref.WeakValueDictionary()
        )
        self._expressions: weakref.WeakValueDictionary[str, TemplateExpression] = (
            weakref.WeakValueDictionary()
        )

    def compile(self, value: object, *, rule: str = "", field: str = "") -> Renderable:
        """Compile a YAML value: strings become templates, containers trees of them.

        Raises jinja2.TemplateSyntaxError; the loader turns it into a RuleError with the line.
        """
        if isinstance(value, str):
            return self._compile_string(value, rule, field)
        if isinstance(value, Mapping):
            items = {
                str(k): self.compile(v, rule=rule, field=f"{field}.{k}" if field else str(k))
                for k, v in value.items()
            }
            return _Tree(source=str(value), items=items)
        if isinstance(value, list):
            parts = [self.compile(v, rule=rule, field=f"{field}[{i}]") for i, v in enumerate(value)]
            return _List(source=str(value), parts=parts)
        return _Constant(source=str(value), value=value)

    def compile_expression(self, source: str, *, rule: str = "", field: str = "") -> Renderable:
        """A bare Jinja expression, as `when:` takes it. A plain dotted read is compiled
        when first needed: it is valid Jinja by its shape, and its dictionary look-ups
        rarely need the compiled form (start-up with 10,000 rules compiled 20,000)."""
        names = _plain_path(source)
        if names is not None:
            call = Later(self._expression, source)
            lazy = _Expression(source=source, call=call, rule=rule, field=field)
            return _Path(names=names, expression=lazy)
        return _Expression(source=source, call=self._expression(source), rule=rule, field=field)

    def _expression(self, source: str) -> TemplateExpression:
        call = self._expressions.get(source)
        if call is None:
            call = self.env.compile_expression(source, undefined_to_none=False)
            self._expressions[source] = call
        return call

    def _template(self, source: str) -> jinja2.Template:
        template = self._templates.get(source)
        if template is None:
            template = self.env.from_string(source)
            self._templates[source] = template
        return template

    def _compile_string(self, source: str, rule: str, field: str) -> Renderable:
        if "{{" not in source and "{%" not in source and "{#" not in source:
            return _Constant(source=source, value=source)
        inner = _single_expression(source)
        if inner is not None:
            return self.compile_expression(inner, rule=rule, field=field)
        parts = _text_and_paths(source)
        if parts is not None:  # plain text and reads, valid Jinja by their shape: compile later
            template = Later(self._template, source)
            later = _Template(source=source, template=template, rule=rule, field=field)
            return _Concat(parts=parts, template=later)
        return _Template(source=source, template=self._template(source), rule=rule, field=field)


_OUTPUT = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def _text_and_paths(source: str) -> tuple[str | tuple[str, ...], ...] | None:
    """`host {{ event.labels.host }} at {{ event.value }}` as its literal text and plain
    reads; None for anything Jinja could read otherwise (statements, comments, filters,
    whitespace control, the trailing newline and CR LF that Jinja rewrites)."""
    if "{%" in source or "{#" in source or "\r" in source or source.endswith("\n"):
        return None
    parts: list[str | tuple[str, ...]] = []
    for index, piece in enumerate(_OUTPUT.split(source)):
        if index % 2 == 0:
            if "{{" in piece or "}}" in piece:
                return None
            if piece:
                parts.append(piece)
            continue
        names = _plain_path(piece)
        if names is None:
            return None
        parts.append(names)
    return tuple(parts)


def renders_instantly(template: Renderable | None) -> bool:
    """Whether rendering `template` is bounded by its size: literals and plain dotted
    reads (and trees of them), no Jinja code that could loop."""
    if template is None or isinstance(template, _Constant | _Path | _Concat):
        return True
    if isinstance(template, _Tree):
        return all(renders_instantly(part) for part in template.items.values())
    if isinstance(template, _List):
        return all(renders_instantly(part) for part in template.parts)
    return False


def _single_expression(source: str) -> str | None:
    text = source.strip()
    if not (text.startswith("{{") and text.endswith("}}")):
        return None
    inner = text[2:-2]
    if any(mark in inner for mark in ("{{", "}}", "{%", "{#")):
        return None
    return inner.strip("-").strip()


def _fail(exc: Exception, rule: str, field: str) -> TemplateError:
    if isinstance(exc, TemplateError):
        return TemplateError(exc.message, rule=exc.rule or rule, field=exc.field or field)
    if isinstance(exc, jinja2.UndefinedError):
        message = f"undefined variable: {exc.message}"
    elif isinstance(exc, jinja2.exceptions.SecurityError):
        message = f"unsafe template refused by the sandbox: {exc}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return TemplateError(message, rule=rule, field=field)


@dataclass(frozen=True, slots=True)
class _Constant:
    source: str
    value: object

    def render(self, context: Mapping[str, object]) -> object:
        return self.value


@dataclass(frozen=True, slots=True)
class _Expression:
    source: str
    call: Callable[..., object]
    rule: str
    field: str

    def render(self, context: Mapping[str, object]) -> object:
        try:
            with render_budget():
                value = self.call(**context)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            if value_size(value) > MAX_OUTPUT:  # a single expression has no output to cap
                raise SecurityError(f"a value over the budget of {MAX_OUTPUT} characters")
        except Exception as exc:
            raise _fail(exc, self.rule, self.field) from exc
        return value


_PATH = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*")
_DICT_ATTRIBUTES = frozenset(dir(dict))


def _plain_path(source: str) -> tuple[str, ...] | None:
    """`event.labels.host` -> its names; None for anything else, or for a name Jinja
    would read as an attribute of a dict (`event.items` is the method, not the key)."""
    found = _PATH.fullmatch(source)
    if found is None:
        return None
    names = tuple(found.group(1).split("."))
    return None if _DICT_ATTRIBUTES.intersection(names[1:]) else names


@dataclass(frozen=True, slots=True)
class _Path:
    """A plain dotted read, the commonest template (`{{ event.labels.host }}`), done as
    dictionary look-ups with no Jinja context: a quarter of a fired rule's engine time
    went to building contexts for these. Anything but dicts all the way (a missing key,
    a list, an object) is handed to the compiled expression, so values and errors stay
    exactly Jinja's."""

    names: tuple[str, ...]
    expression: _Expression

    @property
    def source(self) -> str:
        return self.expression.source

    def render(self, context: Mapping[str, object]) -> object:
        value: object = context
        for name in self.names:
            if type(value) is not dict or name not in value:
                return self.expression.render(context)
            value = value[name]
        return value


@dataclass(frozen=True, slots=True)
class _Template:
    source: str
    template: jinja2.Template | Later
    rule: str
    field: str

    def render(self, context: Mapping[str, object]) -> object:
        try:
            parts: list[str] = []
            size = 0
            with render_budget():
                for part in self.template.generate(context):
                    size += len(part)
                    if size > MAX_OUTPUT:
                        raise SecurityError(f"output over the budget of {MAX_OUTPUT} characters")
                    parts.append(part)
            return "".join(parts)
        except Exception as exc:
            raise _fail(exc, self.rule, self.field) from exc


@dataclass(frozen=True, slots=True)
class _Concat:
    """Literal text and plain dotted reads (`host {{ event.labels.host }} is down`), joined
    as Jinja joins them (`str` of each value) without a Jinja context. A read that is not
    dicts all the way, or output over the budget, renders the whole template with Jinja
    instead, so values and errors stay exactly Jinja's."""

    parts: tuple[str | tuple[str, ...], ...]  # literal text, or the names of a read
    template: _Template

    @property
    def source(self) -> str:
        return self.template.source

    def render(self, context: Mapping[str, object]) -> object:
        out: list[str] = []
        size = 0
        for part in self.parts:
            if isinstance(part, str):
                text = part
            else:
                value = _read(part, context)
                if value is _NOT_PLAIN:
                    return self.template.render(context)
                text = str(value)
            size += len(text)
            out.append(text)
        if size > MAX_OUTPUT:
            return self.template.render(context)  # which fails as Jinja's output would
        return "".join(out)


_NOT_PLAIN = object()


def _read(names: tuple[str, ...], context: Mapping[str, object]) -> object:
    value: object = context
    for name in names:
        if type(value) is not dict or name not in value:
            return _NOT_PLAIN
        value = value[name]
    return value


@dataclass(frozen=True, slots=True)
class _Tree:
    source: str
    items: Mapping[str, Renderable]

    def render(self, context: Mapping[str, object]) -> dict[str, object]:
        return {key: part.render(context) for key, part in self.items.items()}


@dataclass(frozen=True, slots=True)
class _List:
    source: str
    parts: list[Renderable]

    def render(self, context: Mapping[str, object]) -> list[object]:
        return [part.render(context) for part in self.parts]
