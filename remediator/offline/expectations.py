"""Expectations: a partial expected value, compared with what actually came out.

Only what the expectation gives is compared, recursively: a mapping names the
keys to check (others in the actual value are ignored), a list must have the
same length and each item is compared in turn, and a scalar must be equal
(numbers by value, but `true` is not `1`). A string ending in `...` is a prefix:
`"scaled web to ..."` accepts any string starting with `scaled web to ` (so a
literal `...` at the end still matches itself).

A failed comparison gives one `Mismatch` per differing path, and `diff` draws
the expectation against the same parts of the actual value, as a unified diff
of their YAML, so a reader sees at once what was expected and what came out.
"""

from __future__ import annotations

import difflib
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

ELLIPSIS = "..."


class _Absent(enum.Enum):
    ABSENT = "absent"

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent.ABSENT  # an expected key the actual value does not have


@dataclass(frozen=True, slots=True)
class Mismatch:
    path: str
    expected: object
    actual: object

    def __str__(self) -> str:
        wanted = show(self.expected)
        if is_prefix(self.expected):
            wanted = f"a string starting with {show(str(self.expected)[: -len(ELLIPSIS)])}"
        return f"{self.path or '(top)'}: expected {wanted}, got {show(self.actual)}"


def is_prefix(expected: object) -> bool:
    return isinstance(expected, str) and expected.endswith(ELLIPSIS)


def compare(expected: object, actual: object, path: str = "") -> list[Mismatch]:
    """Every path where `actual` does not satisfy the partial `expected`."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [Mismatch(path, expected, actual)]
        found: list[Mismatch] = []
        for key, wanted in expected.items():
            found += compare(wanted, actual.get(key, ABSENT), _join(path, key))
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list | tuple) or len(actual) != len(expected):
            return [Mismatch(path, expected, actual)]
        found = []
        for index, (wanted, got) in enumerate(zip(expected, actual, strict=True)):
            found += compare(wanted, got, f"{path}[{index}]")
        return found
    return [] if satisfies(expected, actual) else [Mismatch(path, expected, actual)]


def satisfies(expected: object, actual: object) -> bool:
    """One scalar against another: prefixes, numbers by value, booleans and null by identity."""
    if is_prefix(expected):
        assert isinstance(expected, str)
        return isinstance(actual, str) and actual.startswith(expected[: -len(ELLIPSIS)])
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    if isinstance(expected, int | float):
        return (
            isinstance(actual, int | float) and not isinstance(actual, bool) and actual == expected
        )
    return type(actual) is type(expected) and actual == expected


def project(expected: object, actual: object) -> object:
    """The parts of `actual` that `expected` speaks about, in its shape."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return {key: project(wanted, actual.get(key, ABSENT)) for key, wanted in expected.items()}
    if (
        isinstance(expected, list)
        and isinstance(actual, list | tuple)
        and _same_length(expected, actual)
    ):
        return [project(w, a) for w, a in zip(expected, actual, strict=True)]
    return actual


def _same_length(expected: list[object], actual: list[object] | tuple[object, ...]) -> bool:
    return len(expected) == len(actual)


def diff(expected: object, actual: object) -> list[str]:
    """A unified diff of the expectation against the matching parts of `actual`."""
    wanted = _yaml(expected).splitlines()
    got = _yaml(project(expected, actual)).splitlines()
    return list(difflib.unified_diff(wanted, got, "expected", "actual", lineterm="", n=3))


def show(value: object) -> str:
    if value is ABSENT:
        return "nothing (the key is missing)"
    plain = _plain(value)
    text = repr(plain) if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


def _yaml(value: object) -> str:
    return yaml.dump(_plain(value), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _plain(value: object) -> object:
    if value is ABSENT:
        return "<absent>"
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class _Dumper(yaml.SafeDumper):
    """Block style, and multi-line strings as `|` blocks so scripts diff line by line."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)
