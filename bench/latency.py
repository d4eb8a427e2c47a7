"""Latency from an alert's publish to its HTTP step's request arriving, at a steady rate.

    python bench/latency.py            # 500 events/s for 10 s (after 1 s of warm-up)
    python bench/latency.py --quick    # 200 events/s for 1 s
    python bench/latency.py --profile py-spy --profile-out /tmp/latency.txt

One nats-server (JetStream, 127.0.0.1, random port), an HTTP target
(bench/http_target.py, aiohttp on 127.0.0.1, its own process), the daemon as
a subprocess with one rule on `alerts.*` (severity and a numeric threshold in
`match`, a `when`) whose `http` step POSTs the event's `sent` and `seq` to the
target. This process paces `js.publish` (awaited) at `--rate`; each payload
carries `sent` = time.time() just before its publish; the target takes
time.time() when the request arrives (same clock, same machine). Every event
goes to one subject, `alerts.HighCPU` (`--subjects N` rotates over N alert
names instead), each with its own `fingerprint`, as Alertmanager's alerts for
many hosts arrive: the ordering key (SPEC §5) keeps them from waiting for
each other.

Baseline, same run, same server, same publisher, after the daemon has stopped:
a raw durable push consumer (configured as the daemon's, read back from the
server; deliver policy new) in its own process (bench/raw_consumer.py),
taking time.time() when each message arrives, then acking it. Warm-up events
(the first second) are left out of both. Also reported: the CPU time the
daemon, nats-server and this (publishing) process used while the daemon
served the rate (/proc/PID/stat), per event and per wall second.
Targets: p50 <= 2 ms, p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import nats
import yaml
from common import (
    BENCH_DIR,
    BENCH_DURABLE,
    BENCH_STREAM,
    PYTHON,
    Daemon,
    NatsServer,
    Report,
    add_profile_flags,
    alert_names,
    clean_env,
    cpu_seconds,
    mirror_consumer,
    parser,
    percentile,
    raw_consumer,
    run_bench,
    stop_process,
    wait_push_bound,
)
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

STREAM, DURABLE = BENCH_STREAM, BENCH_DURABLE
RAW = "raw"


def hook_rule(url: str) -> str:
    rule = {
        "name": "latency-hook",
        "on": ["alerts.*"],
        "match": {"labels.severity": "critical", "value": {"gte": 50}},
        "when": "event.labels.service.startswith('web')",
        "actions": [
            {
                "name": "hook",
                "http": {
                    "method": "POST",
                    "url": f"{url}/hook",
                    "json": {
                        "sent": "{{ event.sent }}",
                        "seq": "{{ event.seq }}",
                        "text": "{{ event.labels.alertname }} at {{ event.value }}",
                    },
                },
                "timeout": "5s",
            }
        ],
    }
    return str(yaml.safe_dump({"rules": [rule]}, sort_keys=False))


def http_target(expect: int, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """bench/http_target.py in its own process; its URL once it listens."""
    command = [PYTHON, str(BENCH_DIR / "http_target.py"), "--expect", str(expect), *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=clean_env())
    assert process.stdout is not None
    words = process.stdout.readline().split()  # b"ready PORT" (or nothing if it died)
    if len(words) != 2 or words[0] != b"ready":
        stop_process(process)
        raise RuntimeError(f"http target did not start: {words!r}")
    return process, f"http://127.0.0.1:{int(words[1])}"


def collect(process: subprocess.Popen[bytes], timeout: float) -> list[tuple[int, float]]:
    """The (seq, latency) pairs a target or raw consumer prints when it is done."""
    try:
        out, _ = process.communicate(None, timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # prints what it has, then exits
        out, _ = process.communicate(None, 30)
    return [(int(seq), float(lat)) for seq, lat in json.loads(out)["latencies"]]


async def paced(js: JetStreamContext, rate: float, count: int, subjects: int) -> float:
    """Publish `count` events at `rate` a second over `subjects` subjects; the achieved rate."""
    names = ["HighCPU"] if subjects == 1 else alert_names(subjects)
    start = time.perf_counter()
    for seq in range(count):
        delay = start + seq / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        payload = {
            "status": "firing",
            "labels": {"alertname": names[seq % subjects], "severity": "critical"}
            | {"service": "web-frontend", "instance": f"h{seq % 200:03d}:9100"},
            "value": "97.5",
            "fingerprint": f"{seq:016x}",
            "seq": seq,
            "sent": time.time(),
        }
        await js.publish(f"alerts.{names[seq % subjects]}", json.dumps(payload).encode())
    return count / (time.perf_counter() - start)


def stats(seen: list[tuple[int, float]], warmup: int, expected: int) -> dict[str, float]:
    values = [lat * 1000 for seq, lat in seen if seq >= warmup]
    return {
        "count": len(values),
        "lost": expected - len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else float("nan"),
        "over_10ms": sum(1 for v in values if v > 10),
        "over_100ms": sum(1 for v in values if v > 100),
    }


async def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    rate = 200.0 if args.quick else args.rate
    seconds = 1.0 if args.quick else args.seconds
    warmup = int(rate * (0.2 if args.quick else 1.0))
    total = warmup + int(rate * seconds)
    report.params = {
        "rate": rate,
        "seconds": seconds,
        "warmup_events": warmup,
        "subjects": args.subjects,
    }
    target, url = http_target(total)
    (tmp / "rules").mkdir()
    (tmp / "rules" / "hook.yaml").write_text(hook_rule(url))
    server = NatsServer(tmp / "nats").start()
    daemon = Daemon.on(tmp, server.url, args)
    raw = None
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        await daemon.start_on(js, ["alerts.>"])
        daemon.profile_start()
        assert daemon.process is not None and server.process is not None
        pids = {"daemon": daemon.process.pid, "server": server.process.pid}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        bench_before = time.process_time()
        started = time.perf_counter()
        daemon_rate = await paced(js, rate, total, args.subjects)
        seen = await asyncio.to_thread(collect, target, 30)
        wall = time.perf_counter() - started
        used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        used["bench"] = time.process_time() - bench_before
        daemon.stop()

        deliver = f"_BENCH.deliver.{STREAM}.{RAW}"
        config = await mirror_consumer(js, STREAM, DURABLE, RAW, deliver)
        config.deliver_policy = DeliverPolicy.NEW
        await js.add_consumer(STREAM, config)
        raw = raw_consumer(server.url, deliver, RAW, "--expect", str(total), "--timeout", "60")
        await wait_push_bound(js, STREAM, RAW)
        raw_rate = await paced(js, rate, total, args.subjects)
        raw_seen = await asyncio.to_thread(collect, raw, 60)
    finally:
        stop_process(target)
        stop_process(raw)
        daemon.stop()
        await nc.close()
        server.stop()

    if args.dump is not None:
        args.dump.write_text(json.dumps({"daemon": seen, "raw": raw_seen}))
    mine = stats(seen, warmup, total - warmup)
    base = stats(raw_seen, warmup, total - warmup)
    cpu = {
        "daemon_cpu_us_per_event": 1e6 * used["daemon"] / total,
        "daemon_busy": used["daemon"] / wall,
        "server_busy": used["server"] / wall,
        "bench_busy": used["bench"] / wall,
    }
    report.results = {
        "daemon": mine | {"publish_rate": daemon_rate} | cpu,
        "raw": base | {"publish_rate": raw_rate},
    }
    columns = ["path", "rate/s", "events", "lost", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    columns += [">10 ms", ">100 ms"]
    keys = ["count", "lost", "p50_ms", "p90_ms", "p99_ms", "max_ms", "over_10ms", "over_100ms"]
    report.table(
        f"publish -> arrival latency at {rate:,.0f} events/s for {seconds:g} s "
        f"on {args.subjects} subject(s)",
        columns,
        [
            ["remediator: publish -> HTTP step request", daemon_rate, *(mine[k] for k in keys)],
            ["baseline: publish -> raw push consumer", raw_rate, *(base[k] for k in keys)],
        ],
    )
    report.table(
        "the daemon's CPU while it served that rate",
        ["daemon CPU us/event", "daemon CPU (1.0 = a core)", "nats-server CPU", "publisher CPU"],
        [
            [
                cpu["daemon_cpu_us_per_event"],
                cpu["daemon_busy"],
                cpu["server_busy"],
                cpu["bench_busy"],
            ]
        ],
    )
    report.target("p50 publish -> HTTP request", mine["p50_ms"], "<=", 2.0, "ms")
    report.target("p99 publish -> HTTP request", mine["p99_ms"], "<=", 10.0, "ms")


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--rate", type=float, default=500.0)
    cli.add_argument("--seconds", type=float, default=10.0)
    cli.add_argument("--subjects", type=int, default=1, help="alert subjects to rotate over")
    cli.add_argument("--dump", type=Path, help="write every (seq, latency s) pair here")
    add_profile_flags(cli, "latency")
    return run_bench("latency", cli, run)


if __name__ == "__main__":
    raise SystemExit(main())
