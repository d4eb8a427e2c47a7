"""The brake on the command line: `pause`, `resume`, `status`, `approve`, `deny`, `approvals`.

Each command connects to NATS (`--nats`, `REMEDIATOR_NATS_URL`, else the
embedded server's `nats://127.0.0.1:4222`), does one thing to the control
bucket, prints what it did, and disconnects. `cli` parses; this module works.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from nats.aio.client import Client

from remediator.engine.control import AlreadyDecided, ScopeError, pause_names, pauses_for, pending
from remediator.errors import ConfigError, TransportError
from remediator.nats.connection import connect
from remediator.nats.control import Control
from remediator.nats.kvstore import STATE_BUCKET, STATE_TTL, KVStore
from remediator.nats.patience import patiently
from remediator.nats.status import approvals_text, status_report, status_text
from remediator.settings import Settings

DEFAULT_URL = "nats://127.0.0.1:4222"
PATIENCE = 30.0  # seconds a command keeps trying through a leader election
T = TypeVar("T")


def who(by: str | None) -> str:
    """`--by`, else the login name: every pause and decision records someone."""
    if by:
        return by
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


async def _with_control(settings: Settings, work: Callable[[Control], Awaitable[T]]) -> T:
    async def once(nc: Client) -> T:
        return await work(await Control.open(nc.jetstream(), settings.replicas))

    return await _patiently(settings, once)


async def _patiently(settings: Settings, work: Callable[[Client], Awaitable[T]]) -> T:
    """Do `work` on one connection, again while NATS times out, for up to PATIENCE seconds:
    a node that just died leaves the cluster electing leaders for a few seconds, and the
    brake must work exactly then. Every step of the brake is a write of a whole value or
    a read, so doing it again is harmless."""
    nc = await connect(settings, settings.nats_url or DEFAULT_URL)

    def say(exc: TransportError, pause: float) -> None:
        print(f"remediator: {exc}; trying again in {pause:g}s", file=sys.stderr)

    try:
        return await patiently(lambda: work(nc), PATIENCE, say)
    finally:
        await nc.close()


async def pause(
    settings: Settings,
    rules: Sequence[str],
    every: bool,
    key: str | None,
    seconds: float,
    reason: str,
    by: str | None,
) -> str:
    try:
        made = pauses_for(
            rules, every, key, seconds=seconds, reason=reason, by=who(by), now=time.time()
        )
    except ScopeError as exc:
        raise ConfigError(str(exc)) from None

    async def work(control: Control) -> str:
        for one in made:
            await control.pause(one)
        return "\n".join(p.describe() for p in made)

    return await _with_control(settings, work)


async def resume(settings: Settings, rules: Sequence[str], every: bool, key: str | None) -> str:
    try:
        names = pause_names(rules, every, key)
    except ScopeError as exc:
        raise ConfigError(str(exc)) from None

    async def work(control: Control) -> str:
        lines = []
        for name in names:
            done = await control.resume(name)
            lines.append(f"resumed {name}" if done else f"not paused: {name}")
        return "\n".join(lines)

    return await _with_control(settings, work)


async def status(settings: Settings, as_json: bool) -> str:
    async def once(nc: Client) -> dict[str, object]:
        js, replicas = nc.jetstream(), settings.replicas
        control = await Control.open(js, replicas)
        state = await KVStore.open(js, STATE_BUCKET, ttl=STATE_TTL, replicas=replicas)
        return await status_report(control, state, settings.max_actions)

    report = await _patiently(settings, once)
    return json.dumps(report, indent=2, default=str) if as_json else status_text(report)


async def decide(
    settings: Settings, request_id: str, decision: str, by: str | None, comment: str
) -> tuple[bool, str]:
    """(decided, message): False with "already decided by ..." when someone was first."""

    async def work(control: Control) -> tuple[bool, str]:
        try:
            decided = await control.decide(request_id, decision, who(by), comment)
        except AlreadyDecided as exc:
            return False, str(exc)
        if decided.state == "expired":
            return False, f"approval {request_id} expired before the decision"
        return (
            True,
            f"approval {decided.id} ({decided.rule}) {decided.state} by {decided.decided_by}",
        )

    return await _with_control(settings, work)


async def approvals(settings: Settings, as_json: bool) -> str:
    async def work(control: Control) -> str:
        rows = [r.summary() for r in pending(await control.requests())]
        return json.dumps(rows, indent=2, default=str) if as_json else approvals_text(rows)

    return await _with_control(settings, work)
