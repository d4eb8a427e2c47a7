"""Start-up time and memory of the daemon with many rules, against the import floor.

    python bench/startup.py            # 1 / 1,000 / 10,000 rules, 3 runs each
    python bench/startup.py --quick    # 1 / 100 rules, 1 run each
    python bench/startup.py --profile cprofile --profile-rules 1000 --profile-out /tmp/s.prof

Start-up is the time from starting the process (`python -m remediator run
--rules DIR --nats URL ...`) to the first 200 from /readyz (polled every
5 ms), against a local nats-server (JetStream, 127.0.0.1, random port); each
run uses a fresh stream and durable, so it includes creating them. Memory is
VmRSS from /proc/PID/status once ready. Rules come from common.py's
generator (500 a file). The median of `--runs` runs is reported, and the
first start beside it: the runs share a data dir, so the first one parses
every rule file and the later ones read them from its parse cache
(`remediator.rules.parsecache`), as a restarted daemon does.

Baseline, same run: `python -c "import remediator.daemon"` (every import the
daemon needs, nothing else: the floor), and `python -c pass` (the interpreter),
each timed from process start to exit, VmRSS read by the process itself at
the end. Every child runs with a bytecode cache (common.clean_env), filled
by one untimed import first, as an installed package has its .pyc files.
Targets: start-up with 1,000 rules <= 1 s, with 10,000 rules <= 2 s
(issue 12); RSS <= 100 MiB (at 1,000 rules; 10,000 is reported beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import nats
from common import PYTHON, Daemon, NatsServer, Report, clean_env, generate_rules, parser
from nats.js.errors import NotFoundError

FLOORS = (("python -c pass", "pass"), ("import remediator.daemon", "import remediator.daemon"))
RSS_PROBE = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')))"


def floor(code: str, runs: int) -> tuple[float, float]:
    """Median seconds and MiB of `python -c "<code>; <print VmRSS>"`."""
    times, sizes = [], []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [PYTHON, "-c", f"{code}\n{RSS_PROBE}"],
            capture_output=True,
            check=True,
            env=clean_env(),
            timeout=60,
        )
        times.append(time.perf_counter() - start)
        sizes.append(int(done.stdout.split()[-1]) / 1024)
    return statistics.median(times), statistics.median(sizes)


def daemon_start(
    rules: Path, url: str, tmp: Path, run: int, args: argparse.Namespace, profile: bool
) -> tuple[float, float]:
    """Seconds to ready and MiB of RSS once ready, for one start."""
    daemon = Daemon(
        rules=rules,
        nats_url=url,
        stream=f"S{run}",
        durable=f"D{run}",
        workdir=tmp / "daemon",
        profile=args.profile if profile else None,
        profile_out=args.profile_out,
    )
    try:
        daemon.start()
        ready = daemon.wait_ready(timeout=300)
        rss = daemon.rss_kib() / 1024
    finally:
        daemon.stop()
        asyncio.run(delete_stream(url, daemon.stream))  # the next run's subjects overlap
    return ready, rss


async def delete_stream(url: str, name: str) -> None:
    nc = await nats.connect(url)
    try:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    sizes = (1, 100) if args.quick else (1, 1_000, 10_000)
    runs = 1 if args.quick else args.runs
    report.params = {"sizes": sizes, "runs": runs}
    rows: list[list[object]] = []
    results: dict[str, object] = {}
    floor("import remediator.daemon", 1)  # fills the bytecode cache (common.PYCACHE)
    for label, code in FLOORS:
        seconds, mib = floor(code, runs)
        rows.append([f"baseline: {label}", "", seconds, mib, ""])
        results[label] = {"seconds": seconds, "rss_mib": mib}
    server = NatsServer(tmp / "nats").start()
    started = 0
    try:
        for size in sizes:
            rules = generate_rules(size).write(tmp / f"rules-{size}")
            times, sizes_mib = [], []
            for i in range(runs):
                profile = i == 0 and size == args.profile_rules
                ready, mib = daemon_start(rules, server.url, tmp, started, args, profile)
                started += 1
                times.append(ready)
                sizes_mib.append(mib)
            seconds, mib = statistics.median(times), statistics.median(sizes_mib)
            rows.append(["remediator run: start -> /readyz 200", size, seconds, mib, times[0]])
            results[f"rules_{size}"] = {"seconds": seconds, "rss_mib": mib, "runs": times}
    finally:
        server.stop()
    report.results = results
    columns = ["what", "rules", "seconds", "RSS MiB", "first start s"]
    report.table(f"start-up (median of {runs})", columns, rows)
    at_1000 = results.get("rules_1000")
    if isinstance(at_1000, dict):
        report.target("start-up with 1,000 rules", at_1000["seconds"], "<=", 1.0, "s")
        report.target("RSS with 1,000 rules", at_1000["rss_mib"], "<=", 100.0, "MiB")
    at_10000 = results.get("rules_10000")
    if isinstance(at_10000, dict):
        report.target("start-up with 10,000 rules", at_10000["seconds"], "<=", 2.0, "s")
        report.target("RSS with 10,000 rules", at_10000["rss_mib"], "<=", 100.0, "MiB")


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=3)
    cli.add_argument("--profile", choices=["cprofile"], help="profile one start")
    cli.add_argument("--profile-rules", type=int, default=1_000, help="the start to profile")
    cli.add_argument("--profile-out", type=Path, default=Path("/tmp/startup.prof"))
    args = cli.parse_args()
    report = Report("startup", args.quick)
    with tempfile.TemporaryDirectory(prefix="remediator-bench-") as tmp:
        run(args, report, Path(tmp))
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
