"""`remediator explain`: every rule's verdict, and for a non-match the first failed condition."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediator.cli import main

RULES = """
rules:
  - name: cpu-web
    on: [high.cpu.alert]
    match:
      labels.severity: critical
      value: {gt: 90}
    when: "event.labels.service.startswith('web')"
    actions: [{publish: {subject: x, json: {}}}]
  - name: cpu-env
    on: ["high.*.alert"]
    match:
      labels.env: {in: [prod, staging]}
    actions: [{publish: {subject: x, json: {}}}]
  - name: cpu-region
    on: [high.cpu.alert]
    match:
      labels.region: {exists: true}
    actions: [{publish: {subject: x, json: {}}}]
  - name: db-first
    on: [high.cpu.alert]
    priority: 5
    stop: true
    match: {labels.service: db}
    actions: [{publish: {subject: x, json: {}}}]
  - name: disk
    on: [alerts.DiskFull]
    actions: [{publish: {subject: x, json: {}}}]
"""


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    """`explain` configures logging as the CLI does; later tests get the root logger back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(RULES)
    return tmp_path / "rules.yaml"


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    assert main(["explain", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    verdicts = {}
    for line in lines[1:-1]:
        verdict, rule, why = line.split(maxsplit=2)
        verdicts[rule] = f"{verdict} {why}"
    return verdicts


def test_each_quiet_rule_names_its_first_failed_condition_and_the_value_seen(
    rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = '{"labels": {"severity": "critical", "service": "web-1", "env": "dev"}, "value": "42"}'
    verdicts = explain(capsys, str(rules), "high.cpu.alert", event)
    assert verdicts == {
        "db-first": "quiet no match: match labels.service eq 'db': saw 'web-1'",
        "cpu-web": "quiet no match: match value gt 90: saw '42'",
        "cpu-env": "quiet no match: match labels.env in ['prod', 'staging']: saw 'dev'",
        "cpu-region": (
            "quiet no match: match labels.region exists True: saw nothing (the path is missing)"
        ),
        "disk": "quiet subject does not match (on: alerts.DiskFull)",
    }


def test_a_matching_event_fires_and_when_is_explained(
    rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = '{"labels": {"severity": "critical", "service": "api", "env": "prod"}, "value": 97}'
    verdicts = explain(capsys, str(rules), "high.cpu.alert", event)
    assert verdicts["cpu-web"] == (
        "quiet no match: when: event.labels.service.startswith('web') was false"
    )
    assert verdicts["cpu-env"] == "fires matches (priority 0)"


def test_a_stop_rule_cuts_off_lower_priorities(
    rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = '{"labels": {"severity": "critical", "service": "db", "env": "prod"}, "value": 97}'
    verdicts = explain(capsys, str(rules), "high.cpu.alert", event)
    assert verdicts["db-first"] == "fires matches (priority 5)"
    assert verdicts["cpu-env"] == (
        "quiet matches, but db-first (stop: true, priority 5) fired first"
    )


def test_a_payload_that_is_not_an_object_is_a_usage_error(
    rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", str(rules), "high.cpu.alert", "[1, 2]"]) == 2
    assert "not an object" in capsys.readouterr().err
