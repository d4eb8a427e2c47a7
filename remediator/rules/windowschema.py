"""The schema of when and how much a rule acts: `schedule`, `windows`, `concurrency` and
`verify.escalate_rule` (SPEC §15, §17).

Kept beside `schema` (which imports these pieces) so that the rule schema stays one
readable page; the values the schema cannot judge (cron expressions, time zones,
date-times, ranges) are checked when the loader compiles them.
"""

from __future__ import annotations

from remediator.rules.windows import DAYS, HOURS_PATTERN

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
DURATION = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"  # as schema.DURATION_PATTERN


def _text(description: str, **extra: object) -> dict[str, object]:
    return {"type": "string", "description": description, **extra}


def _closed(description: str, properties: dict[str, object], **extra: object) -> dict[str, object]:
    shape = {"type": "object", "description": description, "properties": properties}
    return shape | {"additionalProperties": False, **extra}


def _duration(description: str) -> dict[str, object]:
    described = f"{description}: 500ms, 30s, 5m, 1h, 1d or seconds"
    return {"type": ["number", "string"], "description": described, "minimum": 0} | {
        "pattern": DURATION
    }


def schedule() -> dict[str, object]:
    every = _duration("run every this long (ticks aligned to the clock: 5m is :00, :05...)")
    cron = _text("a cron expression, `m h dom mon dow` (e.g. `*/5 * * * *`)", minLength=1)
    tz = _text("the time zone the cron expression is read in; default UTC", minLength=1)
    described = "run on a clock instead of on an event (replaces `on` and `match`)"
    one_of = {"oneOf": [{"required": ["every"]}, {"required": ["cron"]}]}
    return _closed(described, {"every": every, "cron": cron, "tz": tz}) | one_of


def windows() -> dict[str, object]:
    day = {"type": "string", "enum": list(DAYS)}
    allow = _closed(
        "a window in which the rule may act; days and hours are each optional",
        {
            "days": {"type": "array", "description": "weekdays", "items": day, "minItems": 1},
            "hours": _text("HH:MM-HH:MM; may cross midnight (22:00-06:00)", pattern=HOURS_PATTERN),
            "tz": _text("IANA time zone of days and hours; default UTC"),
        },
    )
    deny = _closed(
        "a period in which the rule never acts (a freeze); wins over allow",
        {
            "from": _text("ISO-8601 date-time it starts (2026-12-24T00:00:00Z)"),
            "to": _text("ISO-8601 date-time it ends"),
        },
        required=["from", "to"],
    )
    return _closed(
        "when this rule may act; outside: status outside_window, nothing runs",
        {
            "allow": {"type": "array", "description": "no allow: always", "items": allow},
            "deny": {"type": "array", "description": "deny wins over allow", "items": deny},
        },
    )


def concurrency() -> dict[str, object]:
    wait = "a run waits this long for a free slot, then `throttled`; default 10m"
    return _closed(
        "runs in flight at once per group, across every replica",
        {
            "key": _text("template naming the group (a cluster); default one per rule"),
            "max": {"type": "integer", "minimum": 1, "description": "runs at once per group"},
            "wait": _duration(wait),
        },
        required=["max"],
    )


def escalate_rule() -> dict[str, object]:
    return _text("not resolved: fire this rule with the same event", pattern=NAME_PATTERN)
