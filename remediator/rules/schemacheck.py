"""Schema violations in words: a parsed rule file checked against `RULES_SCHEMA`.

This module owns turning jsonschema's errors into `Problem`s: short sentences
anchored at the offending key (`unknown key 'foo' (did you mean 'food'?)`,
`expected integer, got string`, `unknown action kind 'shell' (known: http,
publish, scale, ssh)`), one handler per JSON Schema keyword, without the wall of
`oneOf` alternatives jsonschema would print. The schema itself lives in `schema`;
`check` is what the loader calls before compiling a file.

Most files are valid, and jsonschema's walk of a valid file costs more than reading it.
So `check` first asks a predicate compiled once from the same schema (the keywords
`RULES_SCHEMA` uses, with jsonschema's meaning), and only a file it refuses is walked by
jsonschema (imported then), for the messages. The predicate refuses to compile a keyword
it does not know, so the schema cannot outgrow it unnoticed.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remediator.rules.schema import (
    DURATION_PATTERN,
    NAME_PATTERN,
    PATH_PATTERN,
    RULES_SCHEMA,
    STEP_KINDS,
    VAR_PATTERN,
)
from remediator.rules.schemapredicate import listed, valid

if TYPE_CHECKING:  # jsonschema is imported when a file is invalid, not at start-up
    import jsonschema
    from jsonschema.exceptions import ValidationError

Where = tuple[str | int, ...]  # keys and list indexes from the document root

_PATTERN_HINTS = {
    NAME_PATTERN: "names use only letters, digits, '_' and '-'",
    VAR_PATTERN: "variable names are identifiers (letters, digits and '_')",
    PATH_PATTERN: "a dotted path like labels.severity, without empty parts",
    DURATION_PATTERN: "not a duration (use 500ms, 30s, 5m, 1h, 1d or seconds)",
}


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema

    return jsonschema.Draft202012Validator(RULES_SCHEMA)


@dataclass(frozen=True, slots=True)
class Problem:
    """One violation: where in the document (keys and list indexes) and what is wrong."""

    where: Where
    message: str


def check(document: object) -> list[Problem]:
    """Every structural problem of one parsed rule file, each once."""
    if valid()(document):
        return []
    seen: dict[Problem, None] = {}
    for error in _validator().iter_errors(document):
        for problem in _explain(error):
            seen.setdefault(problem, None)
    return list(seen)


# --- one handler per JSON Schema keyword ------------------------------------------------


def _explain(error: ValidationError) -> Iterator[Problem]:
    where: Where = tuple(error.absolute_path)
    handler = _HANDLERS.get(str(error.validator))
    if handler is None:
        yield Problem(where, error.message)
    else:
        yield from handler(error, where)


def json_type(value: object) -> str:
    """The JSON name of `value`'s type, as schema messages say it."""
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (Mapping, "object"),
    (type(None), "null"),
)


def _type(error: ValidationError, where: Where) -> Iterator[Problem]:
    names = listed(error.validator_value)
    wanted = " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"
    got = json_type(error.instance)
    if not where:
        wanted = "a mapping with `rules:`, a list of rules"
    yield Problem(where, f"expected {wanted}, got {got}")


def _unknown_keys(error: ValidationError, where: Where) -> Iterator[Problem]:
    instance, schema = error.instance, error.schema
    if not isinstance(instance, Mapping) or not isinstance(schema, Mapping):
        yield Problem(where, error.message)
        return
    known = list(schema.get("properties", {}))
    free = [re.compile(pattern) for pattern in schema.get("patternProperties", {})]
    kinds = set(_unknown_kinds(instance, known)) if schema.get("title") == "step" else set()
    for key in instance:
        if key in kinds:
            yield Problem((*where, key), f"unknown action kind {key!r} ({_known(STEP_KINDS)})")
        elif key not in known and not any(pattern.search(str(key)) for pattern in free):
            yield Problem((*where, key), f"unknown key {key!r}{_suggest(str(key), known)}")


def _unknown_kinds(step: Mapping[str, object], known: Sequence[str]) -> list[str]:
    """In a step without a known kind, the unknown keys that stand where a kind would."""
    if any(kind in step for kind in STEP_KINDS):
        return []
    fields = [key for key in known if key not in STEP_KINDS]
    return [
        key
        for key in step
        if key not in known and not difflib.get_close_matches(str(key), fields, n=1)
    ]


def _known(kinds: Sequence[str]) -> str:
    return "known: " + ", ".join(sorted(kinds))


def _suggest(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _required_branches(branches: object) -> list[str] | None:
    """['a', 'b'] for oneOf/anyOf [{required: [a]}, {required: [b]}]; None otherwise."""
    if not isinstance(branches, list):
        return None
    keys = []
    for branch in branches:
        if not (isinstance(branch, Mapping) and list(branch) == ["required"]):
            return None
        keys.extend(branch["required"])
    return keys


def _alternatives(error: ValidationError, where: Where) -> Iterator[Problem]:
    keys = _required_branches(error.validator_value)
    instance, schema = error.instance, error.schema
    if keys is None or not isinstance(instance, Mapping) or not isinstance(schema, Mapping):
        from jsonschema.exceptions import best_match

        best = best_match(error.context or ())
        yield from _explain(best) if best is not None else [Problem(where, error.message)]
        return
    present = [key for key in keys if key in instance]
    is_step = schema.get("title") == "step"
    if is_step and not present:
        if not _unknown_kinds(instance, list(schema.get("properties", {}))):
            yield Problem(where, f"a step needs an action kind ({_known(keys)})")
    elif is_step:
        yield Problem(where, f"a step has exactly one action kind, found {', '.join(present)}")
    elif not present:
        yield Problem(where, f"needs {' or '.join(keys)}")
    elif error.validator == "oneOf":
        yield Problem(where, f"use only one of {', '.join(present)}")


def _excluded(error: ValidationError, where: Where) -> Iterator[Problem]:
    keys = _required_branches([error.validator_value])
    if keys is None:
        yield Problem(where, error.message)
    else:
        yield Problem(where, f"use only one of {', '.join(keys)}")


def _required(error: ValidationError, where: Where) -> Iterator[Problem]:
    instance = error.instance if isinstance(error.instance, Mapping) else {}
    for key in listed(error.validator_value):
        if key not in instance:
            yield Problem(where, f"missing required key {key!r}")


def _dependent(error: ValidationError, where: Where) -> Iterator[Problem]:
    instance = error.instance if isinstance(error.instance, Mapping) else {}
    dependencies = error.validator_value
    if not isinstance(dependencies, Mapping):
        return
    for key, needed in dependencies.items():
        for other in listed(needed):
            if key in instance and other not in instance:
                yield Problem((*where, key), f"{key} needs {other} as well")


def _pattern(error: ValidationError, where: Where) -> Iterator[Problem]:
    pattern = str(error.validator_value)
    hint = _PATTERN_HINTS.get(pattern, f"does not match {pattern}")
    if "propertyNames" in error.schema_path:  # the offending thing is a key, not a value
        where = (*where, str(error.instance))
    yield Problem(where, f"{error.instance!r}: {hint}")


def _bound(error: ValidationError, where: Where) -> Iterator[Problem]:
    limit = error.validator_value
    if error.validator == "minimum":
        yield Problem(where, f"must be at least {limit}")
    elif limit == 1:
        yield Problem(where, "must not be empty")
    else:
        yield Problem(where, f"needs at least {limit} entries")


def _enum(error: ValidationError, where: Where) -> Iterator[Problem]:
    options = ", ".join(repr(option) for option in listed(error.validator_value))
    yield Problem(where, f"expected one of {options}, got {error.instance!r}")


_HANDLERS = {
    "type": _type,
    "additionalProperties": _unknown_keys,
    "oneOf": _alternatives,
    "anyOf": _alternatives,
    "not": _excluded,
    "required": _required,
    "dependentRequired": _dependent,
    "pattern": _pattern,
    "minimum": _bound,
    "minItems": _bound,
    "minLength": _bound,
    "minProperties": _bound,
    "enum": _enum,
}
