"""Noticing rule file changes without a signal: a poller of file snapshots.

Every `interval` the watcher lists the rule files the loader would read and
takes a snapshot of `(path, inode, mtime, size)` for each. A snapshot that
differs from the one last applied, and has stayed the same for one more
interval, triggers the reload: waiting for it to settle keeps a reload from
reading a file an editor or `git pull` is still writing. With the default
1 s interval a change is in force within about 2 s.

Polling a few stat calls a second needs no dependency and behaves the same
on every filesystem, including the network and overlay mounts where inotify
events go missing (Kubernetes ConfigMap volumes swap a symlink).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from remediator.rules.rulefiles import rule_files

log = logging.getLogger(__name__)

Snapshot = frozenset[tuple[str, int, int, int]]


def snapshot(paths: Sequence[str]) -> Snapshot:
    """What the rule files look like now; missing or vanishing files are simply absent."""
    files, _ = rule_files(paths)
    seen: set[tuple[str, int, int, int]] = set()
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        seen.add((str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return frozenset(seen)


class RuleWatcher:
    """Calls `on_change` when the rule files have changed and settled."""

    def __init__(
        self,
        paths: Sequence[str],
        on_change: Callable[[], Awaitable[object]],
        interval: float = 1.0,
    ) -> None:
        self.paths = tuple(paths)
        self.on_change = on_change
        self.interval = interval
        self._applied = self._seen = snapshot(self.paths)

    def mark(self) -> None:
        """The files as they are now are the ones in force (called by every reload)."""
        self._applied = self._seen = snapshot(self.paths)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:  # the watcher must outlive any one bad look
                log.exception("watching the rule files failed; will look again")

    async def poll(self) -> bool:
        """One look; True when it triggered a reload."""
        current = await asyncio.to_thread(snapshot, self.paths)
        settled = current == self._seen
        self._seen = current
        if not settled or current == self._applied:
            return False
        self._applied = current
        log.info("rule files changed; reloading")
        await self.on_change()
        return True
