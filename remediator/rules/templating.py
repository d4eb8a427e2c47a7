"""Templates: one sandboxed Jinja environment, compiled at load, rendered per event.

Security comes first: templates run in Jinja's sandbox, undefined names are
errors (never an empty string), values are never re-rendered (event data that
looks like a template arrives literally), and `secret(name)` values are
remembered by `Secrets` so every result and log line can mask them.

A template that is a single expression (`"{{ vars.n }}"`) keeps its type, so
`replicas: "{{ vars.n }}"` renders to a number when `vars.n` is one.

Each distinct source is compiled once per `Templates` and shared by every rule and field
that uses it (generated and copy-pasted rules share most of theirs): Jinja's compiled
code is the larger part of a loaded rule. The wrapper around it is per use, and keeps
the rule and field its errors name.
"""

from __future__ import annotations

import os
import re
import shlex
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from jinja2.environment import TemplateExpression
from jinja2.sandbox import SandboxedEnvironment

from remediator.errors import TemplateError
from remediator.model import Renderable

MASK = "***"


@dataclass(slots=True)
class Secrets:
    """`secret(name)`: environment variable NAME first, then the file NAME in `directory`.

    Every value handed out is remembered so `mask` can hide it wherever it shows up.
    """

    environ: Mapping[str, str]
    directory: Path | None = None
    known: set[str] = field(default_factory=set)

    def get(self, name: str) -> str:
        value = self.environ.get(name)
        if value is None and self.directory is not None and _safe_name(name):
            path = self.directory / name
            if path.is_file():
                value = path.read_text().rstrip("\n")
        if value is None:
            raise TemplateError(f"secret {name!r} is not set (environment or secrets directory)")
        if value:
            self.known.add(value)
        return value

    def mask(self, value: object) -> object:
        """`value` with every known secret replaced by `***`, at any depth."""
        if not self.known:
            return value
        if isinstance(value, str):
            for secret in self.known:
                value = value.replace(secret, MASK)
            return value
        if isinstance(value, Mapping):
            return {k: self.mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask(v) for v in value]
        return value


def _safe_name(name: str) -> bool:
    return bool(name) and os.sep not in name and name not in (".", "..")


def shell_quote(value: object) -> str:
    return shlex.quote(str(value))


class Templates:
    """The environment and the compiler. One per daemon (or CLI command); no globals."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
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
        """A bare Jinja expression, as `when:` takes it."""
        call = self._expressions.get(source)
        if call is None:
            call = self.env.compile_expression(source, undefined_to_none=False)
            self._expressions[source] = call
        expression = _Expression(source=source, call=call, rule=rule, field=field)
        names = _plain_path(source)
        return expression if names is None else _Path(names=names, expression=expression)

    def _compile_string(self, source: str, rule: str, field: str) -> Renderable:
        if "{{" not in source and "{%" not in source and "{#" not in source:
            return _Constant(source=source, value=source)
        inner = _single_expression(source)
        if inner is not None:
            return self.compile_expression(inner, rule=rule, field=field)
        template = self._templates.get(source)
        if template is None:
            template = self.env.from_string(source)
            self._templates[source] = template
        return _Template(source=source, template=template, rule=rule, field=field)


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
            value = self.call(**context)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
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
    template: jinja2.Template
    rule: str
    field: str

    def render(self, context: Mapping[str, object]) -> object:
        try:
            return self.template.render(context)
        except Exception as exc:
            raise _fail(exc, self.rule, self.field) from exc


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
