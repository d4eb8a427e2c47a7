"""The shape of a rule test case file (`NAME.cases.yaml`), as a JSON Schema.

`remediator schema --cases` prints it for editors; `rulecases` checks every case
file against it before reading one, so problems are reported with file and line.
"""

from __future__ import annotations

from remediator.offline.answers import ANSWERS
from remediator.rules.schema import DURATION_PATTERN

SKIPPED = "skipped"

_SCALAR_HEADER = {"type": ["string", "number", "boolean"]}
_STEP_EXPECTATION = {
    "description": "the step's rendered request (partial), or `skipped`",
    "anyOf": [{"type": "object"}, {"const": SKIPPED}],
}
_EXPECT = {
    "type": "object",
    "description": "what the event must do",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "fired": {
            "type": "array",
            "description": "exactly the rules that fire, in any order ([] = none)",
            "items": {"type": "string"},
        },
        "steps": {
            "type": "object",
            "description": "rule -> step -> partial rendered request",
            "additionalProperties": {"type": "object", "additionalProperties": _STEP_EXPECTATION},
        },
    },
}
_DURATION = {"type": ["number", "string"], "minimum": 0, "pattern": DURATION_PATTERN}
_HEADERS = {"type": "object", "additionalProperties": _SCALAR_HEADER}
_SEQUENCED = {
    "type": "object",
    "additionalProperties": False,
    "required": ["event"],
    "properties": {
        "after": _DURATION | {"description": "time since the previous event; default 0"},
        "subject": {"type": "string", "minLength": 1, "description": "default: the case's"},
        "headers": _HEADERS,
        "event": {"type": "object", "description": "the event's JSON payload"},
    },
}
_CASE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "expect"],
    "oneOf": [{"required": ["event"]}, {"required": ["events"]}, {"required": ["tick"]}],
    # An event needs its subject; a tick is the scheduled rules' own event.
    "dependentRequired": {"event": ["subject"], "events": ["subject"]},
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "what the case shows"},
        "subject": {"type": "string", "minLength": 1, "description": "the event's subject"},
        "headers": _HEADERS,
        "event": {"type": "object", "description": "the event's JSON payload"},
        "events": {
            "type": "array",
            "minItems": 1,
            "description": "several events in order, on a simulated clock",
            "items": _SEQUENCED,
        },
        "tick": {
            "type": "string",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$",
            "description": "a clock tick (ISO 8601): the scheduled rules due then fire",
        },
        "advance": _DURATION | {"description": "time that passes before the expectation"},
        "answers": ANSWERS,
        "expect": _EXPECT,
    },
}
CASES_SCHEMA: dict[str, object] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "remediator rule test cases",
    "type": "object",
    "additionalProperties": False,
    "required": ["cases"],
    "properties": {"cases": {"type": "array", "items": _CASE}},
    "patternProperties": {"^x-": {"description": "free-form, e.g. YAML anchors to reuse"}},
}
