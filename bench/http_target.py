"""The latency bench's HTTP target, in its own process (as a real webhook receiver is).

An aiohttp server on 127.0.0.1 (a port the OS picks), printing `ready PORT`
once it listens. For every `POST /hook` with a JSON body holding `seq` and
`sent` it takes `time.time()` as the request arrives, records (seq, arrival -
sent) and answers 200. After `--expect N` requests (or `--timeout` seconds,
or SIGTERM) it prints them as one JSON line and exits. `--delay S`: answer
each request S seconds after it arrived (a slow remediation, for storm.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time

from aiohttp import web


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    seen: list[tuple[int, float]] = []
    done = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.json()
        seen.append((int(body["seq"]), arrived - float(body["sent"])))
        if args.delay:
            await asyncio.sleep(args.delay)
        if len(seen) >= args.expect:
            done.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
    print(f"ready {port}", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), args.timeout)
    print(json.dumps({"latencies": seen}), flush=True)
    await runner.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
