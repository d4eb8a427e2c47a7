"""`remediator validate` as a user runs it in CI: every problem with file and line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "data" / "rules_broken"


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", "validate", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_each_kind_of_problem_is_reported_with_file_and_line() -> None:
    done = validate(BROKEN)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    expected = {
        "yaml_syntax.yaml": "YAML syntax error",
        "unknown_key.yaml": "unknown key 'priorty'",
        "wrong_type.yaml": "expected integer, got string",
        "unknown_kind.yaml": "unknown action kind 'shell'",
        "jinja_syntax.yaml": "template syntax error",
        "bad_regex.yaml": "bad regular expression",
        "bad_duration.yaml": "not a duration",
        "b.yaml": "duplicate rule name 'restart-agent'",
    }
    for name, message in expected.items():
        found = [line for line in lines if f"{name}:" in line and message in line]
        assert found, f"{name}: no line with {message!r} in\n{done.stdout}"
        assert re.search(rf"{re.escape(name)}:\d+: ", found[0]), found[0]


def test_the_shipped_rules_validate() -> None:
    done = validate(ROOT / "rules")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: ")


def test_a_rule_on_remediators_own_subjects_fails_unless_for_core(tmp_path: Path) -> None:
    """The daemon refuses it in JetStream mode (its default): CI must say so before a
    deploy does; a `--core` daemon takes it, and so does `validate --core`."""
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: on-failures\n"
        "    on: [remediator.results.>, alerts.x]\n"
        "    actions:\n"
        "      - publish: {subject: ops.failed}\n"
    )
    done = validate(rules)
    assert done.returncode == 1
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"{rules}:2: rule on-failures: on: remediator.results.> ")
    core = subprocess.run(
        [sys.executable, "-m", "remediator", "validate", "--core", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert core.returncode == 0 and core.stdout.startswith("ok: 1 rule(s)")
