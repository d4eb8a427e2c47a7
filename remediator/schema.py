"""The shape of a rule file: one JSON Schema, and readable messages for its violations.

`RULES_SCHEMA` (draft 2020-12) is what `remediator schema` prints for editors and
what the loader checks every file against before compiling it, so the two can
never disagree. `check` turns jsonschema's errors into short sentences anchored
at the offending key (`unknown key 'foo'`, `expected integer, got string`,
`unknown action kind 'shell' (known: http, publish, scale, ssh)`), without the
wall of `oneOf` alternatives jsonschema would print.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

STEP_KINDS = ("http", "publish", "scale", "ssh")
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PATH_PATTERN = r"^[^.]+(\.[^.]+)*$"
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"

_PATTERN_HINTS = {
    NAME_PATTERN: "names use only letters, digits, '_' and '-'",
    VAR_PATTERN: "variable names are identifiers (letters, digits and '_')",
    PATH_PATTERN: "a dotted path like labels.severity, without empty parts",
    DURATION_PATTERN: "not a duration (use 500ms, 30s, 5m, 1h, 1d or seconds)",
}

Where = tuple[str | int, ...]


def _typed(kind: str | list[str], description: str, **extra: object) -> dict[str, object]:
    return {"type": kind, "description": description, **extra}


def _text(description: str, **extra: object) -> dict[str, object]:
    return _typed("string", description, **extra)


def _templated_int(description: str) -> dict[str, object]:
    return _typed(["integer", "string"], f"{description} (or a template)")


def _duration(description: str) -> dict[str, object]:
    described = f"{description}: 500ms, 30s, 5m, 1h, 1d or seconds"
    return _typed(["number", "string"], described, minimum=0, pattern=DURATION_PATTERN)


def _array(description: str, items: Mapping[str, object], **extra: object) -> dict[str, object]:
    return _typed("array", description, items=items, **extra)


def _map(description: str, values: Mapping[str, object], **extra: object) -> dict[str, object]:
    return _typed("object", description, additionalProperties=values, **extra)


def _object(
    description: str,
    properties: Mapping[str, object],
    *,
    required: Sequence[str] = (),
    **extra: object,
) -> dict[str, object]:
    schema = _typed("object", description, properties=properties, additionalProperties=False)
    if required:
        schema["required"] = list(required)
    return schema | extra


def _one_of(*keys: str) -> dict[str, object]:
    return {"oneOf": [{"required": [key]} for key in keys]}


def _not_both(*keys: str) -> dict[str, object]:
    return {"not": {"required": list(keys)}}


_SCALARS = ["string", "number", "boolean", "null"]
_ANY = {"description": "any YAML value; strings in it are templates"}
_STATUSES = ["integer", "string", "array"]
_INTS = {"type": "integer"}


def _headers() -> dict[str, object]:
    return _map("header name -> value (templates)", {"type": ["string", "number", "boolean"]})


def _http() -> dict[str, object]:
    params = {"type": [*_SCALARS, "array"]}
    properties = {
        "method": _text("HTTP method; default GET"),
        "url": _text("URL to call (template)"),
        "headers": _headers(),
        "params": _map("query parameters (templates)", params),
        "json": _ANY | {"description": "JSON request body; strings in it are templates"},
        "body": _text("raw request body (template); exclusive with json"),
        "expect_status": _typed(_STATUSES, "accepted status code(s); default 2xx", items=_INTS),
        "verify_tls": _typed(
            ["boolean", "string"], "verify the server's certificate; default true"
        ),
    }
    return _object("call an HTTP API", properties, required=["url"]) | _not_both("json", "body")


def _ssh() -> dict[str, object]:
    args = {"type": ["string", "number", "boolean"]}
    properties = {
        "host": _text("host to connect to (template)"),
        "port": _templated_int("SSH port; default 22"),
        "user": _text("remote user"),
        "command": _text("command line to run (template); exclusive with script"),
        "script": _text("script sent on stdin to `sh -s --` (template)"),
        "args": _array("the script's positional parameters, each quoted", args),
        "expect_exit": _typed(_STATUSES, "accepted exit status(es); default [0]", items=_INTS),
    }
    ssh = _object("run a command or script over SSH", properties, required=["host"])
    return ssh | _one_of("command", "script")


def _scale() -> dict[str, object]:
    properties = {
        "provider": {"enum": ["kubernetes"], "description": "where the workload runs"},
        "namespace": _text("namespace of the workload"),
        "deployment": _text("Deployment to scale; exclusive with statefulset"),
        "statefulset": _text("StatefulSet to scale; exclusive with deployment"),
        "step": _templated_int("replicas to add (negative removes); exclusive with replicas"),
        "replicas": _templated_int("target replica count; exclusive with step"),
        "min_replicas": _templated_int("never scale below this"),
        "max_replicas": _templated_int("never scale above this"),
    }
    both = [_one_of("deployment", "statefulset"), _one_of("step", "replicas")]
    return _object("scale a Kubernetes workload", properties, allOf=both)


def _publish() -> dict[str, object]:
    properties = {
        "subject": _text("subject to publish to (template)"),
        "json": _ANY | {"description": "JSON payload; strings in it are templates"},
        "data": _text("raw payload (template); exclusive with json"),
        "headers": _headers(),
    }
    publish = _object("publish a NATS message", properties, required=["subject"])
    return publish | _not_both("json", "data")


def _retry() -> dict[str, object]:
    properties = {
        "attempts": _typed("integer", "total tries; default 1", minimum=1),
        "backoff": _duration("first delay; default 1s, doubling, with jitter"),
        "max_backoff": _duration("longest delay; default 30s"),
    }
    return _object("retry policy for transient failures", properties)


def _step() -> dict[str, object]:
    properties = {
        "name": _text("unique in its rule; default <kind>-<index>", pattern=NAME_PATTERN),
        "timeout": _duration("give up after this long; default 30s"),
        "retry": _retry(),
        "when": _text("Jinja expression; the step is skipped when it is false"),
        "continue_on_failure": _typed("boolean", "run the next steps even if this one fails"),
        "http": _http(),
        "publish": _publish(),
        "scale": _scale(),
        "ssh": _ssh(),
    }
    step = _object("one action step: exactly one of http, publish, scale, ssh", properties)
    return step | _one_of(*STEP_KINDS) | {"title": "step"}


def _operators() -> dict[str, object]:
    ordered = _typed(["number", "string"], "a number to compare with")
    properties = {
        "eq": _typed(_SCALARS, "equal to"),
        "ne": _typed(_SCALARS, "not equal to"),
        "gt": ordered,
        "gte": ordered,
        "lt": ordered,
        "lte": ordered,
        "in": _array("one of these values", {"type": _SCALARS}),
        "not_in": _array("none of these values", {"type": _SCALARS}),
        "regex": _text("Python regular expression searched in the string value"),
        "exists": _typed("boolean", "whether the path must be present"),
    }
    return _object("operators; all must hold", properties, minProperties=1)


def _throttle() -> dict[str, object]:
    properties = {
        "key": _text("template naming the throttle bucket; default one per rule"),
        "cooldown": _duration("at most one run per key per this long"),
        "max_runs": _typed("integer", "runs allowed per key per window", minimum=1),
        "window": _duration("the window max_runs counts in"),
        "escalate": _text("subject told once when the circuit opens"),
    }
    throttle = _object("limit how often the rule runs", properties)
    pairs = {"max_runs": ["window"], "window": ["max_runs"]}
    either = [{"required": ["cooldown"]}, {"required": ["max_runs"]}]
    return throttle | {"anyOf": either, "dependentRequired": pairs}


def _verify() -> dict[str, object]:
    properties = {
        "resolved_within": _duration("a resolving event must arrive within this"),
        "key": _text("template identifying the same alert; default event_id"),
        "escalate": _text("subject told when the alert is not resolved"),
    }
    return _object("check that the fix worked", properties, required=["resolved_within"])


def _match() -> dict[str, object]:
    entry = {"type": [*_SCALARS, "object"], "if": {"type": "object"}}
    entry["then"] = {"$ref": "#/$defs/operators"}
    names = {"pattern": PATH_PATTERN}
    return _map("dotted path -> value or operators", entry, propertyNames=names)


def _rule() -> dict[str, object]:
    on = _typed(["string", "array"], "NATS subject pattern(s): `*` one token, `>` the rest")
    steps = {"$ref": "#/$defs/step"}
    properties = {
        "name": _text("unique rule name", pattern=NAME_PATTERN),
        "description": _text("what the rule is for"),
        "on": on | {"minLength": 1, "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "match": _match(),
        "when": _text("Jinja expression that must be true for the rule to fire"),
        "priority": _typed("integer", "higher is evaluated first; default 0"),
        "stop": _typed("boolean", "a match stops lower-priority rules for the event"),
        "dry_run": _typed("boolean", "render and report, never execute"),
        "throttle": _throttle(),
        "vars": _map(
            "rendered once per event, in order", _ANY, propertyNames={"pattern": VAR_PATTERN}
        ),
        "actions": _array("steps, run in order", steps, minItems=1),
        "on_failure": _array("steps run after a step finally fails", steps),
        "verify": _verify(),
    }
    return _object("one rule", properties, required=["name", "on", "actions"])


def _build() -> dict[str, object]:
    root = _object(
        "a remediator rule file",
        {"rules": _array("the rules in this file", {"$ref": "#/$defs/rule"})},
        required=["rules"],
        patternProperties={"^x-": {"description": "free-form, e.g. YAML anchors to reuse"}},
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "remediator rules",
        **root,
        "$defs": {"rule": _rule(), "step": _step(), "operators": _operators()},
    }


RULES_SCHEMA: dict[str, object] = _build()


def schema_json() -> str:
    """The schema as indented JSON, for `remediator schema` and editors."""
    return json.dumps(RULES_SCHEMA, indent=2)


DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def as_draft_07(schema: Mapping[str, object]) -> dict[str, object]:
    """`schema` in draft-07 terms, for editors whose validator stops at draft 7 (the YAML
    language server of VS Code and others): `$defs` becomes `definitions` and
    `dependentRequired` becomes `dependencies`; nothing else here is newer than draft 7."""
    converted = _draft_07(schema)
    assert isinstance(converted, dict)
    return converted


def _draft_07(value: object) -> object:
    if isinstance(value, list):
        return [_draft_07(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    renamed = {"$defs": "definitions", "dependentRequired": "dependencies"}
    out: dict[str, object] = {}
    for key, item in value.items():
        if key == "$schema":
            out[key] = DRAFT_07
        elif key == "$ref" and isinstance(item, str):
            out[key] = item.replace("#/$defs/", "#/definitions/")
        else:
            out[renamed.get(str(key), str(key))] = _draft_07(item)
    return out


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(RULES_SCHEMA)


@dataclass(frozen=True, slots=True)
class Problem:
    """One violation: where in the document (keys and list indexes) and what is wrong."""

    where: Where
    message: str


def check(document: object) -> list[Problem]:
    """Every structural problem of one parsed rule file, each once."""
    seen: dict[Problem, None] = {}
    for error in _validator().iter_errors(document):
        for problem in _explain(error):
            seen.setdefault(problem, None)
    return list(seen)


# --- readable messages ------------------------------------------------------------------


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


def _listed(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value] if isinstance(value, list | tuple) else []


def _type(error: ValidationError, where: Where) -> Iterator[Problem]:
    names = _listed(error.validator_value)
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
    for key in _listed(error.validator_value):
        if key not in instance:
            yield Problem(where, f"missing required key {key!r}")


def _dependent(error: ValidationError, where: Where) -> Iterator[Problem]:
    instance = error.instance if isinstance(error.instance, Mapping) else {}
    dependencies = error.validator_value
    if not isinstance(dependencies, Mapping):
        return
    for key, needed in dependencies.items():
        for other in _listed(needed):
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
    options = ", ".join(repr(option) for option in _listed(error.validator_value))
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
