"""Rule files parsed and schema-checked before are read back from the data dir's cache
(issue 25 d): the same rules and the same problems, at the same lines; an edited file,
or a cache file that is not one, is read afresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediator.errors import RuleErrors
from remediator.rules.loader import load_rules
from remediator.rules.parsecache import ParseCache
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates

RULES = """
rules:
  - name: scale-web
    on: [alerts.HighCPU]
    match: {labels.host: web-1, value: {gt: 90}}
    actions:
      - name: tell
        publish: {subject: out.x, json: {host: "{{ event.labels.host }}"}}
"""

BROKEN_TEMPLATE = """
rules:
  - name: broken
    on: [alerts.x]
    actions:
      - name: tell
        publish:
          subject: out.x
          json: {host: "{{ event.labels.host "}
"""


def describe(path: Path, cache: ParseCache | None) -> list[object]:
    rules = load_rules([path], Templates(Secrets({})), cache)
    return [
        (
            r.name,
            r.subjects,
            [(c.path, c.op, c.operand) for c in r.conditions],
            [(s.name, s.kind, s.timeout) for s in r.steps],
        )
        for r in rules
    ]


def problems(path: Path, cache: ParseCache) -> list[tuple[str, int | None, str | None]]:
    with pytest.raises(RuleErrors) as caught:
        load_rules([path], Templates(Secrets({})), cache)
    return [(e.message, e.line, e.field) for e in caught.value.errors]


def test_a_cached_file_loads_the_same_rules(tmp_path: Path) -> None:
    path, cache = tmp_path / "r.yaml", ParseCache(tmp_path / "cache")
    path.write_text(RULES)
    cold = describe(path, cache)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert describe(path, cache) == cold == describe(path, None)


def test_problems_found_after_parsing_keep_their_lines_when_cached(tmp_path: Path) -> None:
    path, cache = tmp_path / "r.yaml", ParseCache(tmp_path / "cache")
    path.write_text(BROKEN_TEMPLATE)
    cold = problems(path, cache)
    assert cold and all(line is not None and line > 1 for _, line, _ in cold)
    assert problems(path, cache) == cold


def test_an_edited_file_or_a_spoilt_cache_is_read_afresh(tmp_path: Path) -> None:
    path, cache = tmp_path / "r.yaml", ParseCache(tmp_path / "cache")
    path.write_text(RULES)
    describe(path, cache)
    path.write_text(RULES.replace("web-1", "web-2"))
    assert "web-2" in str(describe(path, cache))
    for cached in (tmp_path / "cache").iterdir():
        cached.write_bytes(b"not marshal data")
    assert "web-2" in str(describe(path, cache))


def test_a_file_with_a_structural_problem_is_not_cached(tmp_path: Path) -> None:
    path, cache = tmp_path / "r.yaml", ParseCache(tmp_path / "cache")
    path.write_text(RULES.replace("on: [alerts.HighCPU]", "on: 5"))
    problems(path, cache)
    assert not (tmp_path / "cache").exists()
