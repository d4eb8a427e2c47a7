"""The rule file poller, one look at a time (no waiting on its interval)."""

from __future__ import annotations

import os
from pathlib import Path

from remediator.rules.watch import RuleWatcher


class Calls:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def touch(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


async def test_a_change_reloads_once_it_has_settled(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "nested").mkdir(parents=True)
    touch(rules / "a.yaml", "rules: []", 1_000_000_000)
    reload = Calls()
    watcher = RuleWatcher([str(rules)], reload)

    assert not await watcher.poll()  # nothing changed
    touch(rules / "a.yaml", "rules: []", 2_000_000_000)  # same size, new mtime
    assert not await watcher.poll()  # changed, not settled yet
    assert await watcher.poll()  # settled: reload
    assert not await watcher.poll()  # applied: nothing more
    (rules / "nested" / "b.yml").write_text("rules: []")  # a new file in a subdirectory
    (rules / "notes.txt").write_text("not a rule file")
    assert not await watcher.poll()
    assert await watcher.poll()
    (rules / "nested" / "b.yml").unlink()
    assert not await watcher.poll()
    assert await watcher.poll()
    assert reload.count == 3


async def test_a_reload_by_signal_marks_the_files_as_seen(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    touch(path, "rules: []", 1_000_000_000)
    reload = Calls()
    watcher = RuleWatcher([str(path)], reload)

    touch(path, "rules: [] ", 3_000_000_000)
    assert not await watcher.poll()
    watcher.mark()  # what Daemon.reload does before it reads the files
    assert not await watcher.poll()
    assert not await watcher.poll()
    assert reload.count == 0
