"""1,000 per-host rules all on one subject, the shape a fleet's alerts have: nothing firing,
then every event firing a publish step, each against its raw nats-py baseline.

    python bench/one_subject.py            # 1,000 rules; 20,000 events idle, 10,000 firing
    python bench/one_subject.py --quick    # 20 rules, 300 events each, seconds
    python bench/one_subject.py --profile py-spy --profile-out /tmp/one.txt  # firing phase

The rules are what a user writes per host: `host-web-N` on `alerts.HighCPU`,
`match: {labels.host: web-N, value: {gt: 90}}`, a `publish` step to
`remediator.notifications.host-web-N` (captured by REMEDIATOR_RESULTS: a
JetStream write). Events are Alertmanager-shaped, on `alerts.HighCPU` only,
hosts in turn, each with its own fingerprint (so the default ordering key
never queues one behind another).

Each phase starts a fresh nats-server and daemon; timing as in e2e_idle.py
(the consumer paused while the stream fills; the clock runs until the server
reports every event acked). Then the same events are drained by a second
durable configured as the daemon's, consumed by bench/raw_consumer.py in its
own process:

- idle (every `value` 50: the equality index finds the host's rule, its
  threshold fails): baseline, a raw push consumer that takes what has
  arrived as a batch and acks it with plain acks (one socket write per
  batch), the best nats-py does. Targets: daemon >= 0.5 x raw, and <= 50 us
  of the daemon's CPU per event.
- firing (every `value` 95): per event the daemon publishes the step's event,
  then the completion record and the result together, and acks with the
  server's confirmation; before the step, a reachability probe of the state
  store shared by the events waiting when it starts (`state_writes_per_event`
  counts records and probes). Baseline (the target's): the best raw nats-py
  does for the I/O the guarantees need, at the daemon's concurrency
  (`--work pipelined`: the step's event, then the record and the result
  together through publish_async, then a plain ack). Beside it `--work
  ordered`, a copy of the daemon's older round trips one after another
  (record, then result, then a confirmed ack), for comparison only. Targets:
  daemon >= 0.8 x raw pipelined, and <= 300 us of the daemon's CPU per event.
  `--log-level INFO` runs it with the per-result log line (the daemon's
  default level; the other benches run at WARNING).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import nats
import yaml
from common import (
    BENCH_DURABLE,
    BENCH_STREAM,
    Daemon,
    Drained,
    NatsServer,
    Report,
    add_profile_flags,
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

STREAM, DURABLE = BENCH_STREAM, BENCH_DURABLE
RAW = "raw"
SUBJECT = "alerts.HighCPU"


def host_rules(count: int) -> str:
    rules = [
        {
            "name": f"host-web-{n}",
            "on": [SUBJECT],
            "match": {"labels.host": f"web-{n}", "value": {"gt": 90}},
            "actions": [
                {
                    "name": "notify",
                    "publish": {
                        "subject": f"remediator.notifications.host-web-{n}",
                        "json": {"host": "{{ event.labels.host }}", "value": "{{ event.value }}"},
                    },
                    "timeout": "5s",
                }
            ],
        }
        for n in range(count)
    ]
    return str(yaml.safe_dump({"rules": rules}, sort_keys=False))


def host_events(hosts: int, count: int, value: int) -> list[tuple[str, dict[str, object]]]:
    return [
        (
            SUBJECT,
            {
                "status": "firing",
                "labels": {"alertname": "HighCPU", "host": f"web-{i % hosts}", "severity": "page"},
                "value": value,
                "startsAt": "2026-12-03T12:00:00Z",
                "fingerprint": f"{i:016x}",
            },
        )
        for i in range(count)
    ]


async def phase(
    args: argparse.Namespace, tmp: Path, n_rules: int, n_events: int, firing: bool
) -> tuple[Drained, dict[str, Drained], int, dict[str, int]]:
    """(daemon, {baseline: raw}, max_ack_pending, counts) for one phase on a fresh server."""
    name = "firing" if firing else "idle"
    (tmp / name / "rules").mkdir(parents=True)
    (tmp / name / "rules" / "hosts.yaml").write_text(host_rules(n_rules))
    server = NatsServer(tmp / name / "nats").start()
    profiled = (
        args if name == args.profile_phase else argparse.Namespace(profile=None, profile_out=None)
    )
    level = args.log_level if firing else "WARNING"
    daemon = Daemon.on(tmp / name, server.url, profiled, "--log-level", level)
    works = ("pipelined", "ordered") if firing else ("ack",)
    raw = None
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        await daemon.start_on(js, ["alerts.>"])
        await pause(js, STREAM, DURABLE)
        configs = {}
        for work in works:
            durable = f"{RAW}{work}"
            deliver = f"_BENCH.deliver.{STREAM}.{durable}"
            configs[work] = await mirror_consumer(js, STREAM, DURABLE, durable, deliver)
            await js.add_consumer(STREAM, configs[work])
            await pause(js, STREAM, durable)
        last = await fill(js, host_events(n_rules, n_events, 95 if firing else 50))
        daemon.profile_start()
        assert daemon.process is not None and server.process is not None
        pids = {"consumer": daemon.process.pid, "server": server.process.pid}
        mine = await drain_time(js, STREAM, DURABLE, last, timeout=600, pids=pids)
        daemon.profile_stop()
        daemon.stop()
        counts = {"results_stream": (await js.stream_info("REMEDIATOR_RESULTS")).state.messages}
        # Every write to the state bucket (completion records, reachability probes).
        counts["state_writes"] = (await js.stream_info("KV_REMEDIATOR_STATE")).state.last_seq
        bases = {}
        for work, config in configs.items():
            durable = str(config.durable_name)
            raw = raw_consumer(server.url, str(config.deliver_subject), durable, "--work", work)
            await wait_push_bound(js, STREAM, durable)
            pids = {"consumer": raw.pid, "server": server.process.pid}
            bases[work] = await drain_time(js, STREAM, durable, last, timeout=600, pids=pids)
            stop_process(raw)
            raw = None
    finally:
        stop_process(raw)
        daemon.stop()
        await nc.close()
        server.stop()
    return mine, bases, int(configs[works[0]].max_ack_pending or 0), counts


async def run(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    n_rules = 20 if args.quick else args.rules
    n_idle = 300 if args.quick else args.idle_events
    n_firing = 300 if args.quick else args.firing_events
    report.params = {
        "rules": n_rules,
        "idle_events": n_idle,
        "firing_events": n_firing,
        "firing_log_level": args.log_level,
    }
    rows: list[list[object]] = []
    results: dict[str, Any] = {}
    for firing, count in ((False, n_idle), (True, n_firing)):
        mine, bases, pending, counts = await phase(args, tmp, n_rules, count, firing)
        name = "firing" if firing else "idle"
        if firing and counts["results_stream"] != 2 * count:
            raise RuntimeError(f"REMEDIATOR_RESULTS holds {counts['results_stream']}")
        if not firing and counts["results_stream"] != 0:
            raise RuntimeError("an idle event fired a rule")
        rate = count / mine.seconds
        results[name] = {
            "events": count,
            "daemon_eps": rate,
            "daemon_cpu_us_per_event": 1e6 * mine.cpu["consumer"] / count,
            "daemon_busy": mine.busy("consumer"),
            "server_busy_with_daemon": mine.busy("server"),
            "max_ack_pending": pending,
            "state_writes_per_event": counts["state_writes"] / count,
            "baselines": {},
        }
        for work, base in bases.items():
            raw_rate = count / base.seconds
            results[name]["baselines"][work] = {
                "raw_eps": raw_rate,
                "ratio": rate / raw_rate,
                "raw_cpu_us_per_event": 1e6 * base.cpu["consumer"] / count,
                "raw_busy": base.busy("consumer"),
                "server_busy_with_raw": base.busy("server"),
            }
            rows.append([name, f"raw {work}", rate, raw_rate, rate / raw_rate,
                         1e6 * mine.cpu["consumer"] / count, 1e6 * base.cpu["consumer"] / count,
                         mine.busy("consumer"), mine.busy("server"), base.busy("consumer"),
                         base.busy("server")])  # fmt: skip
        # The target's baseline (the first) at the top level too, as the other benches.
        results[name] |= results[name]["baselines"][next(iter(bases))]
    report.results = results
    report.table(
        f"{n_rules:,} per-host rules on one subject ({SUBJECT})",
        [
            "phase",
            "baseline",
            "daemon ev/s",
            "baseline ev/s",
            "ratio",
            "daemon us/ev",
            "raw us/ev",
            "daemon CPU",
            "server CPU",
            "raw CPU",
            "server CPU (raw)",
        ],
        rows,
    )
    idle, fired = results["idle"], results["firing"]
    report.target("idle: daemon / raw ack-only", idle["ratio"], ">=", 0.5, "x")
    report.target("idle: daemon CPU per event", idle["daemon_cpu_us_per_event"], "<=", 50, "us")
    report.target("firing: daemon / raw pipelined", fired["ratio"], ">=", 0.8, "x")
    cpu = fired["daemon_cpu_us_per_event"]
    report.target("firing: daemon CPU per event", cpu, "<=", 300, "us")


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--rules", type=int, default=1_000)
    cli.add_argument("--idle-events", type=int, default=20_000)
    cli.add_argument("--firing-events", type=int, default=10_000)
    cli.add_argument(
        "--log-level",
        default="WARNING",
        help="the firing daemon's (INFO: one line per result, as the daemon's default)",
    )
    add_profile_flags(cli, "one_subject")
    cli.add_argument("--profile-phase", choices=["idle", "firing"], default="firing")
    return run_bench("one_subject", cli, run)


if __name__ == "__main__":
    raise SystemExit(main())
