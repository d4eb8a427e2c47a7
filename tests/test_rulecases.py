"""`remediator test`: rule test cases, partial expectations, and no network needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.cli import main
from remediator.errors import RuleErrors
from remediator.offline.expectations import compare
from remediator.offline.rulecases import case_files, load_cases, run_cases
from remediator.offline.sandbox import offline_secrets
from remediator.rules.loader import load_rules
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from tests.support.daemon import free_port

RULES = """
rules:
  - name: scale-web
    on: [high.cpu.alert]
    match:
      labels.severity: critical
      value: {gte: 90}
    vars:
      deployment: "{{ event.labels.deployment | default('web') }}"
    actions:
      - name: scale
        scale: {namespace: prod, deployment: "{{ vars.deployment }}", step: 2}
      - name: notify
        http:
          method: POST
          url: https://chat.example.com/hooks/ops
          headers: {Authorization: "Bearer {{ secret('CHAT_TOKEN') }}"}
          json:
            text: "scaled {{ vars.deployment }} to {{ results.scale.to }}"
            replicas: "{{ results.scale.to }}"
      - name: page
        when: "event.labels.page | default(false)"
        publish: {subject: ops.pages, json: {deployment: "{{ vars.deployment }}"}}
  - name: catch-db
    on: [high.cpu.alert]
    priority: 10
    stop: true
    match: {labels.service: db}
    actions:
      - publish: {subject: ops.db, json: {value: "{{ event.value }}"}}
"""

CASES = """
cases:
  - name: web cpu fires the scale-out
    subject: high.cpu.alert
    headers: {trace-id: t-1}
    event: {labels: {severity: critical, service: web}, value: "97.5"}
    expect:
      fired: [scale-web]
      steps:
        scale-web:
          scale: {deployment: web, step: 2}
          notify:
            headers: {Authorization: "Bearer ***"}
            json: {text: "scaled web to ...", replicas: <results.scale.to>}
          page: skipped
  - name: a db alert stops at catch-db
    subject: high.cpu.alert
    event: {labels: {severity: critical, service: db}, value: 99}
    expect:
      fired: [catch-db]
      steps:
        catch-db:
          publish-0: {json: {value: 99}}
  - name: a warning fires nothing
    subject: high.cpu.alert
    event: {labels: {severity: warning, service: web}, value: 99}
    expect: {fired: []}
"""

WRONG = """
cases:
  - name: expects the wrong deployment
    subject: high.cpu.alert
    event: {labels: {severity: critical, deployment: api}, value: 95}
    expect:
      fired: [scale-web]
      steps:
        scale-web:
          notify: {json: {text: "scaled web to ..."}}
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "cpu.yaml").write_text(RULES)
    (tmp_path / "rules" / "cpu.cases.yaml").write_text(CASES)
    return tmp_path / "rules"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI as CI runs it, with NATS pointing at a closed port: nothing may need it."""
    env = {**os.environ, "REMEDIATOR_NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    env.pop("CHAT_TOKEN", None)
    command = [sys.executable, "-m", "remediator", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_cases_that_hold_pass_without_any_network(rules_dir: Path) -> None:
    done = run_cli("test", "rules", cwd=rules_dir.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASS ") == 3
    assert "rules/cpu.cases.yaml:3: web cpu fires the scale-out" in done.stdout
    assert done.stdout.rstrip().endswith("3 case(s): 3 passed, 0 failed")


def test_a_wrong_expectation_fails_showing_expected_against_actual(rules_dir: Path) -> None:
    (rules_dir.parent / "wrong.cases.yaml").write_text(WRONG)
    done = run_cli("test", "rules", "--cases", "wrong.cases.yaml", cwd=rules_dir.parent)
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL wrong.cases.yaml:3: expects the wrong deployment" in out
    assert (
        "steps.scale-web.notify.json.text: expected a string starting with 'scaled web to ', "
        "got 'scaled api to <results.scale.to>'"
    ) in out
    assert "-  text: scaled web to ..." in out
    assert "+  text: scaled api to <results.scale.to>" in out
    assert out.rstrip().endswith("1 case(s): 0 passed, 1 failed")


def test_fired_rules_are_compared_exactly(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = rules_dir.parent / "fired.cases.yaml"
    wrong.write_text(CASES.replace("fired: [catch-db]", "fired: [catch-db, scale-web]"))
    assert main(["test", str(rules_dir), "--cases", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "fired: expected [catch-db, scale-web], got [catch-db] (did not fire: scale-web)" in out
    assert "steps.catch-db.publish-0" not in out  # that part of the case still holds


async def test_secrets_render_and_are_masked(rules_dir: Path) -> None:
    given = offline_secrets({"CHAT_TOKEN": "s3cret-value"}, {})
    report = await run_cases([rules_dir], [], given)
    assert report.passed
    placeholder = offline_secrets({}, {})
    report = await run_cases([rules_dir], [], placeholder)
    assert report.passed  # `<secret CHAT_TOKEN>` renders, and is masked all the same
    assert "<secret CHAT_TOKEN>" in placeholder.known


async def test_a_template_error_fails_the_case(rules_dir: Path) -> None:
    (rules_dir / "cpu.yaml").write_text(RULES.replace("{{ event.value }}", "{{ event.nope }}"))
    report = await run_cases([rules_dir], [], offline_secrets({}, {}))
    (failed,) = [o for o in report.outcomes if not o.passed]
    assert failed.case.name == "a db alert stops at catch-db"
    assert any("step publish-0" in p and "undefined" in p for p in failed.problems)


def test_case_files_are_found_beside_the_rules_and_never_loaded_as_rules(
    rules_dir: Path,
) -> None:
    (rules_dir / ".hidden").mkdir()
    (rules_dir / ".hidden" / "x.cases.yaml").write_text(CASES)
    assert case_files([rules_dir]) == [rules_dir / "cpu.cases.yaml"]
    assert case_files([rules_dir / "cpu.yaml"]) == [rules_dir / "cpu.cases.yaml"]
    rules = load_rules([rules_dir], Templates(Secrets({})))
    assert [rule.name for rule in rules] == ["scale-web", "catch-db"]


def test_a_broken_case_file_names_file_line_and_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.cases.yaml"
    broken.write_text(
        "cases:\n"
        "  - name: typo\n"
        "    subject: a.b\n"
        "    event: {}\n"
        "    expect: {fird: []}\n"
        "  - name: wildcard\n"
        "    subject: a.*\n"
        "    event: {}\n"
        "    expect: {fired: []}\n"
    )
    with pytest.raises(RuleErrors) as caught:
        load_cases([broken])
    assert [str(e) for e in caught.value.errors] == [
        f"{broken}:5: cases[0].expect: Additional properties are not allowed "
        "('fird' was unexpected)"
    ]
    broken.write_text(broken.read_text().replace("fird", "fired"))
    with pytest.raises(RuleErrors) as caught:
        load_cases([broken])
    (error,) = caught.value.errors
    assert (error.line, error.field) == (7, "cases[1].subject")
    assert "without wildcards" in error.message


def test_no_cases_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yaml").write_text(RULES)
    assert main(["test", str(tmp_path)]) == 1
    assert "no test cases found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("expected", "actual", "holds"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, True),  # only the given keys
        ({"a": {"b": [1, {"c": "x"}]}}, {"a": {"b": [1, {"c": "x", "d": 0}]}}, True),
        ({"a": [1]}, {"a": [1, 2]}, False),  # lists keep their length
        ("scaled web to ...", "scaled web to <results.scale.to>", True),
        ("scaled web to ...", "scaled api to 4", False),
        ("ends with ...", "ends with ...", True),  # a literal ellipsis matches itself
        (5, 5.0, True),
        (1, True, False),
        (True, 1, False),
        ("5", 5, False),
        (None, None, True),
        ({"a": None}, {}, False),  # missing is not null
    ],
)
def test_partial_expectations(expected: object, actual: object, holds: bool) -> None:
    assert (compare(expected, actual) == []) is holds
