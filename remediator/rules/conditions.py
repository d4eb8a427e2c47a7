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
import math
import operator
from collections.abc import Callable, Mapping, Sequence

from remediator.model import Condition
from remediator.rules.regexes import compile_search

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
    search = compile_search(operand)
    return lambda value: isinstance(value, str) and search(value)


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
