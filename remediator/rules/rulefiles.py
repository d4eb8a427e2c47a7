"""Which files hold rules: `*.yaml`/`*.yml`, found recursively, in a stable order.

Hidden files and folders are skipped (a `.github/` inside a rules repository is
not rules), and so are `*.cases.yaml` files, which hold `remediator test` cases
kept beside the rules. The loader, the rule-file watcher and `remediator test`
all ask this module, so they agree on what a rule file is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from remediator.errors import RuleError

SUFFIXES = (".yaml", ".yml")
CASES_SUFFIX = ".cases"  # `name.cases.yaml`: test cases, never rules


def rule_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[RuleError]]:
    """Files to load, in a stable order; hidden files, directories and case files are skipped."""
    files: dict[Path, Path] = {}
    problems: list[RuleError] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = [f for f in given.rglob("*") if _is_rule_file(f, given)]
            for path in sorted(found, key=lambda f: f.relative_to(given).parts):
                files.setdefault(path.resolve(), path)
        elif given.is_file():
            files.setdefault(given.resolve(), given)
        else:
            problems.append(RuleError("no such file or directory", file=str(given)))
    return list(files.values()), problems


def _is_rule_file(path: Path, root: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    return path.suffix in SUFFIXES and not hidden and not is_case_file(path) and path.is_file()


def is_case_file(path: Path) -> bool:
    """`x.cases.yaml` holds test cases for `remediator test`, kept beside the rules."""
    return path.suffix in SUFFIXES and path.stem.endswith(CASES_SUFFIX)
