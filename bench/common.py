"""Shared by the benchmarks: servers and daemons as child processes, rule sets, reports.

Every process a bench starts is bound to 127.0.0.1, started here and stopped
here by its own pid (SIGTERM, then SIGKILL after a deadline). Every wait is
bounded by a deadline. The rule and event generators are deterministic
(seeded), so two runs measure the same work.

The generated rule set is meant to look like a real one (see `generate_rules`):
most rules listen on one exact Alertmanager subject `alerts.<AlertName>` (a few
on two), a small share are teams' catch-alls on wildcard patterns (`alerts.*`
narrowed by team and severity, `host.*.cpu` and friends by team, severity and a
threshold); `match` holds equality, `in` and numeric operators on numeric
strings; one rule in ten has a `when` expression. Events are
Alertmanager-shaped and spread over the same subjects.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from remediator.nats.embedded import server_binary

BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable

# --- arguments and reports ---------------------------------------------------------------


BENCH_STREAM = "BENCH_ALERTS"
BENCH_DURABLE = "remediator"


def parser(description: str) -> argparse.ArgumentParser:
    """The flags every bench takes."""
    found = argparse.ArgumentParser(description=description)
    found.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    found.add_argument("--json", action="store_true", help="print only the JSON line")
    return found


def add_profile_flags(cli: argparse.ArgumentParser, name: str) -> None:
    """`--profile` and `--profile-out`, for the benches that run the daemon."""
    cli.add_argument("--profile", choices=["cprofile", "py-spy", "strace"])
    cli.add_argument("--profile-out", type=Path, default=Path(f"/tmp/{name}.prof"))


RunBench = Callable[[argparse.Namespace, "Report", Path], Awaitable[None]]


def run_bench(name: str, cli: argparse.ArgumentParser, run: RunBench) -> int:
    """Parse, run in a temporary directory, print the report: every end-to-end bench's main."""
    args = cli.parse_args()
    report = Report(name, args.quick)
    with tempfile.TemporaryDirectory(prefix="remediator-bench-") as tmp:
        asyncio.run(run(args, report, Path(tmp)))
    report.emit(args.json)
    return 0


def machine() -> dict[str, object]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def code_version() -> dict[str, object]:
    """Which remediator was measured: its directory, and its git commit when it has one
    (`dirty`: uncommitted changes under remediator/). BENCH_CODE, when set, labels it."""
    import remediator

    package = Path(remediator.__file__).resolve().parent
    found: dict[str, object] = {"package": str(package), "label": os.environ.get("BENCH_CODE")}
    try:
        head = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode == 0:
            status = subprocess.run(
                ["git", "-C", str(package), "status", "--porcelain", "--", "."],
                capture_output=True,
                text=True,
                timeout=10,
            )
            found["git"] = head.stdout.strip()
            found["dirty"] = bool(status.stdout.strip())
    except OSError:
        pass
    return found


def machine_busy(sample: float = 0.5) -> float:
    """The share of all CPUs busy (not idle, not waiting on I/O) over `sample` seconds."""

    def times() -> tuple[int, int]:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = times()
        time.sleep(sample)
        busy1, total1 = times()
    except (OSError, ValueError, IndexError):
        return math.nan
    return (busy1 - busy0) / max(1, total1 - total0)


@dataclass
class Report:
    """Tables for people, one JSON line for machines; targets marked met or missed."""

    bench: str
    quick: bool
    params: dict[str, object] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)
    targets: list[dict[str, object]] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[object]]]] = field(default_factory=list)
    # Before the bench starts anything: other work on a shared machine skews every figure.
    busy_at_start: float = field(default_factory=machine_busy)

    def table(self, title: str, columns: list[str], rows: list[list[object]]) -> None:
        self.tables.append((title, columns, rows))

    def target(self, name: str, value: float, op: str, bound: float, unit: str) -> bool:
        met = value >= bound if op == ">=" else value <= bound
        self.targets.append(
            {"name": name, "value": value, "op": op, "target": bound, "unit": unit, "met": met}
        )
        return met

    def emit(self, json_only: bool = False) -> None:
        if not json_only:
            print(f"# {self.bench}{' (quick)' if self.quick else ''}")
            print(f"machine: {json.dumps(machine())}")
            print(f"code: {json.dumps(code_version())}")
            print(f"CPUs busy before the bench started: {self.busy_at_start:.0%}")
            if self.busy_at_start > 0.15:
                print("WARNING: other work was using the CPUs before this bench started; it")
                print("disturbs these figures: run again when the machine is idle.")
            for title, columns, rows in self.tables:
                print()
                print(format_table(title, columns, rows))
            if self.targets:
                rows = [
                    [
                        t["name"],
                        fmt(t["value"]),
                        f"{t['op']} {fmt(t['target'])} {t['unit']}",
                        "met" if t["met"] else "MISSED",
                    ]
                    for t in self.targets
                ]
                print()
                print(format_table("targets", ["target", "value", "wanted", "verdict"], rows))
            print()
        body = {
            "bench": self.bench,
            "quick": self.quick,
            "machine": machine(),
            "code": code_version(),
            "cpus_busy_before": self.busy_at_start,
            "params": self.params,
            "results": self.results,
            "targets": self.targets,
        }
        print(json.dumps(body, default=str), flush=True)


def fmt(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    return str(value)


def format_table(title: str, columns: list[str], rows: list[list[object]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(col)] + [len(row[i]) for row in cells]) for i, col in enumerate(columns)]
    lines = [f"## {title}"]
    lines.append("  ".join(col.rjust(w) for col, w in zip(columns, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linear between the two nearest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- rule sets and events ----------------------------------------------------------------

STEMS = (
    "HighCPU",
    "DiskFull",
    "MemoryPressure",
    "PodCrashLooping",
    "TargetDown",
    "HighLatency",
    "ErrorRate",
    "CertExpiring",
    "QueueBacklog",
    "NodeNotReady",
    "ReplicationLag",
    "OOMKilled",
)
TEAMS = ("web", "payments", "search", "data", "infra", "mobile", "identity", "billing")
SEVERITIES = ("critical", "warning", "info")
ENVS = ("prod", "staging", "dev")
METRICS = ("cpu", "disk", "memory", "load")
HOSTS = 200


def alert_names(count: int) -> list[str]:
    return [f"{STEMS[i % len(STEMS)]}{i}" for i in range(max(1, count))]


def team_names(count: int) -> list[str]:
    return list(TEAMS) + [f"team{i:03d}" for i in range(len(TEAMS), count)]


@dataclass(frozen=True)
class RuleSet:
    """Generated rules (as YAML-ready dicts), the alert names their exact subjects use, and
    the teams their conditions name."""

    rules: list[dict[str, Any]]
    names: list[str]
    teams: list[str]

    def write(self, directory: Path, per_file: int = 500) -> Path:
        """Block-style YAML, `per_file` rules a file, as a team would keep them in git."""
        directory.mkdir(parents=True, exist_ok=True)
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        for start in range(0, len(self.rules), per_file):
            chunk = {"rules": self.rules[start : start + per_file]}
            text = yaml.dump(chunk, Dumper=dumper, sort_keys=False, default_flow_style=False)
            (directory / f"rules-{start // per_file:04d}.yaml").write_text(text)
        return directory


def _step(name: str) -> list[dict[str, object]]:
    return [
        {
            "name": "notify",
            "publish": {
                "subject": f"remediator.notifications.{name}",
                "json": {"text": "{{ event.labels.alertname }} at {{ event.value }}"},
            },
        }
    ]


def generate_rules(count: int, *, wildcard_share: float = 0.02, seed: int = 1) -> RuleSet:
    """`count` rules, as a fleet of teams would write them (one team per 100 rules, at
    least 8). Exact rules listen on `alerts.<Name>` (about 3 rules a name, 1 in 10 on two
    names) and match severity, often env (`in`), a value threshold (`gte` on the numeric
    string) and sometimes team; 1 in 10 has a `when`. A `wildcard_share` of the rules are
    each team's catch-alls: `alerts.*` for its critical alerts, `host.*.<metric>` for its
    warning or critical alerts above a threshold."""

    rng = random.Random(seed)
    teams = team_names(max(len(TEAMS), count // 100))
    wild = round(count * wildcard_share) if count > 1 else 0
    exact = count - wild
    names = alert_names(math.ceil(exact / 3))
    rules: list[dict[str, Any]] = []
    for i in range(exact):
        name = f"r{i:05d}"
        subjects = [f"alerts.{names[i % len(names)]}"]
        if rng.random() < 0.1:
            subjects.append(f"alerts.{rng.choice(names)}")
        match: dict[str, object] = {"labels.severity": rng.choice(("critical", "warning"))}
        if rng.random() < 0.5:
            match["labels.env"] = {"in": ["prod", "staging"]}
        if rng.random() < 0.2:
            match["labels.team"] = rng.choice(teams)
        if rng.random() < 0.6:
            match["value"] = {"gte": rng.randint(50, 95)}
        rule: dict[str, object] = {"name": name, "on": sorted(set(subjects)), "match": match}
        if rng.random() < 0.1:
            rule["when"] = "event.labels.service.startswith('web')"
        rule["actions"] = _step(name)
        rules.append(rule)
    for i in range(wild):
        name = f"w{i:05d}"
        team = teams[i // 2 % len(teams)]
        if i % 2 == 0:
            match = {"labels.severity": "critical", "labels.team": team}
            rule = {"name": name, "on": ["alerts.*"], "match": match}
        else:
            metric = METRICS[i // 2 % len(METRICS)]
            match = {
                "labels.severity": {"in": ["critical", "warning"]},
                "labels.team": team,
                "value": {"gt": rng.randint(80, 98)},
            }
            rule = {"name": name, "on": [f"host.*.{metric}"], "match": match}
        rule["actions"] = _step(name)
        rules.append(rule)
    return RuleSet(rules=rules, names=names, teams=teams)


def generate_events(
    ruleset: RuleSet, count: int, *, seed: int = 2, severity: str | None = None
) -> list[tuple[str, dict[str, object]]]:
    """`count` Alertmanager-shaped events: 85% on a ruled `alerts.<Name>`, 5% on an alert no
    exact rule names, 10% on `host.<h>.<metric>`. `severity` forces every event's severity
    (`"none"` makes every generated rule miss, most on their first condition)."""
    rng = random.Random(seed)
    events = []
    for i in range(count):
        roll = rng.random()
        host = f"h{rng.randrange(HOSTS):03d}"
        if roll < 0.85:
            alertname = rng.choice(ruleset.names)
            subject = f"alerts.{alertname}"
        elif roll < 0.90:
            alertname = f"Unruled{rng.randrange(50)}"
            subject = f"alerts.{alertname}"
        else:
            metric = rng.choice(METRICS)
            alertname = f"Host{metric.title()}"
            subject = f"host.{host}.{metric}"
        payload = {
            "status": "firing",
            "labels": {
                "alertname": alertname,
                "severity": severity or rng.choices(SEVERITIES, weights=(3, 5, 2))[0],
                "env": rng.choices(ENVS, weights=(5, 3, 2))[0],
                "team": rng.choice(ruleset.teams),
                "service": rng.choice(("web-frontend", "api", "worker", "db", "web-admin")),
                "instance": f"{host}:9100",
            },
            "annotations": {"summary": f"{alertname} on {host}"},
            "value": f"{rng.uniform(0, 100):.1f}",
            "startsAt": "2024-05-01T12:00:00Z",
            "fingerprint": f"{rng.getrandbits(64):016x}",
            "seq": i,
        }
        events.append((subject, payload))
    return events


def ruled_events(
    ruleset: RuleSet, count: int, *, severity: str | None = None
) -> list[tuple[str, dict[str, object]]]:
    """Like `generate_events`, keeping only events on subjects some rule listens on (the
    events a daemon's consumer receives)."""
    from remediator.rules.matching import subject_matches

    patterns = {str(p) for rule in ruleset.rules for p in rule["on"]}
    kept: list[tuple[str, dict[str, object]]] = []
    for seed in range(2, 22):
        batch = generate_events(ruleset, count, seed=seed, severity=severity)
        kept += [e for e in batch if any(subject_matches(p, e[0]) for p in patterns)]
        if len(kept) >= count:
            return kept[:count]
    raise ValueError(f"only {len(kept)} of 20 x {count} generated events match the rules")


# --- child processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> int | None:
    """SIGTERM this pid, SIGKILL it after `timeout`; returns the exit code."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


_LISTEN = re.compile(r"Listening for client connections on [\d.]+:(\d+)")


@dataclass
class NatsServer:
    """nats-server with JetStream on 127.0.0.1, on a port it picks; its data in `store`."""

    store: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> NatsServer:
        self.store.mkdir(parents=True, exist_ok=True)
        log_path = self.store / "nats-server.log"
        args = [str(server_binary()), "-a", "127.0.0.1", "-p", "-1", "-js"]
        args += ["-sd", str(self.store / "js"), "-l", str(log_path)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log_path.read_text() if log_path.exists() else ""
            if (found := _LISTEN.search(text)) and "Server is ready" in text:
                self.port = int(found.group(1))
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {text}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("nats-server did not become ready")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


PYCACHE = Path(tempfile.gettempdir()) / "remediator-bench-pycache"


def clean_env() -> dict[str, str]:
    """The environment for children: no REMEDIATOR_* setting of the caller's, and bytecode
    cached (under PYCACHE) even where PYTHONDONTWRITEBYTECODE is set, as an installed
    package has it; otherwise every start would compile every module from source."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


@dataclass
class Daemon:
    """`python -m remediator run` as an operator starts it; ready when /readyz says 200.

    `profile` wraps it: `cprofile` runs it under `python -m cProfile -o <profile_out>`
    (written when SIGTERM lets it exit cleanly); `py-spy` attaches `py-spy record` to
    its pid for the window between `profile_start` and `profile_stop`; `strace` likewise
    attaches `strace -c` (system call counts).
    """

    rules: Path
    nats_url: str
    stream: str
    durable: str
    workdir: Path
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    profile_out: Path | None = None
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @classmethod
    def on(cls, tmp: Path, url: str, args: argparse.Namespace, *extra: str) -> Daemon:
        """The daemon every end-to-end bench runs: rules in tmp/rules, the bench stream."""
        return cls(
            rules=tmp / "rules",
            nats_url=url,
            stream=BENCH_STREAM,
            durable=BENCH_DURABLE,
            workdir=tmp / "daemon",
            extra=list(extra),
            profile=args.profile,
            profile_out=args.profile_out,
        )

    async def start_on(self, js: JetStreamContext, subjects: list[str]) -> float:
        """Create the bench stream, start the daemon, wait until its consumer is bound;
        returns the seconds to ready."""
        await js.add_stream(StreamConfig(name=BENCH_STREAM, subjects=subjects))
        self.start()
        ready = self.wait_ready()
        await wait_push_bound(js, BENCH_STREAM, BENCH_DURABLE)
        return ready

    @property
    def log_path(self) -> Path:
        return self.workdir / f"daemon-{self.durable}.log"

    def command(self) -> list[str]:
        prefix = [PYTHON]
        if self.profile == "cprofile":
            assert self.profile_out is not None
            prefix += ["-m", "cProfile", "-o", str(self.profile_out)]
        return [
            *prefix,
            "-m",
            "remediator",
            "run",
            "--rules",
            str(self.rules),
            "--nats",
            self.nats_url,
            "--stream",
            self.stream,
            "--durable",
            self.durable,
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--log-level",
            "WARNING",
            *self.extra,
        ]

    def start(self) -> Daemon:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.started = time.perf_counter()
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env={**clean_env(), **self.env},
                stdout=log,
                stderr=log,
            )
        return self

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.http_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout: float = 60.0, poll: float = 0.005) -> float:
        """Seconds from process start to the first 200 from /readyz."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}:\n{self.logs()}")
            if self.ready():
                return time.perf_counter() - self.started
            time.sleep(poll)
        raise RuntimeError(f"daemon not ready in {timeout}s:\n{self.logs()}")

    def rss_kib(self) -> int:
        assert self.process is not None
        return vm_rss_kib(self.process.pid)

    def logs(self, tail: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:]

    def profile_start(self) -> None:
        if self.profile not in ("py-spy", "strace"):
            return
        assert self.process is not None and self.profile_out is not None
        pid, out = str(self.process.pid), str(self.profile_out)
        if self.profile == "py-spy":
            command = ["py-spy", "record", "--pid", pid, "--rate", "200"]
            command += ["--format", "raw", "--output", out]
        else:  # a count of system calls (how many socket writes per event, say)
            command = ["strace", "-c", "-f", "-p", pid, "-o", out]
        self.spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached before the measured window starts

    def profile_stop(self) -> None:
        spy, self.spy = self.spy, None
        if spy is None:
            return
        spy.send_signal(signal.SIGINT)  # py-spy and strace write their output on Ctrl-C
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)

    def stop(self) -> int | None:
        self.profile_stop()
        code = stop_process(self.process, timeout=40)
        self.process = None
        return code


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raw_consumer(url: str, deliver: str, group: str, *extra: str) -> subprocess.Popen[bytes]:
    """The baseline's consumer: bench/raw_consumer.py in its own process (see there)."""
    command = [PYTHON, str(BENCH_DIR / "raw_consumer.py"), "--nats", url]
    command += ["--deliver", deliver, "--group", group, *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=clean_env())
    assert process.stdout is not None
    line = process.stdout.readline()  # "ready" once subscribed (or EOF if it died)
    if line.strip() != b"ready":
        stop_process(process)
        raise RuntimeError(f"raw consumer did not start: {line!r}")
    return process


# --- JetStream ---------------------------------------------------------------------------


async def mirror_consumer(
    js: JetStreamContext, stream: str, daemon_durable: str, durable: str, deliver: str
) -> ConsumerConfig:
    """A consumer configured as the daemon made its own (read back from the server: push,
    deliver group, explicit acks, the same ack wait, max deliver and max_ack_pending), for
    the raw baselines; delivering to `deliver` in queue group `durable`, every subject."""
    theirs = (await js.consumer_info(stream, daemon_durable)).config
    return ConsumerConfig(
        durable_name=durable,
        deliver_subject=deliver,
        deliver_group=durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=theirs.ack_wait,
        max_deliver=theirs.max_deliver,
        max_ack_pending=theirs.max_ack_pending,
    )


async def wait_push_bound(
    js: JetStreamContext, stream: str, durable: str, timeout: float = 30.0
) -> None:
    """Until the consumer exists and someone is subscribed to its deliver subject."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = await js.consumer_info(stream, durable)
            if info.push_bound:
                return
        except Exception:  # not created yet
            pass
        await asyncio.sleep(0.02)
    raise TimeoutError(f"consumer {durable} on {stream} not bound in {timeout}s")


async def pause(js: JetStreamContext, stream: str, durable: str) -> None:
    await js.pause_consumer(stream, durable, "2100-01-01T00:00:00Z")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Drained:
    """How long a consumer took, and the CPU each watched process used meanwhile."""

    seconds: float
    cpu: dict[str, float]

    def busy(self, name: str) -> float:
        """CPU seconds per wall second (1.0 = one core saturated)."""
        return self.cpu.get(name, math.nan) / self.seconds


async def drain_time(
    js: JetStreamContext,
    stream: str,
    durable: str,
    last_seq: int,
    timeout: float,
    pids: dict[str, int] | None = None,
    poll: float = 0.01,
    lead: float = 0.5,
) -> Drained:
    """Let the paused consumer go; time until it has every message up to `last_seq` acked
    (num_pending == 0, num_ack_pending == 0, ack floor at `last_seq`), polled every `poll`,
    and the CPU time the processes in `pids` used meanwhile.

    The server does not restart delivery on a push consumer when a pause is lifted early
    (`resume_consumer`), only when the pause runs out; so the pause is moved to `lead`
    seconds from now, and the clock starts at that instant (wall clock, same machine).
    """
    pids = pids or {}
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead)
    await js.pause_consumer(stream, durable, until.isoformat().replace("+00:00", "Z"))
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = until.timestamp()
    deadline = time.monotonic() + lead + timeout
    while time.monotonic() < deadline:
        info = await js.consumer_info(stream, durable)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if not info.num_pending and not info.num_ack_pending and floor >= last_seq:
            seconds = time.time() - start
            cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            return Drained(seconds, cpu)
        await asyncio.sleep(poll)
    raise TimeoutError(f"{durable} did not drain {last_seq} messages in {timeout}s")


async def fill(js: JetStreamContext, events: Iterable[tuple[str, dict[str, object]]]) -> int:
    """Publish every event through JetStream (async acks); the last stream sequence."""
    futures = []
    for subject, payload in events:
        data = json.dumps(payload).encode()
        futures.append(await js.publish_async(subject, data))
    acks = await asyncio.gather(*futures)
    return max(int(ack.seq) for ack in acks)
