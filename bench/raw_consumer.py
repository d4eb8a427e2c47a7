"""The baselines' consumer: plain nats-py on a durable push consumer with a deliver group.

Started by e2e_idle.py, e2e_publish.py and latency.py in its own process (as
the daemon is): subscribes to the consumer's deliver subject in its queue
group, the way `remediator.transport` does, takes what has arrived as a batch
(a callback subscription feeding a queue, drained without awaiting: the acks
of a batch share one socket write) and acks each message with `msg.ack()`.
Prints `ready` once subscribed; runs until SIGTERM.

- `--expect N`: also records, per message, its payload's `seq` and
  `time.time()` minus its `sent`; after N messages prints them as one JSON
  line and exits.
- `--work publish`: per message, in a task of its own (at most
  `--concurrency` at work at once, as in the daemon), the JetStream I/O the
  daemon does for a fired rule with a publish step, and nothing else: a KV
  get of the completion key, a JetStream publish of the step's event, a KV
  create of the completion key, a JetStream publish of the result, then the
  ack. The floor of that work in nats-py on this machine.
- `--work pipelined`: the same JetStream writes the daemon makes for a fired
  rule with a publish step on a first delivery, pipelined as nats-py allows:
  per message, in a task of its own (at most `--concurrency` at once), the
  step's event through `publish_async` (awaited: the result needs it), then
  the result and the completion record (a KV put is a JetStream publish to
  `$KV.<bucket>.<key>`) through `publish_async` together, then the ack. No
  request/reply awaited one after another.
- `--work ordered`: the round trips the daemon must make for such a rule, each
  through `publish_async` and awaited in the order its guarantees need: the
  step's event; the completion record before the result (a stored result must
  mean the completion is on record, or a redelivery would run the step again);
  the result; then the ack, confirmed by the server (`ack_sync`: an ack lost in
  a consumer leader failover would cost a full ack_wait). The daemon's one
  extra write, the store's reachability probe before any step, is shared by
  the events waiting when it starts (a few per hundred events under load), so
  it is left out here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time

import nats
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats", required=True)
    parser.add_argument("--deliver", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--work", choices=["ack", "publish", "pipelined", "ordered"], default="ack")
    parser.add_argument("--concurrency", type=int, default=64, help="as the daemon's")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    nc = await nats.connect(args.nats)
    js = nc.jetstream()
    kv = None
    if args.work != "ack":
        kv = await js.create_key_value(KeyValueConfig(bucket="BENCH_RAW_STATE", history=1))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # The best nats-py offers: a callback subscription hands every buffered message over in
    # one go; the loop below takes them as a batch, so its acks share one socket write.
    arrived: asyncio.Queue[Msg] = asyncio.Queue()

    async def enqueue(msg: Msg) -> None:
        arrived.put_nowait(msg)

    await nc.subscribe(args.deliver, queue=args.group, cb=enqueue)
    await nc.flush()
    print("ready", flush=True)
    latencies: list[tuple[int, float]] = []
    tasks: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(args.concurrency)

    async def work(msg: Msg) -> None:
        assert kv is not None
        key = f"done.{msg.metadata.sequence.stream}"
        async with slots:
            with contextlib.suppress(KeyNotFoundError):
                await kv.get(key)
            await js.publish("remediator.notifications.raw", msg.data, timeout=5)
            await kv.create(key, b'{"status": "succeeded"}')
            await js.publish("remediator.results.raw", msg.data, timeout=5)
            await msg.ack()

    async def pipelined(msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        async with slots:
            step = await js.publish_async("remediator.notifications.raw", msg.data)
            await step
            result = await js.publish_async(
                "remediator.results.raw", msg.data, headers={"Nats-Msg-Id": f"raw:{seq}"}
            )
            record = await js.publish_async(f"$KV.BENCH_RAW_STATE.done.{seq}", msg.data)
            await asyncio.gather(result, record)
            await msg.ack()

    async def ordered(msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        async with slots:
            await (await js.publish_async("remediator.notifications.raw", msg.data))
            await (await js.publish_async(f"$KV.BENCH_RAW_STATE.done.{seq}", msg.data))
            headers = {"Nats-Msg-Id": f"raw:{seq}"}
            await (await js.publish_async("remediator.results.raw", msg.data, headers=headers))
            await msg.ack_sync(timeout=5)

    handlers = {"publish": work, "pipelined": pipelined, "ordered": ordered}

    async def consume() -> None:
        while True:
            batch = [await arrived.get()]
            while not arrived.empty():
                batch.append(arrived.get_nowait())
            for msg in batch:
                if args.work != "ack":
                    task = asyncio.create_task(handlers[args.work](msg))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    continue
                if args.expect:
                    payload = json.loads(msg.data)
                    latencies.append((payload["seq"], time.time() - payload["sent"]))
                await msg.ack()
            if args.expect and len(latencies) >= args.expect:
                break
        stop.set()

    task = asyncio.create_task(consume())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.timeout)
    task.cancel()
    if args.expect:
        print(json.dumps({"latencies": latencies}), flush=True)
    await nc.drain()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
