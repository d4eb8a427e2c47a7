"""Waiting for a condition without sleeping for a fixed time: poll it, with a deadline."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, every: float = 0.05
) -> None:
    """Return once `check()` holds; fail naming `what` when `timeout` seconds pass first."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                outcome = check()
                if await outcome if inspect.isawaitable(outcome) else outcome:
                    return
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None
