"""Just enough of a Dockerfile reader for tests: instructions, stages and their arguments.

No Docker engine is needed (or available in CI): the tests read the Dockerfile and run
its steps themselves where they can.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ENV, ...
    arguments: str  # as written, continuation lines joined
    stage: int  # 0 for the first FROM's stage, 1 for the next, ...

    def exec_form(self) -> list[str]:
        """The JSON array of `CMD ["a", "b"]`-style arguments."""
        value = json.loads(self.arguments)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value

    def words(self) -> list[str]:
        return shlex.split(self.arguments)


def instructions(path: Path) -> list[Instruction]:
    found: list[Instruction] = []
    stage = -1
    logical = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(keyword, arguments.strip(), stage))
        logical = ""
    return found


def env(path: Path) -> dict[str, str]:
    """The final stage's ENV, in `ENV K=V K2=V2` form."""
    values: dict[str, str] = {}
    found = instructions(path)
    last = max(i.stage for i in found)
    for instruction in found:
        if instruction.keyword == "ENV" and instruction.stage == last:
            for word in instruction.words():
                key, sep, value = word.partition("=")
                assert sep, f"ENV {word!r}: use the KEY=VALUE form"
                values[key] = value
    return values


def last(path: Path, keyword: str) -> Instruction:
    """The instruction that takes effect: the last of its kind."""
    return [i for i in instructions(path) if i.keyword == keyword][-1]


def copied_sources(path: Path) -> list[str]:
    """What the Dockerfile COPYs from the build context (not from another stage)."""
    sources: list[str] = []
    for instruction in instructions(path):
        if instruction.keyword == "COPY":
            words = instruction.words()
            if not any(w.startswith("--from=") for w in words):
                sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources
