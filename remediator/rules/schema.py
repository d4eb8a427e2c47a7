"""The shape of a rule file: one JSON Schema, the single source of truth for editors and loader.

This module owns the schema document itself. `RULES_SCHEMA` (draft 2020-12) is
built here from small described pieces, with the names the rest of the code
shares (`STEP_KINDS`, the key and duration patterns); `schema_json` is what
`remediator schema` prints, and `as_draft_07` the same schema for editors whose
validator stops at draft 7. The loader checks every file against this very
schema (through `schemacheck`, which owns the readable messages), so the editor
and the loader can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

STEP_KINDS = ("http", "kubernetes", "prometheus", "publish", "scale", "ssh")
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PATH_PATTERN = r"^[^.]+(\.[^.]+)*$"
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"


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
        "follow_redirects": _typed(
            ["boolean", "string"],
            "follow 3xx answers (at most 10; the step's headers stay with the first origin); "
            "default false",
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


def _kubernetes() -> dict[str, object]:
    namespace = _text("namespace; default: default")
    workloads = ("deployment", "statefulset", "daemonset")
    restart = _object(
        "a rollout restart, as `kubectl rollout restart` does it",
        {"namespace": namespace} | {w: _text(f"the {w} to restart") for w in workloads},
    )
    evict = _object(
        "evict a pod through the Eviction API (PodDisruptionBudgets hold)",
        {
            "namespace": namespace,
            "pod": _text("the pod to evict"),
            "grace_period": _templated_int("seconds the pod gets to stop; default its own"),
        },
        required=["pod"],
    )
    node = {"node": _text("the node")}
    patch = _object(
        "patch any object, found by apiVersion and kind through discovery",
        {
            "api_version": _text("v1 or group/version, e.g. apps/v1"),
            "kind": _text("the object's kind, e.g. ConfigMap"),
            "namespace": namespace,
            "name": _text("the object's name"),
            "type": {"enum": ["merge", "strategic", "json"], "description": "patch format"},
            "body": _ANY | {"description": "the patch: a mapping, or for json a list"},
        },
        required=["api_version", "kind", "name", "type", "body"],
    )
    properties = {
        "restart": restart | _one_of(*workloads),
        "evict": evict,
        "cordon": _object("mark a node unschedulable", node, required=["node"]),
        "uncordon": _object("mark a node schedulable again", node, required=["node"]),
        "patch": patch,
    }
    operations = ("restart", "evict", "cordon", "uncordon", "patch")
    return _object("act on Kubernetes objects", properties) | _one_of(*operations)


def _prometheus() -> dict[str, object]:
    properties = {
        "query": _text("PromQL instant query (template)", minLength=1),
        "url": _text("the Prometheus to ask (template); default: the config's prometheus.url"),
    }
    description = "ask Prometheus; output: value (first sample or null), values, query"
    return _object(description, properties, required=["query"])


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
        "kubernetes": _kubernetes(),
        "prometheus": _prometheus(),
        "publish": _publish(),
        "scale": _scale(),
        "ssh": _ssh(),
    }
    step = _object(f"one action step: exactly one of {', '.join(STEP_KINDS)}", properties)
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
        "regex": _text("regular expression (Python syntax, RE2 engine) found in the string"),
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
    bound = _typed("number", "the query's value must be {} this for the fix to hold")
    properties = {
        "resolved_within": _duration("a resolving event must arrive within this"),
        "key": _text("template identifying the same alert; default event_id"),
        "escalate": _text("subject told when the alert is not resolved"),
        "query": _text("PromQL asked until it holds (template); exclusive with resolved_within"),
        "below": bound | {"description": "holds when the query's value is below this"},
        "above": bound | {"description": "holds when the query's value is above this"},
        "within": _duration("the query must hold within this"),
        "every": _duration("ask again this often; default 30s"),
    }
    by_query = {key: ["query"] for key in ("below", "above", "within", "every")}
    verify = _object("check that the fix worked: by a resolving event, or by a query", properties)
    return verify | {
        "oneOf": [{"required": ["resolved_within"]}, {"required": ["query"]}],
        "dependentRequired": by_query | {"query": ["within"]},
        "if": {"required": ["query"]},
        "then": _one_of("below", "above"),
    }


def _group_by() -> dict[str, object]:
    return _text("template naming the group (its own window or timer); default one per rule")


def _correlate() -> dict[str, object]:
    properties = {
        "count": _typed("integer", "matching events of one group that fire the rule", minimum=1),
        "within": _duration("the window the count must be reached in"),
        "group_by": _group_by(),
    }
    description = "fire once when `count` events of one group arrive within `within`"
    return _object(description, properties, required=["count", "within"])


def _absent() -> dict[str, object]:
    properties = {
        "within": _duration("fire when a group has had no matching event this long"),
        "group_by": _group_by(),
    }
    description = "fire when a group that has sent matching events falls silent"
    return _object(description, properties, required=["within"])


def _approval() -> dict[str, object]:
    properties = {
        "timeout": _duration("no decision within this: expired and escalated; default 30m"),
        "notify": _array("steps run when the request is made (a chat webhook)", _STEP_REF),
    }
    return _object("ask a human before the actions run", properties)


_STEP_REF = {"$ref": "#/$defs/step"}


def _schedule() -> dict[str, object]:
    every = _duration("run every this long (ticks aligned to the clock: 5m is :00, :05...)")
    cron = _text("a cron expression, `m h dom mon dow` (e.g. `*/5 * * * *`)", minLength=1)
    tz = _text("the time zone the cron expression is read in; default UTC", minLength=1)
    described = "run on a clock instead of on an event (replaces `on` and `match`)"
    return _object(described, {"every": every, "cron": cron, "tz": tz}) | _one_of("every", "cron")


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
        "correlate": _correlate(),
        "absent": _absent(),
        "approval": _approval(),
        "schedule": _schedule(),
    }
    rule = _object("one rule", properties, required=["name", "actions"])
    # A rule listens on subjects or runs on a clock; a clock has no event to match.
    only = [_not_both(*pair) for pair in (("correlate", "absent"), ("schedule", "match"))]
    return rule | {"allOf": [_one_of("on", "schedule"), *only]}


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
