"""`remediator ARGS --nats URL` as an operator runs it, in a process of its own."""

from __future__ import annotations

import asyncio
import os
import sys


async def cli(url: str, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr). The environment's REMEDIATOR_NATS_URL is dropped, so
    `--nats URL` is the only server the command knows."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remediator",
        *args,
        "--nats",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "REMEDIATOR_NATS_URL"},
    )
    out, err = await process.communicate()
    return int(process.returncode or 0), out.decode(), err.decode()
