"""Every benchmark still runs: each `bench/*.py --quick` exits 0 and prints its JSON line.

Nothing here is timed or compared against a target; the figures are the
benchmarks' business (docs/performance.md). This only keeps them from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

EXPECTED: dict[str, dict[str, list[str]]] = {
    "matching": {"rows": ["rules", "mix", "index_eps", "engine_fired_eps", "naive_eps", "agree"]},
    "e2e_idle": {"": ["daemon_eps", "raw_eps", "ratio", "daemon_events_received"]},
    "e2e_publish": {
        "": ["daemon_eps", "baseline_js_publish_sequential_mps", "baseline_js_publish_async_mps"]
    },
    "latency": {
        "daemon": ["count", "p50_ms", "p99_ms"],
        "raw": ["count", "p50_ms", "p99_ms"],
    },
    "one_subject": {
        "idle": ["daemon_eps", "raw_eps", "ratio"],
        "firing": ["daemon_eps", "raw_eps", "ratio"],
    },
    "storm": {"": ["alerts", "started", "spread_s", "bound_s"]},
    "startup": {
        "import remediator.daemon": ["seconds", "rss_mib"],
        "rules_100": ["seconds", "rss_mib"],
    },
}


def run_quick(name: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), "--quick", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stderr[-3000:]}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"{name} printed nothing:\n{done.stderr[-3000:]}"
    body = json.loads(lines[-1])
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bench_quick_run_prints_its_json(name: str) -> None:
    body = run_quick(name)
    assert body["bench"] == name
    assert body["quick"] is True
    assert {"machine", "params", "results", "targets"} <= set(body)
    results = body["results"]
    assert isinstance(results, dict)
    for section, keys in EXPECTED[name].items():
        if section == "rows":
            rows = results["rows"]
            assert isinstance(rows, list) and rows
            for row in rows:
                assert set(keys) <= set(row), f"{name}: a row lacks {keys}"
            continue
        part = results[section] if section else results
        assert isinstance(part, dict)
        assert set(keys) <= set(part), f"{name}: results[{section!r}] lacks {keys}"
    for target in body["targets"]:
        assert {"name", "value", "target", "met"} <= set(target)
