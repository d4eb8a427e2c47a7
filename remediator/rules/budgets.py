"""Template budgets: how much one render may build, and how many loop rounds it may run.

Jinja's sandbox stops templates from reaching Python's insides, not from using
memory and time: `'{:>900000000}'.format(1)` builds 900 MB, `(['x'*1000000]*1000)|join`
1 GB, a doubling `{% set ns.s = ns.s ~ ns.s %}` in a loop more, and two nested
loops over `range(100000)` run 10^10 rounds while printing nothing. So the
environment here refuses, before building it, any string or list over
`MAX_OUTPUT` characters (items) made by `*`, `+`, `~`, `%`, `str.format`,
`join`, `replace` or the width filters; any single expression's value over the
budget; and more than `MAX_ITERATIONS` loop rounds in one render, all loops
together (every `{% for %}` iterates through a counter; `render_budget` opens a
fresh count per render). Each refusal is a `SecurityError`, which the template
wrappers turn into a failed step naming the rule and field.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT = 1024 * 1024  # characters a template may render, and a string or list it may build
MAX_EXPONENT = 1000  # `**` past this is refused (10 ** 10 ** 9 would freeze the daemon)
MAX_ITERATIONS = 1_000_000  # loop rounds in one render (~0.5 s of Jinja), all loops together

_LOOP = "_remediator_loop"  # the names the rewritten templates call
_CONCAT = "_remediator_concat"
# A printf width or precision of 7+ digits or `*`: `%0*d`, `%9999999d`, `%(a).9999999f`.
_HUGE_WIDTH = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(?:\*|\d{7,}|\d*\.(?:\*|\d{7,}))")
_HUGE_SPEC = re.compile(r"\d{7,}|\{")  # in a str.format spec: a huge or a nested width


class _Rounds:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


# The count of the render under way in this thread or task: each render opens its own.
_ROUNDS: ContextVar[_Rounds | None] = ContextVar("remediator_loop_rounds", default=None)


@contextmanager
def render_budget() -> Iterator[None]:
    """A fresh loop-round budget for one render."""
    token = _ROUNDS.set(_Rounds(MAX_ITERATIONS))
    try:
        yield
    finally:
        _ROUNDS.reset(token)


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    rounds = _ROUNDS.get() or _Rounds(MAX_ITERATIONS)
    for item in iterable:
        rounds.left -= 1
        if rounds.left < 0:
            raise SecurityError(f"loop rounds over the budget of {MAX_ITERATIONS} in one render")
        yield item


def _concat(*parts: Any) -> str:
    texts = [str(part) for part in parts]
    _check(sum(map(len, texts)), "a string")
    return "".join(texts)


def _check(size: int, what: str = "a value") -> None:
    if size > MAX_OUTPUT:
        raise SecurityError(f"{what} over the budget of {MAX_OUTPUT} characters")


class BudgetedEnvironment(SandboxedEnvironment):
    """The sandbox with the budgets above; output is capped by the template wrappers."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("center", "indent", "format", "wordwrap"):  # widths build strings
            self.filters[name] = _sized(self.filters[name])
        self.filters["join"] = _joined(self.filters["join"])
        self.globals[_LOOP] = _counted
        self.globals[_CONCAT] = _concat

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        """Every loop iterates through the round counter, every `~` through `_concat`."""
        for loop in source.find_all(nodes.For):
            loop.iter = _call(_LOOP, [loop.iter], loop.iter.lineno, self)
        for parent in [source, *source.find_all(nodes.Node)]:
            for field, value in parent.iter_fields():
                if isinstance(value, nodes.Concat):
                    setattr(parent, field, _call(_CONCAT, value.nodes, value.lineno, self))
                elif isinstance(value, list):
                    value[:] = [
                        _call(_CONCAT, v.nodes, v.lineno, self)
                        if isinstance(v, nodes.Concat)
                        else v
                        for v in value
                    ]
        generated: str = super()._generate(source, *args, **kwargs)
        return generated

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` (which Jinja wraps at attribute access), refusing a huge or nested
        width or precision in a spec before anything is built."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _huge_format(value.__self__):

            def refuse(*args: Any, **kwargs: Any) -> str:
                raise SecurityError(f"a format width over the budget of {MAX_OUTPUT} characters")

            return refuse
        return wrapped

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} over the budget of {MAX_EXPONENT}")
        if operator == "%" and isinstance(left, str) and _HUGE_WIDTH.search(left):
            raise SecurityError(f"a format width over the budget of {MAX_OUTPUT} characters")
        if operator == "*":
            _check(_repeated(left, right))
        if operator == "+" and _sequences(left, right):
            _check(len(left) + len(right))
        return super().call_binop(context, operator, left, right)

    def call(
        __self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any
    ) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | bytes | list):
            if any(isinstance(a, int) and a > MAX_OUTPUT for a in (*args, *kwargs.values())):
                raise SecurityError(f"a size over the budget of {MAX_OUTPUT} characters")
            args = _method_checked(owner, getattr(__obj, "__name__", ""), args)
        return super().call(__context, __obj, *args, **kwargs)


def _method_checked(owner: Any, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Refuses a string or list method call that would build more than the budget."""
    if isinstance(owner, str) and name == "expandtabs" and owner.count("\t"):
        _check(len(owner) * max(8, *(a for a in args if isinstance(a, int))))
    if isinstance(owner, str) and name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str):
            hits = owner.count(old) if old else len(owner) + 1
            _check(len(owner) + hits * len(new))
    if isinstance(owner, str) and name == "join" and args:
        items = list(args[0])
        _check(sum(len(i) for i in items if isinstance(i, str)) + len(owner) * len(items))
        return (items, *args[1:])
    if isinstance(owner, list) and name == "extend" and args:
        items = list(args[0])
        _check(len(owner) + len(items))
        return (items, *args[1:])
    return args


def _huge_format(template: str) -> bool:
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return False  # str.format raises the same error itself
    return any(spec and _HUGE_SPEC.search(spec) for _text, _field, spec, _conv in fields)


def _call(name: str, args: list[Any], lineno: int, env: jinja2.Environment) -> nodes.Call:
    # `args` itself, not a copy: a `~` nested in it is replaced in that list afterwards.
    call = nodes.Call(nodes.Name(name, "load"), args, [], None, None, lineno=lineno)
    call.set_environment(env)
    return call


def _sequences(left: object, right: object) -> bool:
    return isinstance(left, str | bytes | list | tuple) and type(left) is type(right)


def _repeated(left: object, right: object) -> int:
    """The length `left * right` would have, when it repeats a sequence; else 0."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
            return len(seq) * times
    return 0


def _sized(filter_: Callable[..., Any]) -> Callable[..., Any]:
    """`filter_`, refusing a width over the budget or a `*` / huge width in a format."""

    @functools.wraps(filter_)
    def sized(*args: Any, **kwargs: Any) -> Any:
        values = (*args, *kwargs.values())
        if any(isinstance(v, int) and not isinstance(v, bool) and v > MAX_OUTPUT for v in values):
            raise SecurityError(f"a width over the budget of {MAX_OUTPUT} characters")
        if any(isinstance(v, str) and _HUGE_WIDTH.search(v) for v in values):
            raise SecurityError(f"a format width over the budget of {MAX_OUTPUT} characters")
        return filter_(*args, **kwargs)

    return sized


def _joined(filter_: Callable[..., Any]) -> Callable[..., Any]:
    """The `join` filter, refusing to build a string over the budget."""

    @functools.wraps(filter_)
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        if attribute is not None:
            items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
        _check(sum(len(i) if isinstance(i, str) else 0 for i in items) + len(d) * len(items))
        return filter_(eval_ctx, items, d)

    return join


def value_size(value: object, limit: int = MAX_OUTPUT) -> int:
    """About how many characters `value` holds (strings' lengths, one per other item),
    counted only until `limit` is passed."""
    size, stack = 0, [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            size += len(item)
        elif isinstance(item, dict):
            size += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            size += len(item)
            stack.extend(item)
        else:
            size += 1
    return size
