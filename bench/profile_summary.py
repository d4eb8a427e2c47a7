"""Where the time went: top functions of a profile, by inclusive and by own time.

    python bench/profile_summary.py /tmp/idle.txt           # py-spy --format raw output
    python bench/profile_summary.py /tmp/startup.prof       # cProfile / pstats output
    python bench/profile_summary.py FILE --top 40 --filter remediator
    python bench/profile_summary.py /tmp/idle.txt --by-package  # own time by library

For py-spy's collapsed stacks ("frame;frame;... count"), a function's
inclusive share is the share of samples with it anywhere on the stack
(counted once per sample, so recursion does not inflate it), its own share
the samples with it on top. For a pstats file: cumulative and own time as
cProfile measured them, as a share of the total. `--filter` keeps functions
whose file or name contains the text (the shares stay of the whole profile).
"""

from __future__ import annotations

import argparse
import pstats
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _name(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (to/file.py)`: one name per function."""
    found = _FRAME.match(frame.strip())
    if found is None:
        return frame.strip()
    parts = Path(found["file"]).parts
    short = "/".join(parts[-2:]) if parts else found["file"]
    return f"{found['func']} ({short})"


def collapsed(path: Path) -> tuple[Counter[str], Counter[str], int]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";") if f]
        total += n
        for name in set(frames):
            inclusive[name] += n
        if frames:
            own[frames[-1]] += n
    return inclusive, own, total


# Own time by where it is spent: (test on the top frame, category), first match wins.
PACKAGES = (
    ("_SelectorSocketTransport.write", "socket send (syscall)"),
    ("_read_ready", "socket receive (syscall)"),
    ("EpollSelector.select", "epoll wait (syscall)"),
    ("nats/", "nats-py"),
    ("jinja2", "jinja2"),
    ("<template>", "jinja2"),
    ("prometheus_client", "prometheus_client"),
    ("json/", "json"),
    ("aiohttp", "aiohttp"),
    ("yaml/", "PyYAML"),
    ("jsonschema", "jsonschema"),
    ("asyncio/", "asyncio (loop, tasks, futures)"),
    ("remediator/", "remediator"),
    ("uuid", "uuid/secrets/random"),
    ("secrets", "uuid/secrets/random"),
    ("random", "uuid/secrets/random"),
    ("collections", "collections (ChainMap)"),
    ("(<string>", "dataclass __init__"),
)


def by_package(path: Path) -> tuple[Counter[str], int]:
    """Own samples of a py-spy collapsed-stack file, by library (see PACKAGES)."""
    found: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        if frames[0].startswith("Thread._bootstrap"):  # the executor thread, mostly waiting
            found["other threads"] += int(count)
            continue
        top = frames[-1]
        category = next((name for test, name in PACKAGES if test in top), None)
        found[category or f"other: {_name(top)}"] += int(count)
    return found, total


def profiled(path: Path) -> tuple[Counter[str], Counter[str], float]:
    stats = pstats.Stats(str(path))
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for (file, line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        _calls, _primitive, tottime, cumtime, _callers = row
        name = _name(f"{func} ({file}:{line})")
        inclusive[name] = max(inclusive[name], cumtime)
        own[name] += tottime
    total = max(float(stats.total_tt), max(inclusive.values(), default=0.0))  # type: ignore[attr-defined]
    return inclusive, own, total


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("profile", type=Path)
    cli.add_argument("--top", type=int, default=30)
    cli.add_argument("--filter", default="")
    cli.add_argument("--by-package", action="store_true", help="own time by library (py-spy)")
    args = cli.parse_args()
    if args.by_package:
        found, samples = by_package(args.profile)
        print(f"{args.profile}: {samples:,} samples; own time by library")
        for name, value in found.most_common(args.top):
            print(f"{100 * value / samples:6.1f}%  {name}")
        return 0
    raw = args.profile.suffix != ".prof"
    inclusive, own, total = collapsed(args.profile) if raw else profiled(args.profile)
    unit = "samples" if raw else "seconds"
    print(f"{args.profile}: {total:,.{0 if raw else 2}f} {unit}")
    for title, counter in (("inclusive (cumulative)", inclusive), ("own (self)", own)):
        print(f"\n## top {args.top} by {title} share")
        shown = 0
        for name, value in counter.most_common():
            if args.filter and args.filter not in name:
                continue
            print(f"{100 * value / total:6.1f}%  {name}")
            shown += 1
            if shown >= args.top:
                break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
