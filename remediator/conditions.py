"""Conditions: the `match` entries of a rule, each a payload path and a compiled test.

This module owns what one `match` entry means. `resolve` reads a dotted path out
of a payload (integers index lists; a missing path is `MISSING`, never an
exception), and `build_condition` compiles an operator and its operand once, at
load, into a `Condition` whose `test` is a plain function of the value found: its
regex compiled, its numbers converted, a bad operand a `ValueError` naming what is
wrong. The equality and ordering rules of the operators are spelled out below.
Which rules an event reaches, and in what order, is `matching`'s concern.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence

from remediator.model import Condition

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


# --- operators --------------------------------------------------------------------------
#
# Equality (eq, ne, in, not_in): numbers compare by value (5 equals 5.0), and a numeric
# string equals the number it spells, because Alertmanager labels are always strings while
# YAML reads `code: 500` as a number; an operator writing `500` means the number either
# way. Everything else must be equal and of the same JSON type: true is not 1, "yes" is
# not true, "5.0" is not "5". Ordering operators (gt gte lt lte) take numbers and numeric
# strings; any other value simply does not match. A missing path fails every operator
# except `exists: false`.

Test = Callable[[object], bool]


def build_condition(path: str, op: str, operand: object) -> Condition:
    """One compiled `match` entry; ValueError names what is wrong with the operand."""
    builder = _BUILDERS.get(op)
    if builder is None:
        raise ValueError(f"unknown operator {op!r} (known: {', '.join(OPERATORS)})")
    test = builder(operand)
    if op != "exists":
        test = _present(test)
    return Condition(path=tuple(path.split(".")), op=op, operand=operand, test=test)


def _present(test: Test) -> Test:
    return lambda value: value is not MISSING and test(value)


def number(value: object) -> int | float | None:
    """`value` as a number when it is one or a string spelling a finite one; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def _equal_to(operand: object) -> Test:
    if isinstance(operand, bool) or operand is None:
        return lambda value: value is operand
    wanted = number(operand)
    if wanted is None:
        return lambda value: type(value) is type(operand) and value == operand
    if isinstance(operand, str):
        return lambda value: (
            value == operand or (not isinstance(value, str) and number(value) == wanted)
        )
    return lambda value: not isinstance(value, bool) and number(value) == wanted


def _not_equal_to(operand: object) -> Test:
    equal = _equal_to(operand)
    return lambda value: not equal(value)


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
    return lambda value: not member(value)


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
    return lambda value: isinstance(value, str) and pattern.search(value) is not None


def _existing(operand: object) -> Test:
    if not isinstance(operand, bool):
        raise ValueError(f"expected true or false, got {operand!r}")
    return lambda value: (value is not MISSING) is operand


_BUILDERS: Mapping[str, Callable[[object], Test]] = {
    "eq": _equal_to,
    "ne": _not_equal_to,
    "gt": _ordered(lambda seen, bound: seen > bound),
    "gte": _ordered(lambda seen, bound: seen >= bound),
    "lt": _ordered(lambda seen, bound: seen < bound),
    "lte": _ordered(lambda seen, bound: seen <= bound),
    "in": _member_of,
    "not_in": _not_member_of,
    "regex": _searching,
    "exists": _existing,
}
