"""The rule-file JSON Schema: valid draft 2020-12, described for editors, and readable errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

from remediator.rules.schema import RULES_SCHEMA, STEP_KINDS, schema_json
from remediator.rules.schemacheck import Problem, check

OK = Path(__file__).parent / "data" / "rules_ok"


def rule(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "r", "on": "a.b", "actions": [{"publish": {"subject": "x"}}]}
    return {"rules": [base | fields]}


def step(**fields: object) -> dict[str, object]:
    return rule(actions=[fields])


def messages(document: object) -> list[tuple[tuple[str | int, ...], str]]:
    return [(problem.where, problem.message) for problem in check(document)]


def test_the_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(RULES_SCHEMA)
    assert RULES_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_json_is_the_schema_indented() -> None:
    text = schema_json()
    assert json.loads(text) == RULES_SCHEMA
    assert text.startswith('{\n  "')


def properties(node: object, where: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(node, dict):
        for name, value in node.get("properties", {}).items():
            yield f"{where}.{name}", value
        for key, value in node.items():
            yield from properties(value, f"{where}.{key}" if key != "properties" else where)
    elif isinstance(node, list):
        for item in node:
            yield from properties(item, where)


def test_every_property_has_a_description() -> None:
    missing = [
        where
        for where, value in properties(RULES_SCHEMA)
        if not (isinstance(value, dict) and value.get("description"))
    ]
    assert missing == []


def good_files() -> list[Path]:
    return sorted(p for p in OK.rglob("*.y*ml") if ".hidden" not in p.parts)


@pytest.mark.parametrize("path", good_files(), ids=lambda p: p.name)
def test_good_files_are_accepted(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    for entry in document["rules"]:
        entry["on"] = entry.pop(True)  # YAML 1.1 reads the key `on` as true; the loader does not
    assert check(document) == []


@pytest.mark.parametrize(
    "document",
    [
        rule(on=["a.*", "b.>"], priority=-3, stop=True, dry_run=True, description="d"),
        rule(match={"a.b": 1, "c": None, "d": {"in": [1, "x", None]}, "e": {"exists": False}}),
        rule(match={"v": {"gt": "90", "lte": 100.5, "regex": "^x", "ne": True}}),
        rule(throttle={"cooldown": 30}, verify={"resolved_within": "10m"}),
        rule(throttle={"max_runs": 2, "window": "1h", "key": "{{ x }}", "escalate": "e"}),
        rule(vars={"a": "{{ x }}", "_b": [1, {"c": "d"}]}, when="event.x"),
        step(ssh={"host": "h", "script": "s", "port": "{{ vars.port }}", "args": ["a", 1]}),
        step(ssh={"host": "h", "command": "c", "expect_exit": [0, 1], "user": "u"}),
        step(scale={"statefulset": "db", "replicas": "{{ vars.n }}", "provider": "kubernetes"}),
        step(scale={"deployment": "web", "step": -1, "min_replicas": 1, "max_replicas": 9}),
        step(kubernetes={"restart": {"namespace": "prod", "daemonset": "{{ vars.ds }}"}}),
        step(kubernetes={"evict": {"pod": "{{ event.pod }}", "grace_period": "{{ vars.g }}"}}),
        step(kubernetes={"cordon": {"node": "n"}}, retry={"attempts": 3}),
        step(kubernetes={"uncordon": {"node": "n"}}),
        step(
            kubernetes={
                "patch": {
                    "api_version": "example.com/v1",
                    "kind": "Widget",
                    "namespace": "prod",
                    "name": "w",
                    "type": "json",
                    "body": [{"op": "replace", "path": "/spec/size", "value": 3}],
                }
            }
        ),
        step(
            http={"url": "u", "json": [1], "expect_status": 204, "verify_tls": False},
            retry={"attempts": 2, "backoff": 0.5, "max_backoff": "1m"},
            timeout="500ms",
        ),
        step(http={"url": "u", "body": "b", "params": {"q": 1}, "headers": {"A": "b"}}),
        step(publish={"subject": "s", "data": "d", "headers": {"k": "v"}}, when="x", name="n"),
        step(publish={"subject": "s"}, continue_on_failure=True),
        {"rules": [], "x-anchors": {"anything": [1, 2]}},
    ],
)
def test_accepts(document: object) -> None:
    assert messages(document) == []


R = ("rules", 0)
A = ("rules", 0, "actions", 0)


@pytest.mark.parametrize(
    ("document", "where", "message"),
    [
        ({}, (), "missing required key 'rules'"),
        ({"rules": [], "rule": []}, ("rule",), "unknown key 'rule' (did you mean 'rules'?)"),
        (rule(foo=1), (*R, "foo"), "unknown key 'foo'"),
        (rule(name="a b"), (*R, "name"), "'a b': names use only letters, digits, '_' and '-'"),
        (rule(priority="high"), (*R, "priority"), "expected integer, got string"),
        (rule(on=[]), (*R, "on"), "must not be empty"),
        (rule(on=["a", 1]), (*R, "on", 1), "expected string, got integer"),
        (rule(actions=[]), (*R, "actions"), "must not be empty"),
        (
            rule(match={"v": [1]}),
            (*R, "match", "v"),
            "expected string, number, boolean, null or object, got array",
        ),
        (rule(match={"v": {}}), (*R, "match", "v"), "must not be empty"),
        (rule(match={"v": {"like": 1}}), (*R, "match", "v", "like"), "unknown key 'like'"),
        (rule(match={"v": {"in": "x"}}), (*R, "match", "v", "in"), "expected array, got string"),
        (rule(match={".v": 1}), (*R, "match", ".v"), "'.v': a dotted path like labels.severity"),
        (rule(vars={"a-b": 1}), (*R, "vars", "a-b"), "'a-b': variable names are identifiers"),
        (rule(throttle={}), (*R, "throttle"), "needs cooldown or max_runs"),
        (rule(throttle={"max_runs": 1}), (*R, "throttle", "max_runs"), "max_runs needs window"),
        (
            rule(throttle={"cooldown": "1m", "window": "1h"}),
            (*R, "throttle", "window"),
            "window needs max_runs as well",
        ),
        (
            rule(throttle={"cooldown": "soon"}),
            (*R, "throttle", "cooldown"),
            "'soon': not a duration (use 500ms, 30s, 5m, 1h, 1d or seconds)",
        ),
        (rule(throttle={"cooldown": -1}), (*R, "throttle", "cooldown"), "must be at least 0"),
        (rule(verify={}), (*R, "verify"), "needs resolved_within or query"),
        (
            step(shell={"command": "ls"}),
            (*A, "shell"),
            "unknown action kind 'shell' "
            "(known: http, kubernetes, prometheus, publish, scale, ssh)",
        ),
        (
            step(name="x"),
            A,
            "a step needs an action kind "
            "(known: http, kubernetes, prometheus, publish, scale, ssh)",
        ),
        (step(htp={"url": "u"}), (*A, "htp"), "unknown action kind 'htp'"),
        (
            step(publish={"subject": "s"}, ssh={"host": "h", "command": "c"}),
            A,
            "a step has exactly one action kind, found publish, ssh",
        ),
        (
            step(publish={"subject": "s"}, timout=1),
            (*A, "timout"),
            "unknown key 'timout' (did you mean 'timeout'?)",
        ),
        (step(http={"method": "GET"}), (*A, "http"), "missing required key 'url'"),
        (
            step(http={"url": "u", "json": 1, "body": "b"}),
            (*A, "http"),
            "use only one of json, body",
        ),
        (step(ssh={"host": "h"}), (*A, "ssh"), "needs command or script"),
        (
            step(ssh={"host": "h", "command": "c", "script": "s"}),
            (*A, "ssh"),
            "use only one of command, script",
        ),
        (
            step(ssh={"host": "h", "command": "c", "port": True}),
            (*A, "ssh", "port"),
            "expected integer or string, got boolean",
        ),
        (step(scale={"deployment": "d"}), (*A, "scale"), "needs step or replicas"),
        (
            step(scale={"step": 1, "provider": "nomad", "deployment": "d"}),
            (*A, "scale", "provider"),
            "expected one of 'kubernetes', got 'nomad'",
        ),
        (
            step(kubernetes={}),
            (*A, "kubernetes"),
            "needs restart or evict or cordon or uncordon or patch",
        ),
        (
            step(kubernetes={"cordon": {"node": "a"}, "evict": {"pod": "p"}}),
            (*A, "kubernetes"),
            "use only one of evict, cordon",
        ),
        (
            step(kubernetes={"restart": {"deployment": "a", "statefulset": "b"}}),
            (*A, "kubernetes", "restart"),
            "use only one of deployment, statefulset",
        ),
        (step(kubernetes={"evict": {"namespace": "x"}}), (*A, "kubernetes", "evict"), "'pod'"),
        (
            step(kubernetes={"patch": {"api_version": "v1", "kind": "K", "name": "n", "body": {}}}),
            (*A, "kubernetes", "patch"),
            "missing required key 'type'",
        ),
        (
            step(
                kubernetes={
                    "patch": {"api_version": "v1", "kind": "K", "name": "n", "type": "x", "body": 1}
                }
            ),
            (*A, "kubernetes", "patch", "type"),
            "expected one of 'merge', 'strategic', 'json', got 'x'",
        ),
        (
            step(publish={"subject": "s"}, retry={"attempts": 0}),
            (*A, "retry", "attempts"),
            "must be at least 1",
        ),
    ],
)
def test_rejects_with_a_readable_message(
    document: object, where: tuple[str | int, ...], message: str
) -> None:
    ((found_where, found),) = messages(document)
    assert found_where == where
    assert message in found


def test_an_unknown_kubernetes_operation_is_named_and_the_known_ones_listed() -> None:
    where = ("rules", 0, "actions", 0, "kubernetes")
    assert messages(step(kubernetes={"drain": {"node": "a"}})) == [
        ((*where, "drain"), "unknown key 'drain'"),
        (where, "needs restart or evict or cordon or uncordon or patch"),
    ]


def test_null_document() -> None:
    (problem,) = check(None)
    assert problem == Problem((), "expected a mapping with `rules:`, a list of rules, got null")


def test_step_kinds_are_the_schema_step_keys() -> None:
    defs = RULES_SCHEMA["$defs"]
    assert isinstance(defs, dict)
    assert set(STEP_KINDS) <= set(defs["step"]["properties"])
