"""A hung daemon is not a dead one: what it held runs nowhere twice (SPEC §5, §13).

Two daemons share one consumer on a real three-node cluster. One is frozen
(SIGSTOP) with nothing in flight while alerts arrive: the server keeps
pushing its share into its socket, redelivers each after `ack_wait`, and the
other daemon finishes them all. When the frozen one resumes, those old copies
reach it as *first* deliveries (`num_delivered == 1`); they are stale, and
must find the completion records instead of calling the target again. The
HTTP target counts the calls per event.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError

from tests.support.cluster import CALL_PER_EVENT, Cluster, connect
from tests.support.collect import stored
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget
from tests.support.poll import until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

ACK_WAIT = 2.0


async def publish(nc: Client, prefix: str, ids: list[str], every: float = 0.05) -> None:
    """Each until JetStream acknowledges it, about 20 a second."""
    for event_id in ids:

        async def acked(event_id: str = event_id) -> bool:
            try:
                await nc.jetstream().publish(
                    f"{prefix}.alerts.a",
                    json.dumps({"fingerprint": event_id}).encode(),
                    headers={"Nats-Msg-Id": event_id},
                    timeout=2,
                )
                return True
            except (NatsError, TimeoutError):
                return False

        await until(acked, 30, f"{event_id} acknowledged", every=0.1)
        await asyncio.sleep(every)  # the pace of an alert storm, not a wait for anything


async def all_stored(nc: Client, rule: str, wanted: set[str]) -> bool:
    try:
        bodies = await stored(nc, f"remediator.results.{rule}")
    except (NatsError, TimeoutError):  # a read while the cluster settles: read again
        return False
    return wanted <= {str(b["event_id"]) for b in bodies}


async def test_a_daemon_frozen_past_ack_wait_runs_nothing_the_other_finished(
    cluster: Cluster, workdir: Path, http_target: HttpTarget, unique: str
) -> None:
    rule = f"r{unique}"
    (workdir / "rules" / "r.yaml").write_text(
        CALL_PER_EVENT.format(name=rule, prefix=unique, url=http_target.url)
    )
    args = ["--rules", "rules", "--nats", cluster.urls, "--replicas", "3"]
    args += ["--stream", f"S{unique}", "--durable", f"D{unique}"]
    # Many deliveries: a message the server keeps offering the frozen daemon must reach
    # the other one in the end, not be given up on.
    args += ["--ack-wait", f"{ACK_WAIT}s", "--max-deliver", "50"]
    frozen, other = (DaemonProcess(args, workdir).start() for _ in range(2))
    nc = await connect(cluster)
    try:
        warm = [f"{unique}-w{i}" for i in range(20)]
        await publish(nc, unique, warm)
        await until(lambda: all_stored(nc, rule, set(warm)), 60, "warm-up results", every=0.5)
        frozen.signal(signal.SIGSTOP)  # nothing in flight: every earlier event is stored
        try:
            held = [f"{unique}-h{i}" for i in range(60)]
            await publish(nc, unique, held)
            await until(
                lambda: all_stored(nc, rule, set(held)), 120, "the other finished all", every=0.5
            )
        finally:
            frozen.signal(signal.SIGCONT)
        # The resumed daemon reads its socket in order: once it has answered events sent
        # after it resumed, it has seen every old copy it held.
        after = [f"{unique}-a{i}" for i in range(20)]
        await publish(nc, unique, after)
        await until(lambda: all_stored(nc, rule, set(after)), 60, "results after", every=0.5)
        await until(lambda: _answered_after(frozen), 60, "the resumed daemon at work")
    finally:
        await nc.close()
        frozen.stop()
        other.stop()
    runs = Counter(r.path.rpartition("/")[2] for r in http_target.received)
    twice = {event_id: n for event_id, n in runs.items() if n > 1}
    print(f"\n{len(held)} alerts while frozen; run twice: {len(twice)}")
    assert set(runs) == set(warm + held + after)
    assert twice == {}


def _answered_after(daemon: DaemonProcess) -> bool:
    """The daemon logged a result for an event published after it resumed."""
    return any(
        "-a" in str(r.get("event_id", "")) and str(r.get("message", "")).startswith("rule ")
        for r in daemon.log_records()
    )
