"""The shipped examples in rules/: the schema (as editors get it) accepts them, and their
test cases pass. The schema is checked with the jsonschema library, in both drafts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from remediator.cli import main
from remediator.offline.caseschema import CASES_SCHEMA
from remediator.rules.schema import RULES_SCHEMA, as_draft_07
from remediator.rules.yamlsource import parse_document

RULES = Path(__file__).parent.parent / "rules"
RULE_FILES = sorted(p for p in RULES.glob("*.y*ml") if ".cases." not in p.name)
CASE_FILES = sorted(RULES.glob("*.cases.y*ml"))

BROKEN = """
rules:
  - name: broken
    on: [a.b]
    throttle: {cooldown: soon}
    actions:
      - http: {url: "https://x"}
        publish: {subject: y}
"""


def document(path: Path) -> object:
    parsed, problems = parse_document(path.read_text(), str(path))
    assert parsed is not None and not problems
    return parsed.data


def validators(schema: dict[str, object]) -> list[jsonschema.protocols.Validator]:
    return [
        jsonschema.Draft202012Validator(schema),
        jsonschema.Draft7Validator(as_draft_07(schema)),
    ]


def test_every_example_has_test_cases() -> None:
    assert RULE_FILES
    for rule_file in RULE_FILES:
        assert rule_file.with_name(f"{rule_file.stem}.cases.yaml") in CASE_FILES


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_the_schema_accepts_every_example(path: Path) -> None:
    for validator in validators(RULES_SCHEMA):
        assert list(validator.iter_errors(document(path))) == []


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.name)
def test_the_case_schema_accepts_every_case_file(path: Path) -> None:
    for validator in validators(CASES_SCHEMA):
        assert list(validator.iter_errors(document(path))) == []


def test_the_schema_rejects_a_broken_file(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN)
    for validator in validators(RULES_SCHEMA):
        errors = list(validator.iter_errors(document(tmp_path / "broken.yaml")))
        paths = {tuple(error.absolute_path) for error in errors}
        assert ("rules", 0, "throttle", "cooldown") in paths  # not a duration
        assert ("rules", 0, "actions", 0) in paths  # two kinds in one step


def test_the_printed_schemas_are_valid_for_their_draft(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == RULES_SCHEMA
    jsonschema.Draft202012Validator.check_schema(printed)
    assert main(["schema", "--draft", "07", "--cases"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(printed)
    assert "$defs" not in json.dumps(as_draft_07(RULES_SCHEMA))


def test_the_examples_pass_their_cases(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["test", str(RULES)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAIL" not in out and out.rstrip().endswith(" 0 failed")
