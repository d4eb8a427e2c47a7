"""The compiled shapes of a rule's safety fields (SPEC §17): `windows` and `concurrency`.

Beneath `model` (whose `Rule` holds them) so that the rule model stays one page; the
logic lives above: `rules.windows` compiles and answers windows, `engine.slots` holds
concurrency slots.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class Renderable(Protocol):
    """A compiled template (as `model.Renderable`; repeated here, one layer down)."""

    @property
    def source(self) -> str: ...

    def render(self, context: Mapping[str, object]) -> object: ...


class Calendar(Protocol):
    """A rule's `windows`, compiled (`rules.windows.RuleWindows`): when it may act."""

    def open_at(self, when: dt.datetime) -> bool: ...
    def next_open(self, when: dt.datetime) -> dt.datetime | None: ...
    def describe(self, when: dt.datetime) -> str: ...
    def state(self, when: dt.datetime) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Concurrency:
    """`concurrency:`: at most `max` runs in flight at once per group, fleet-wide."""

    max: int
    wait: float  # seconds a run waits for a free slot, then `throttled`
    key: Renderable | None = None  # None: one group per rule
