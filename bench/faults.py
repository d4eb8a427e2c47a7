"""The hung-process fault table (issue 23), measured from outside on a real cluster.

A three-node JetStream cluster on 127.0.0.1 (tests/support/cluster.py), two
daemons with `--replicas 3` sharing one consumer, alerts published at about
20 a second (each until JetStream acknowledges it, with its own
`Nats-Msg-Id`), one rule whose step POSTs to a real HTTP target that counts
the calls per event. Daemon A is given only n1's URL, daemon B only n2's (each
learns the others from the cluster); the publisher and the result watcher use
n3. Then, one after the other:

1. SIGSTOP daemon A for `--daemon-stop` seconds (45), then SIGCONT;
2. SIGSTOP n1, the server daemon A is connected to, for `--server-stop`
   seconds (90), then SIGCONT.

Each fault is followed by `--settle` seconds of alerts. At the end the
publisher stops and every acknowledged alert is given time to get its result.
Per fault (the alerts published from its start to the next fault's), printed:
published, lost (acknowledged, no stored result), run twice (events the target
saw more than once), stall (the longest wait from an alert's acknowledgement
to its first result) and copies (results seen on the subject beyond the
first: see docs/operations.md, "Reading results live").

Not a CI test (minutes long); CI runs the hung-daemon case as
tests/e2e/test_hung_daemon.py. Run: `python bench/faults.py` (`--quick`:
short stops and `--ack-wait 5s`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support, as tests do

from tests.support.cluster import Cluster
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget

RULE = """
rules:
  - name: faults
    on: [faults.alerts.>]
    actions:
      - name: call
        http: {{method: POST, url: "{url}/e/{{{{ event_id }}}}"}}
        timeout: 5s
"""


@dataclass
class Flow:
    """The alerts published and the results seen, with their times."""

    nc: Client
    every: float
    acked: dict[str, float] = field(default_factory=dict)  # event id -> acknowledged at
    first_result: dict[str, float] = field(default_factory=dict)
    seen: Counter[str] = field(default_factory=Counter)  # results per event on the subject
    running: bool = True

    async def on_result(self, msg: Msg) -> None:
        event_id = str(json.loads(msg.data)["event_id"])
        self.seen[event_id] += 1
        self.first_result.setdefault(event_id, time.monotonic())

    async def publish(self) -> None:
        js = self.nc.jetstream()
        for i in itertools.count():
            if not self.running:
                return
            event_id = f"ev-{i:06d}"
            data = json.dumps({"n": i, "fingerprint": event_id}).encode()
            while self.running:  # the same id until acknowledged: the stream drops copies
                try:
                    await js.publish(
                        "faults.alerts.a", data, headers={"Nats-Msg-Id": event_id}, timeout=2
                    )
                    self.acked[event_id] = time.monotonic()
                    break
                except (NatsError, TimeoutError):
                    await asyncio.sleep(0.1)
            await asyncio.sleep(self.every)


@dataclass
class Phase:
    name: str
    started: float
    ended: float = 0.0


async def stored_ids(nc: Client) -> set[str]:
    """Event ids with a result in REMEDIATOR_RESULTS (read through an ordered consumer)."""
    found: set[str] = set()
    sub = await nc.jetstream().subscribe("remediator.results.faults", ordered_consumer=True)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=3)
            except (TimeoutError, NatsError):
                return found
            found.add(str(json.loads(msg.data)["event_id"]))
    finally:
        await sub.unsubscribe()


def figures(phase: Phase, flow: Flow, stored: set[str], calls: Counter[str]) -> list[object]:
    ids = [e for e, at in flow.acked.items() if phase.started <= at < phase.ended]
    lost = [e for e in ids if e not in stored]
    twice = [e for e in ids if calls[e] > 1]
    waits = [flow.first_result[e] - flow.acked[e] for e in ids if e in flow.first_result]
    copies = sum(max(0, flow.seen[e] - 1) for e in ids)
    return [phase.name, len(ids), len(lost), len(twice), f"{max(waits, default=0):.1f}", copies]


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="remediator-faults-"))
    (root / "rules").mkdir()
    cluster = Cluster(root / "cluster").start()
    target = await HttpTarget().start()
    (root / "rules" / "r.yaml").write_text(RULE.format(url=target.url))
    n1, n2, n3 = (cluster.nodes[n] for n in ("n1", "n2", "n3"))
    common = ["--rules", "rules", "--replicas", "3", "--ack-wait", args.ack_wait]
    common += ["--stream", "FAULTS"]  # the default --max-deliver (5)
    daemons = [DaemonProcess([*common, "--nats", url], root) for url in (n1.url, n2.url)]
    nc = await nats.connect(n3.url, error_cb=_quiet)
    flow = Flow(nc, every=1 / args.rate)
    phases: list[Phase] = []
    try:
        for daemon in daemons:
            daemon.start(timeout=90)
        await nc.subscribe("remediator.results.faults", cb=flow.on_result)
        publisher = asyncio.create_task(flow.publish())
        phases.append(Phase("warm-up", time.monotonic()))
        await asyncio.sleep(args.settle)
        a = daemons[0]
        assert a.process is not None and n1.process is not None
        for name, process, seconds in (
            (f"SIGSTOP daemon A {args.daemon_stop:g} s", a.process, args.daemon_stop),
            (f"SIGSTOP n1 (A's server) {args.server_stop:g} s", n1.process, args.server_stop),
        ):
            phases[-1].ended = time.monotonic()
            phases.append(Phase(name, time.monotonic()))
            print(f"{name} ...", file=sys.stderr)
            process.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(seconds)  # the fault's length: the point of the bench
            finally:
                process.send_signal(signal.SIGCONT)
            await asyncio.sleep(args.settle)
        flow.running = False
        await publisher
        phases[-1].ended = time.monotonic()
        stored = await _all_stored(nc, flow, args.final_wait)
    finally:
        flow.running = False
        for daemon in daemons:
            daemon.stop()
        await nc.close()
        await target.stop()
        cluster.stop()
    calls = Counter(r.path.rpartition("/")[2] for r in target.received)
    rows = [figures(p, flow, stored, calls) for p in phases]
    _print(rows, args)


async def _all_stored(nc: Client, flow: Flow, within: float) -> set[str]:
    deadline = time.monotonic() + within
    while True:
        stored = await stored_ids(nc)
        if set(flow.acked) <= stored or time.monotonic() > deadline:
            return stored
        await asyncio.sleep(2)


def _print(rows: list[list[object]], args: argparse.Namespace) -> None:
    columns = ["fault", "published", "lost", "run twice", "stall s", "copies"]
    print(f"\nack_wait {args.ack_wait}, {args.rate:g} alerts/s, settle {args.settle:g} s")
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    if args.json:
        print(
            json.dumps(
                {"bench": "faults", "rows": [dict(zip(columns, r, strict=True)) for r in rows]}
            )
        )


async def _quiet(exc: Exception) -> None:
    """A frozen server: the client reconnects; nothing to report."""


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--quick", action="store_true", help="short stops, --ack-wait 5s")
    cli.add_argument("--json", action="store_true", help="also print the rows as JSON")
    cli.add_argument("--rate", type=float, default=20.0, help="alerts a second (20)")
    cli.add_argument("--daemon-stop", type=float, default=45.0, help="seconds (45)")
    cli.add_argument("--server-stop", type=float, default=90.0, help="seconds (90)")
    cli.add_argument("--settle", type=float, default=40.0, help="seconds after each fault (40)")
    cli.add_argument("--ack-wait", default="30s", help="the daemons' --ack-wait (30s)")
    cli.add_argument("--final-wait", type=float, default=120.0, help="seconds for last results")
    args = cli.parse_args()
    if args.quick:
        args.daemon_stop, args.server_stop, args.settle, args.ack_wait = 12.0, 20.0, 15.0, "5s"
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
