"""Valid or not, without jsonschema's walk: a predicate compiled once from the rule schema.

Most rule files are valid, and jsonschema's walk of a valid file costs more than
reading it. `valid` answers from plain Python checks compiled from the same
schema (the keywords it uses); only a file it refuses goes to jsonschema
(`remediator.rules.schemacheck`) for the messages.
"""

from __future__ import annotations

import functools
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

from remediator.rules.schema import RULES_SCHEMA


def listed(value: object) -> list[str]:
    """A keyword value that may be one name or a list of them, as a list."""
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value] if isinstance(value, list | tuple) else []


Valid = Callable[[object], bool]

_PLAIN: dict[str, type] = {"array": list, "boolean": bool, "object": dict, "string": str}
_NUMERIC: dict[str, Valid] = {  # as jsonschema's draft 2020-12 type checker: no bools
    "integer": lambda v: (
        not isinstance(v, bool)
        and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
    ),
    "number": lambda v: not isinstance(v, bool) and isinstance(v, numbers.Number),
}
_ANNOTATIONS = frozenset({"$schema", "$defs", "title", "description", "then"})  # `then`: with `if`


@functools.cache
def valid() -> Valid:
    return _Compiler(RULES_SCHEMA).compile(RULES_SCHEMA)


# The closures below loop with `for` rather than all() over a generator: the predicate
# runs for every key of every rule at start-up, and a generator per call costs more
# than the check it wraps.


def _all(checks: list[Valid]) -> Valid:
    if len(checks) == 1:
        return checks[0]

    def every(v: object) -> bool:
        for check in checks:  # noqa: SIM110 (see above)
            if not check(v):
                return False
        return True

    return every


def _of(kind: type, check: Callable[[Any], bool]) -> Valid:
    """`check` applied to values of `kind`; others pass, as the keyword ignores them."""
    return lambda v: not isinstance(v, kind) or check(v)


def _each_value(subs: Mapping[str, Valid]) -> Callable[[dict[str, object]], bool]:
    def check(obj: dict[str, object]) -> bool:
        for key, value in obj.items():
            sub = subs.get(key)
            if sub is not None and not sub(value):
                return False
        return True

    return check


def _each_item(sub: Valid) -> Callable[[list[object]], bool]:
    def check(array: list[object]) -> bool:
        for item in array:  # noqa: SIM110 (see above)
            if not sub(item):
                return False
        return True

    return check


class _Compiler:
    """Each keyword of a subschema becomes a closure, and the subschema their conjunction;
    `$ref`s are looked up in the compiled `$defs` when called."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.defs: dict[str, Valid] = {}
        self.defs.update({name: self.compile(sub) for name, sub in root["$defs"].items()})

    def compile(self, schema: Mapping[str, Any]) -> Valid:
        checks = []
        for key, value in schema.items():
            if key in _ANNOTATIONS:
                continue
            build = getattr(self, "k_" + key.lstrip("$"), None)
            if build is None:
                raise TypeError(f"the schema predicate does not know the keyword {key!r}")
            checks.append(build(value, schema))
        return _all(checks or [lambda v: True])

    def k_type(self, types: Any, _: object) -> Valid:
        if unknown := set(listed(types)) - {*_PLAIN, *_NUMERIC, "null"}:
            raise TypeError(f"the schema predicate does not know the types {unknown}")
        plain = tuple(_PLAIN[name] for name in listed(types) if name in _PLAIN)
        numeric = [_NUMERIC[name] for name in listed(types) if name in _NUMERIC]
        none = "null" in listed(types)
        return lambda v: isinstance(v, plain) or (v is None and none) or any(n(v) for n in numeric)

    def k_properties(self, properties: Mapping[str, Any], _: object) -> Valid:
        subs = {name: self.compile(sub) for name, sub in properties.items()}
        return _of(dict, _each_value(subs))

    def k_patternProperties(self, patterns: Mapping[str, Any], _: object) -> Valid:
        subs = [
            (re.compile(pattern).search, self.compile(sub)) for pattern, sub in patterns.items()
        ]
        return _of(dict, lambda obj: all(s(v) for k, v in obj.items() for p, s in subs if p(k)))

    def k_additionalProperties(self, extra: Any, schema: Mapping[str, Any]) -> Valid:
        known = schema.get("properties", {})
        patterns = "|".join(schema.get("patternProperties", {}))
        free = re.compile(patterns).search if patterns else lambda key: None
        sub = self.compile(extra) if extra is not False else lambda v: False
        return _of(
            dict, lambda obj: all(sub(v) for k, v in obj.items() if k not in known and not free(k))
        )

    def k_propertyNames(self, names: Mapping[str, Any], _: object) -> Valid:
        sub = self.compile(names)
        return _of(dict, lambda obj: all(sub(key) for key in obj))

    def k_required(self, keys: list[str], _: object) -> Valid:
        return _of(dict, lambda obj: all(key in obj for key in keys))

    def k_dependentRequired(self, pairs: Mapping[str, list[str]], _: object) -> Valid:
        return _of(
            dict, lambda obj: all(o in obj for k, os in pairs.items() if k in obj for o in os)
        )

    def k_minProperties(self, least: int, _: object) -> Valid:
        return _of(dict, lambda obj: len(obj) >= least)

    def k_items(self, items: Mapping[str, Any], _: object) -> Valid:
        return _of(list, _each_item(self.compile(items)))

    def k_minItems(self, least: int, _: object) -> Valid:
        return _of(list, lambda array: len(array) >= least)

    def k_minLength(self, least: int, _: object) -> Valid:
        return _of(str, lambda text: len(text) >= least)

    def k_pattern(self, pattern: str, _: object) -> Valid:
        search = re.compile(pattern).search
        return _of(str, lambda text: search(text) is not None)

    def k_minimum(self, least: float, _: object) -> Valid:
        number = _NUMERIC["number"]
        return lambda v: not number(v) or not v < least  # type: ignore[operator]

    def k_enum(self, options: list[object], _: object) -> Valid:
        if not all(isinstance(option, str) for option in options):
            raise TypeError(f"the schema predicate compares only strings, not {options!r}")
        return lambda v: isinstance(v, str) and v in options

    def k_oneOf(self, subs: list[Mapping[str, Any]], _: object) -> Valid:
        checks = [self.compile(sub) for sub in subs]
        return lambda v: sum(1 for check in checks if check(v)) == 1

    def k_anyOf(self, subs: list[Mapping[str, Any]], _: object) -> Valid:
        checks = [self.compile(sub) for sub in subs]
        return lambda v: any(check(v) for check in checks)

    def k_allOf(self, subs: list[Mapping[str, Any]], _: object) -> Valid:
        return _all([self.compile(sub) for sub in subs])

    def k_not(self, sub: Mapping[str, Any], _: object) -> Valid:
        check = self.compile(sub)
        return lambda v: not check(v)

    def k_if(self, sub: Mapping[str, Any], schema: Mapping[str, Any]) -> Valid:
        condition, then = self.compile(sub), self.compile(schema.get("then", {}))
        return lambda v: not condition(v) or then(v)

    def k_ref(self, ref: str, _: object) -> Valid:
        name = ref.removeprefix("#/$defs/")
        if name == ref:
            raise TypeError(f"the schema predicate follows only #/$defs/ references, not {ref!r}")
        return lambda v: self.defs[name](v)
