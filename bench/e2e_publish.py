"""The daemon end to end with every event firing a rule whose step publishes an event.

    python bench/e2e_publish.py            # 100 rules, 20,000 events, ~1 minute
    python bench/e2e_publish.py --quick    # 10 rules, 300 events, seconds
    python bench/e2e_publish.py --profile py-spy --profile-out /tmp/publish.txt

One nats-server (JetStream, 127.0.0.1, random port). The daemon runs as a
subprocess with `--rules` rules, one per subject `alerts.<Name>`, each matching
`severity: critical` and a numeric threshold, rendering a var and a `publish`
step to `remediator.notifications.<rule>` (captured by REMEDIATOR_RESULTS, so
published through JetStream and acknowledged). Every event (spread evenly over
the subjects) fires exactly one rule, so per event the daemon reads and writes
its completion record (KV), publishes the step's event and the result event,
and acks.

Timing as in e2e_idle.py: the daemon's consumer is paused while the stream is
filled, and the clock runs from the moment it is let go until the server
reports every event acked. Afterwards REMEDIATOR_RESULTS must hold one result
and one step event per event.

Baselines, same run, same server, after the daemon has stopped: the same
events drained by a second durable (configured as the daemon's, read back
from the server, so as many messages in flight) whose
consumer, bench/raw_consumer.py `--work publish` in its own process, does the
daemon's JetStream I/O per event and nothing else (KV get, publish, KV
create, publish, ack; the floor of that I/O in nats-py); then the raw rate of
JetStream publishing from one nats-py client, `js.publish` awaited one after
the other, and `js.publish_async` (4,000 in flight) then awaiting every ack.
Target: >= 10,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import nats
import yaml
from common import (
    BENCH_DURABLE,
    BENCH_STREAM,
    Daemon,
    NatsServer,
    Report,
    add_profile_flags,
    alert_names,
    drain_time,
    fill,
    mirror_consumer,
    parser,
    pause,
    raw_consumer,
    run_bench,
    stop_process,
    wait_push_bound,
)
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

STREAM, DURABLE = BENCH_STREAM, BENCH_DURABLE
RAW = "raw"
TARGET = 10_000.0


def firing_rules(names: list[str]) -> str:
    rules = [
        {
            "name": f"notify-{name}",
            "on": [f"alerts.{name}"],
            "match": {"labels.severity": "critical", "value": {"gte": 50}},
            "vars": {"service": "{{ event.labels.service }}"},
            "actions": [
                {
                    "name": "notify",
                    "publish": {
                        "subject": f"remediator.notifications.{name}",
                        "json": {
                            "text": "{{ event.labels.alertname }} at {{ event.value }}% "
                            "on {{ vars.service }}",
                            "service": "{{ vars.service }}",
                            "trace_id": "{{ trace_id }}",
                        },
                    },
                    "timeout": "5s",
                }
            ],
        }
        for name in names
    ]
    return str(yaml.safe_dump({"rules": rules}, sort_keys=False))


def firing_events(names: list[str], count: int) -> list[tuple[str, dict[str, object]]]:
    events = []
    for i in range(count):
        name = names[i % len(names)]
        payload = {
            "status": "firing",
            "labels": {
                "alertname": name,
                "severity": "critical",
                "service": f"web-{i % 7}",
                "instance": f"h{i % 200:03d}:9100",
            },
            "value": f"{50 + i % 50}.5",
            "fingerprint": f"{i:016x}",
        }
        events.append((f"alerts.{name}", payload))
    return events


async def publish_rates(js: JetStreamContext, count: int) -> tuple[float, float]:
    """Messages per second of (sequential js.publish, js.publish_async + gather)."""
    await js.add_stream(StreamConfig(name="BENCH_BASELINE", subjects=["baseline.>"]))
    data = json.dumps({"text": "HighCPU0 at 97.5% on web-1", "service": "web-1"}).encode()
    start = time.perf_counter()
    for i in range(count):
        await js.publish(f"baseline.seq.{i % 100}", data)
    sequential = count / (time.perf_counter() - start)
    start = time.perf_counter()
    futures = [await js.publish_async(f"baseline.async.{i % 100}", data) for i in range(count)]
    await asyncio.gather(*futures)
    concurrent = count / (time.perf_counter() - start)
    return sequential, concurrent


async def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    n_rules = 10 if args.quick else args.rules
    n_events = 300 if args.quick else args.events
    n_baseline = 300 if args.quick else args.baseline_messages
    report.params = {"rules": n_rules, "events": n_events, "baseline_messages": n_baseline}
    names = alert_names(n_rules)
    (tmp / "rules").mkdir()
    (tmp / "rules" / "notify.yaml").write_text(firing_rules(names))
    server = NatsServer(tmp / "nats").start()
    daemon = Daemon.on(tmp, server.url, args)
    raw = None
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        await daemon.start_on(js, ["alerts.>"])
        await pause(js, STREAM, DURABLE)
        deliver = f"_BENCH.deliver.{STREAM}.{RAW}"
        config = await mirror_consumer(js, STREAM, DURABLE, RAW, deliver)
        report.params["max_ack_pending"] = config.max_ack_pending
        await js.add_consumer(STREAM, config)
        await pause(js, STREAM, RAW)
        last = await fill(js, firing_events(names, n_events))
        daemon.profile_start()
        assert daemon.process is not None and server.process is not None
        pids = {"consumer": daemon.process.pid, "server": server.process.pid}
        mine = await drain_time(js, STREAM, DURABLE, last, timeout=600, pids=pids)
        daemon.profile_stop()
        daemon.stop()
        stored = (await js.stream_info("REMEDIATOR_RESULTS")).state.messages

        raw = raw_consumer(server.url, deliver, RAW, "--work", "publish")
        await wait_push_bound(js, STREAM, RAW)
        pids = {"consumer": raw.pid, "server": server.process.pid}
        base = await drain_time(js, STREAM, RAW, last, timeout=600, pids=pids)
        stop_process(raw)
        sequential, concurrent = await publish_rates(js, n_baseline)
    finally:
        stop_process(raw)
        daemon.stop()
        await nc.close()
        server.stop()

    rate, raw_rate = n_events / mine.seconds, n_events / base.seconds
    report.results = {
        "events": n_events,
        "rules": n_rules,
        "daemon_s": mine.seconds,
        "daemon_eps": rate,
        "daemon_cpu_us_per_event": 1e6 * mine.cpu["consumer"] / n_events,
        "daemon_busy": mine.busy("consumer"),
        "server_busy_with_daemon": mine.busy("server"),
        "raw_workalike_s": base.seconds,
        "raw_workalike_eps": raw_rate,
        "raw_workalike_cpu_us_per_event": 1e6 * base.cpu["consumer"] / n_events,
        "raw_workalike_busy": base.busy("consumer"),
        "server_busy_with_raw": base.busy("server"),
        "results_stream_messages": stored,
        "baseline_js_publish_sequential_mps": sequential,
        "baseline_js_publish_async_mps": concurrent,
    }
    report.table(
        f"every event fires a publish step: {n_events:,} events over {n_rules:,} rules",
        ["consumer", "events/s", "CPU us/event", "consumer CPU", "server CPU"],
        [
            ["remediator (per event: 2 KV ops, 2 publishes, 1 ack)", rate,
             1e6 * mine.cpu["consumer"] / n_events, mine.busy("consumer"), mine.busy("server")],
            ["raw nats-py doing the same I/O per event", raw_rate,
             1e6 * base.cpu["consumer"] / n_events, base.busy("consumer"), base.busy("server")],
        ],
    )  # fmt: skip
    report.table(
        "baseline: raw JetStream publishing from one nats-py client",
        ["how", "messages/s"],
        [
            ["js.publish, each awaited in turn", sequential],
            ["js.publish_async (4,000 in flight), then every ack", concurrent],
        ],
    )
    report.target("events/s with a publish step", rate, ">=", TARGET, "events/s")
    if stored != 2 * n_events:
        raise RuntimeError(f"REMEDIATOR_RESULTS holds {stored}, expected {2 * n_events}")


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--rules", type=int, default=100)
    cli.add_argument("--events", type=int, default=20_000)
    cli.add_argument("--baseline-messages", type=int, default=20_000)
    add_profile_flags(cli, "e2e_publish")
    return run_bench("e2e_publish", cli, run)


if __name__ == "__main__":
    raise SystemExit(main())
