"""The daemon end to end on JetStream with nothing firing, against a raw nats-py consumer.

    python bench/e2e_idle.py             # 1,000 rules, 50,000 events, ~1 minute
    python bench/e2e_idle.py --quick     # 20 rules, 500 events, seconds
    python bench/e2e_idle.py --profile py-spy --profile-out /tmp/idle.txt

One nats-server (JetStream, 127.0.0.1, random port), one stream of alerts
(`alerts.>`, `host.>`). The daemon runs as a subprocess (`python -m remediator
run ...`) with generated rules whose subjects match the events but whose
`match` never does (every event says `severity: none`), so every event is
decoded, matched against its candidate rules and acked, and nothing fires.

Timing, the same for both consumers, excludes start-up and publishing: the
consumer exists and is subscribed, then it is *paused* (JetStream consumer
pause), the stream is filled with N events, and the clock runs from the
resume request until the server reports the consumer done (num_pending == 0,
num_ack_pending == 0, ack floor at the last sequence; polled every 10 ms).
CPU columns: CPU seconds (user + system, /proc/PID/stat) the consumer and
nats-server used in that window, per event and per wall second (1.0 = one
core busy all along).
The daemon goes first (the colder run), then the baseline: a second durable
on the same stream, with the daemon's consumer config (push, deliver group,
explicit acks, its max_ack_pending, read back from the server), consumed by
bench/raw_consumer.py in its own process, `msg.ack()` per message.
Target: daemon >= 0.5 x the raw rate.
"""

from __future__ import annotations

import argparse
import urllib.request
from pathlib import Path

import nats
from common import (
    BENCH_DURABLE,
    BENCH_STREAM,
    Daemon,
    NatsServer,
    Report,
    add_profile_flags,
    drain_time,
    fill,
    generate_rules,
    mirror_consumer,
    parser,
    pause,
    raw_consumer,
    ruled_events,
    run_bench,
    stop_process,
    wait_push_bound,
)

STREAM, DURABLE = BENCH_STREAM, BENCH_DURABLE
RAW = "raw"


def metric_sum(text: str, name: str) -> float:
    """The sum of a metric's samples over all label values, from Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(daemon: Daemon) -> str:
    url = f"http://127.0.0.1:{daemon.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    n_rules = 20 if args.quick else args.rules
    n_events = 500 if args.quick else args.events
    concurrency = args.concurrency
    report.params = {"rules": n_rules, "events": n_events, "concurrency": concurrency}
    ruleset = generate_rules(n_rules)
    ruleset.write(tmp / "rules")
    events = ruled_events(ruleset, n_events, severity="none")
    server = NatsServer(tmp / "nats").start()
    daemon = Daemon.on(tmp, server.url, args, "--concurrency", str(concurrency))
    raw = None
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        ready_s = await daemon.start_on(js, ["alerts.>", "host.>"])
        await pause(js, STREAM, DURABLE)
        deliver = f"_BENCH.deliver.{STREAM}.{RAW}"
        config = await mirror_consumer(js, STREAM, DURABLE, RAW, deliver)
        report.params["max_ack_pending"] = config.max_ack_pending
        await js.add_consumer(STREAM, config)
        await pause(js, STREAM, RAW)
        last = await fill(js, events)

        daemon.profile_start()
        assert daemon.process is not None and server.process is not None
        pids = {"consumer": daemon.process.pid, "server": server.process.pid}
        mine = await drain_time(js, STREAM, DURABLE, last, timeout=600, pids=pids)
        daemon.profile_stop()
        metrics = scrape(daemon)
        received = metric_sum(metrics, "remediator_events_received_total")
        evaluations = metric_sum(metrics, "remediator_rule_evaluations_total")
        fired = metric_sum(metrics, "remediator_rule_results_total")
        daemon.stop()

        raw = raw_consumer(server.url, deliver, RAW)
        await wait_push_bound(js, STREAM, RAW)
        pids = {"consumer": raw.pid, "server": server.process.pid}
        base = await drain_time(js, STREAM, RAW, last, timeout=600, pids=pids)
    finally:
        stop_process(raw)
        daemon.stop()
        await nc.close()
        server.stop()

    daemon_rate, raw_rate = n_events / mine.seconds, n_events / base.seconds
    per_event = evaluations / max(1.0, received)
    report.results = {
        "events": n_events,
        "rules": n_rules,
        "daemon_ready_s": ready_s,
        "daemon_s": mine.seconds,
        "daemon_eps": daemon_rate,
        "daemon_cpu_us_per_event": 1e6 * mine.cpu["consumer"] / n_events,
        "daemon_busy": mine.busy("consumer"),
        "server_busy_with_daemon": mine.busy("server"),
        "raw_s": base.seconds,
        "raw_eps": raw_rate,
        "raw_cpu_us_per_event": 1e6 * base.cpu["consumer"] / n_events,
        "raw_busy": base.busy("consumer"),
        "server_busy_with_raw": base.busy("server"),
        "ratio": daemon_rate / raw_rate,
        "daemon_events_received": received,
        "daemon_evaluations_per_event": per_event,
        "daemon_rules_fired": fired,
    }
    report.table(
        f"JetStream, nothing firing: {n_events:,} events, {n_rules:,} rules",
        ["consumer", "seconds", "events/s", "x raw", "CPU us/event", "consumer CPU",
         "server CPU", "evals/event"],
        [
            ["remediator", mine.seconds, daemon_rate, daemon_rate / raw_rate,
             1e6 * mine.cpu["consumer"] / n_events, mine.busy("consumer"), mine.busy("server"),
             per_event],
            ["raw nats-py (baseline)", base.seconds, raw_rate, 1.0,
             1e6 * base.cpu["consumer"] / n_events, base.busy("consumer"), base.busy("server"),
             0.0],
        ],
    )  # fmt: skip
    report.target("daemon / raw rate", daemon_rate / raw_rate, ">=", 0.5, "x")
    if received != n_events or fired:
        raise RuntimeError(f"daemon received {received} events and fired {fired} rules")


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--rules", type=int, default=1_000)
    cli.add_argument("--events", type=int, default=50_000)
    cli.add_argument("--concurrency", type=int, default=64, help="the daemon's --concurrency")
    add_profile_flags(cli, "e2e_idle")
    return run_bench("e2e_idle", cli, run)


if __name__ == "__main__":
    raise SystemExit(main())
