"""Conditions: the `match` entries of a rule, each a payload path and a compiled test.

This module owns what one `match` entry means. `resolve` reads a dotted path out
of a payload (integers index lists; a missing path is `MISSING`, never an
exception) and `accessor` compiles that read for one path; `build_condition`
compiles an operator and its operand once, at load, into a `Condition` whose `test`
is a plain function of the value found (MISSING included): its regex compiled, its
numbers converted, a bad operand a `ValueError` naming what is wrong. The equality
and ordering rules of the operators are spelled out below; `index_key` says which
`eq` entries an index may decide by a dict look-up, and `split` divides a rule's
entries into those and compiled checks on the whole payload. Which rules an event
reaches, and in what order, is `matching`'s concern.
"""

from __future__ import annotations

import enum
import importlib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from remediator.model import Condition

# The regex parse tree, to find nested repeats; typeshed has no stubs for it.
_parser: Any = importlib.import_module("re._parser")

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "regex", "exists")


class _Missing(enum.Enum):
    MISSING = "missing"

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing.MISSING  # what `resolve` returns for a path that is not in the payload


# --- payload paths ----------------------------------------------------------------------


def resolve(payload: object, path: str | Sequence[str]) -> object:
    """The value at a dotted `path` (integers index lists), or MISSING."""
    tokens = path.split(".") if isinstance(path, str) else path
    value = payload
    for token in tokens:
        if type(value) is dict or isinstance(value, Mapping):  # the exact check is the fast path
            value = value.get(token, MISSING)
            if value is MISSING:
                return MISSING
        elif isinstance(value, list) and _is_index(token):
            index = int(token)
            if not -len(value) <= index < len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def _is_index(token: str) -> bool:
    return token.isdigit() or (token[:1] == "-" and token[1:].isdigit())


def accessor(path: Sequence[str]) -> Callable[[object], object]:
    """`resolve` for one `path`, compiled: plain dicts are read with direct `dict.get`s
    (one or two tokens), anything else goes through `resolve`, so the result is the same."""
    tokens = tuple(path)
    if len(tokens) == 1:
        (key,) = tokens

        def one(payload: object) -> object:
            if type(payload) is dict:
                return payload.get(key, MISSING)
            return resolve(payload, tokens)

        return one
    if len(tokens) == 2:
        first, second = tokens

        def two(payload: object) -> object:
            if type(payload) is dict:
                inner = payload.get(first, MISSING)
                if type(inner) is dict:
                    return inner.get(second, MISSING)
                if inner is MISSING:
                    return MISSING
            return resolve(payload, tokens)

        return two
    return lambda payload: resolve(payload, tokens)


# --- operators --------------------------------------------------------------------------
#
# Equality (eq, ne, in, not_in): numbers compare by value (5 equals 5.0), and a numeric
# string equals the number it spells, because Alertmanager labels are always strings while
# YAML reads `code: 500` as a number; an operator writing `500` means the number either
# way. Everything else must be equal and of the same JSON type: true is not 1, "yes" is
# not true, "5.0" is not "5". Ordering operators (gt gte lt lte) take numbers and numeric
# strings; any other value simply does not match. A missing path fails every operator
# except `exists: false`: each test below rejects MISSING by itself (it is no string, no
# number, no JSON value), and only the negations check for it, so nothing wraps a test.

Test = Callable[[object], bool]


def build_condition(path: str, op: str, operand: object) -> Condition:
    """One compiled `match` entry; ValueError names what is wrong with the operand."""
    builder = _BUILDERS.get(op)
    if builder is None:
        raise ValueError(f"unknown operator {op!r} (known: {', '.join(OPERATORS)})")
    return Condition(path=tuple(path.split(".")), op=op, operand=operand, test=builder(operand))


def index_key(condition: Condition) -> str | None:
    """The value an index may file `condition` under, or None when it may not.

    Only `eq` on a string that spells no number qualifies: its test is then exactly
    `type(value) is str and value == key`, so a dict look-up by the event's value (when
    that value is a `str`) decides it. Numbers, numeric strings, booleans and null compare
    across types (see above) and are left to the test itself.
    """
    operand = condition.operand
    if condition.op == "eq" and type(operand) is str and number(operand) is None:
        return operand
    return None


def split(
    conditions: Sequence[Condition], shared: dict[object, Test]
) -> tuple[dict[tuple[str, ...], str], tuple[Test, ...]]:
    """What an index on equality decides, and what is left to check on the payload.

    The first: per path, the value its first indexable `eq` names (see `index_key`). The
    second: every other entry as one call on the whole payload, `test(resolve(payload,
    path))` with one- and two-key paths into plain dicts read inline, cheapest first (all
    must hold, so the order changes nothing but the cost). Entries are built by
    `build_condition`, so two with the same path, operator and operand (the same by `repr`,
    which tells 5 from 5.0, "5" and true) test alike: they share one check from `shared`,
    which keeps what thousands of rules check few and hot in the CPU caches.
    """
    keys: dict[tuple[str, ...], str] = {}
    rest: list[Condition] = []
    for condition in conditions:
        key = index_key(condition)
        if key is not None and condition.path not in keys:
            keys[condition.path] = key
        else:
            rest.append(condition)
    rest.sort(key=lambda c: _COST.get(c.op, 2))
    checks = []
    for condition in rest:
        same = (condition.path, condition.op, repr(condition.operand))
        if (check := shared.get(same)) is None:
            check = shared[same] = _payload_check(condition.test, condition.path)
        checks.append(check)
    return keys, tuple(checks)


_COST = {"exists": 0, "eq": 1, "ne": 1, "in": 1, "not_in": 1}  # the others parse or search


def _payload_check(test: Test, path: tuple[str, ...]) -> Test:
    if len(path) == 1:
        (only,) = path
        return lambda payload: test(
            payload.get(only, MISSING) if type(payload) is dict else resolve(payload, path)
        )
    if len(path) != 2:
        return lambda payload: test(resolve(payload, path))
    first, second = path

    def check(payload: object) -> bool:
        if type(payload) is dict:
            inner = payload.get(first, MISSING)
            if type(inner) is dict:
                return test(inner.get(second, MISSING))
        return test(resolve(payload, path))

    return check


def number(value: object) -> int | float | None:
    """`value` as a number when it is one or a string spelling a finite one; else None."""
    if type(value) is str:  # the exact checks first: they are the common, cheap cases
        return _parse(value)
    if type(value) is int or type(value) is float:
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return _parse(value)
    return None


def _parse(text: str) -> float | None:
    try:
        parsed = float(text)
    except ValueError:
        return None
    return parsed if math.isfinite(parsed) else None


def _equal_to(operand: object) -> Test:
    if isinstance(operand, bool) or operand is None:
        return lambda value: value is operand
    wanted = number(operand)
    if wanted is None:
        kind = type(operand)
        return lambda value: type(value) is kind and value == operand
    if isinstance(operand, str):
        return lambda value: (
            value == operand or (not isinstance(value, str) and number(value) == wanted)
        )
    return lambda value: not isinstance(value, bool) and number(value) == wanted


def _not_equal_to(operand: object) -> Test:
    equal = _equal_to(operand)
    return lambda value: value is not MISSING and not equal(value)


def _member_of(operand: object) -> Test:
    if not isinstance(operand, list):
        raise ValueError(f"expected a list, got {operand!r}")
    strings = frozenset(item for item in operand if isinstance(item, str))
    numbers = frozenset(n for item in operand if (n := number(item)) is not None)
    singles = tuple(item for item in operand if isinstance(item, bool) or item is None)

    def test(value: object) -> bool:
        if isinstance(value, bool) or value is None:
            return any(value is item for item in singles)
        if isinstance(value, str) and value in strings:
            return True
        if isinstance(value, list | dict):
            return False
        return bool(numbers) and number(value) in numbers

    return test


def _not_member_of(operand: object) -> Test:
    member = _member_of(operand)
    return lambda value: value is not MISSING and not member(value)


def _ordered(compare: Callable[[float, float], bool]) -> Callable[[object], Test]:
    def build(operand: object) -> Test:
        bound = number(operand)
        if bound is None:
            raise ValueError(f"expected a number, got {operand!r}")

        def test(value: object) -> bool:
            seen = number(value)
            return seen is not None and compare(seen, bound)

        return test

    return build


def _searching(operand: object) -> Test:
    if not isinstance(operand, str):
        raise ValueError(f"expected a regular expression string, got {operand!r}")
    try:
        pattern = re.compile(operand)
    except re.error as exc:
        raise ValueError(f"bad regular expression {operand!r}: {exc}") from None
    if nested := _nested_quantifier(operand):
        raise ValueError(
            f"regular expression {operand!r} nests a repeat inside a repeat ({nested}): it "
            "can take exponential time on a crafted value; rewrite it without the nesting"
        )
    return lambda value: isinstance(value, str) and pattern.search(value) is not None


_REPEATS = {_parser.MAX_REPEAT, _parser.MIN_REPEAT, getattr(_parser, "POSSESSIVE_REPEAT", None)}


def _nested_quantifier(source: str) -> str | None:
    """The shape of a repeat nested in a repeat (`(a+)+`), the cause of catastrophic
    backtracking in Python's `re`, or None. Checked at load, so `validate` reports it."""
    return _scan(_parser.parse(source), inside=False)


def _scan(items: Iterable[tuple[Any, Any]], inside: bool) -> str | None:
    for op, arg in items:
        if op in _REPEATS:
            _low, high, sub = arg
            repeats = high is _parser.MAXREPEAT or high > 1
            if repeats and inside:
                return "a repeat of a repeat"
            # `(/[a-z]+)+`: each round starts with a character no inner repeat matches, so
            # the rounds cannot be split two ways: linear, allowed.
            if found := _scan(sub, inside or (repeats and not _delimited(sub))):
                return found
        elif op is _parser.SUBPATTERN:
            if found := _scan(arg[-1], inside):
                return found
        elif op is _parser.BRANCH:
            for branch in arg[1]:
                if found := _scan(branch, inside):
                    return found
    return None


def _delimited(body: Any) -> bool:
    """Whether a repeated `body` starts with a literal character no repeat inside matches."""
    items = list(body)
    while items and items[0][0] is _parser.SUBPATTERN:
        items = list(items[0][1][-1]) + items[1:]
    if not items or items[0][0] is not _parser.LITERAL:
        return False
    first = items[0][1]
    return not any(_could_match(item, first) for item in _repeated_items(body))


def _repeated_items(items: Iterable[tuple[Any, Any]]) -> Iterable[tuple[Any, Any]]:
    for op, arg in items:
        if op in _REPEATS:
            yield from arg[2]
        elif op is _parser.SUBPATTERN:
            yield from _repeated_items(arg[-1])
        elif op is _parser.BRANCH:
            for branch in arg[1]:
                yield from _repeated_items(branch)


def _could_match(item: tuple[Any, Any], code: int) -> bool:
    """Whether one regex item may match the character `code`; True when unsure."""
    op, arg = item
    if op is _parser.LITERAL:
        return bool(arg == code)
    if op is _parser.NOT_LITERAL:
        return bool(arg != code)
    if op is not _parser.IN:
        return True  # groups, categories, `.`: assume it may
    negate = any(o is _parser.NEGATE for o, _ in arg)
    hit = False
    for o, a in arg:
        if o is _parser.LITERAL:
            hit = hit or a == code
        elif o is _parser.RANGE:
            hit = hit or a[0] <= code <= a[1]
        elif o is _parser.CATEGORY and a in _CATEGORIES:
            hit = hit or _CATEGORIES[a](chr(code))
        elif o is not _parser.NEGATE:
            return True  # anything else: assume it may
    return hit != negate


_CATEGORIES: Mapping[Any, Callable[[str], bool]] = {
    _parser.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    _parser.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
    _parser.CATEGORY_DIGIT: str.isdigit,
    _parser.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    _parser.CATEGORY_SPACE: str.isspace,
    _parser.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
}


def _existing(operand: object) -> Test:
    if not isinstance(operand, bool):
        raise ValueError(f"expected true or false, got {operand!r}")
    return lambda value: (value is not MISSING) is operand


_BUILDERS: Mapping[str, Callable[[object], Test]] = {
    "eq": _equal_to,
    "ne": _not_equal_to,
    "gt": _ordered(operator.gt),
    "gte": _ordered(operator.ge),
    "lt": _ordered(operator.lt),
    "lte": _ordered(operator.le),
    "in": _member_of,
    "not_in": _not_member_of,
    "regex": _searching,
    "exists": _existing,
}
