"""`correlate` and `absent` in rule files: compiled into the model, problems at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediator.errors import RuleErrors
from remediator.rules.loader import load_rules
from remediator.rules.schema import RULES_SCHEMA
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates

HEAD = "rules:\n  - name: r\n    on: a.b\n    actions: [{publish: {subject: x}}]\n"


def load(tmp_path: Path, snippet: str) -> RuleErrors | object:
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + snippet)
    try:
        return load_rules([path], Templates(Secrets({})))
    except RuleErrors as errors:
        return errors


def test_correlate_compiles_into_the_rule(tmp_path: Path) -> None:
    (rule,) = load(tmp_path, "    correlate: {count: 3, within: 5m, group_by: '{{ event.s }}'}\n")  # type: ignore[misc]
    assert rule.correlate is not None and rule.absent is None
    assert (rule.correlate.count, rule.correlate.within) == (3, 300.0)
    assert rule.correlate.group_by.render({"event": {"s": "web"}}) == "web"
    assert rule.windowed


def test_absent_defaults_to_one_group_per_rule(tmp_path: Path) -> None:
    (rule,) = load(tmp_path, "    absent: {within: 25h}\n")  # type: ignore[misc]
    assert rule.absent is not None and rule.absent.within == 25 * 3600.0
    assert rule.absent.group_by is None


@pytest.mark.parametrize(
    ("snippet", "field", "message"),
    [
        ("correlate: {count: 3}", "correlate", "missing required key 'within'"),
        ("correlate: {within: 5m}", "correlate", "missing required key 'count'"),
        ("correlate: {count: 0, within: 5m}", "correlate.count", "must be at least 1"),
        ("correlate: {count: 2, within: 5x}", "correlate.within", "not a duration"),
        ("correlate: {count: 2, within: 0}", "correlate.within", "must be longer than 0"),
        ("correlate: {count: 2, within: 1m, by: x}", "correlate.by", "unknown key 'by'"),
        (
            "correlate: {count: 2, within: 1m, group_by: '{{ x'}",
            "correlate.group_by",
            "template syntax error",
        ),
        ("absent: {group_by: x}", "absent", "missing required key 'within'"),
        ("absent: {within: -1}", "absent.within", "must be at least 0"),
        ("absent: {within: 1m}\n    correlate: {count: 2, within: 1m}", "", "only one of"),
    ],
)
def test_problems_name_file_line_and_field(
    tmp_path: Path, snippet: str, field: str, message: str
) -> None:
    errors = load(tmp_path, f"    {snippet}\n")
    assert isinstance(errors, RuleErrors)
    (error,) = errors.errors
    assert (error.file, error.rule, error.field) == (str(tmp_path / "r.yaml"), "r", field)
    assert error.line in (2, 5)
    assert message in error.message


def test_the_schema_documents_both() -> None:
    rule = RULES_SCHEMA["$defs"]["rule"]  # type: ignore[index]
    assert {"correlate", "absent"} <= set(rule["properties"])
