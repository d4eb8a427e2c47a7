"""Which absence timers a replica should look at now: a heap of deadlines, not a scan.

Sweeping every `absent.*` key every few seconds cost an idle daemon half a core
with 5,000 groups. Each replica instead remembers the deadline of every timer
it wrote or read (a heap ordered by deadline, plus the latest deadline per
key), and a sweep reads only the keys whose deadline has passed: nothing per
idle second. Timers written by another replica are that replica's to watch; so
that none is forgotten when a replica dies (or while every daemon was down),
every replica still reads all the keys once at its first sweep and then every
`RESCAN` seconds, where it learns their deadlines.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

RESCAN = 60.0  # seconds between full reads of the timer keys (timers of dead replicas)


@dataclass(slots=True)
class Deadlines:
    """The deadlines this replica knows, by key; stale heap entries are skipped lazily."""

    rescan: float = RESCAN
    _heap: list[tuple[float, str]] = field(default_factory=list)
    _latest: dict[str, float] = field(default_factory=dict)
    _scanned: float | None = None  # when every key was last read; None: never

    def __len__(self) -> int:
        return len(self._latest)

    def note(self, key: str, deadline: float) -> None:
        """`key`'s timer runs out at `deadline` (a restart replaces the earlier one)."""
        self._latest[key] = deadline
        heapq.heappush(self._heap, (deadline, key))
        if len(self._heap) > 2 * len(self._latest) + 1024:  # a busy group's restarts pile up
            self._heap = [(d, k) for k, d in self._latest.items()]
            heapq.heapify(self._heap)

    def forget(self, key: str) -> None:
        self._latest.pop(key, None)

    def full_scan_due(self, now: float) -> bool:
        return self._scanned is None or now - self._scanned >= self.rescan

    def scanned(self, now: float) -> None:
        self._scanned = now

    def due(self, now: float) -> list[str]:
        """The keys whose known deadline has passed, each once, taken off the heap."""
        found: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, key = heapq.heappop(self._heap)
            if self._latest.get(key) == deadline:
                del self._latest[key]
                found.append(key)
        return found
