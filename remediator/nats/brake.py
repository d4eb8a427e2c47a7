"""The brake on the command line: `pause`, `resume`, `status`, `approve`, `deny`, `approvals`.

Each command connects to NATS (`--nats`, `REMEDIATOR_NATS_URL`, else the
embedded server's `nats://127.0.0.1:4222`), does one thing to the control
bucket, prints what it did, and disconnects. `cli` parses; this module works.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from remediator.engine.control import (
    ALL,
    AlreadyDecided,
    ScopeError,
    check_rule_names,
    did_you_mean,
    pauses_for,
    pending,
    resume_targets,
)
from remediator.errors import ConfigError
from remediator.nats.connection import connect
from remediator.nats.control import Control
from remediator.nats.kvstore import STATE_BUCKET, STATE_TTL, KVStore
from remediator.nats.status import approvals_text, status_report, status_text
from remediator.rules.windows import iso
from remediator.settings import Settings

DEFAULT_URL = "nats://127.0.0.1:4222"
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
    nc = await connect(settings, settings.nats_url or DEFAULT_URL)
    try:
        return await work(await Control.open(nc.jetstream()))
    finally:
        await nc.close()


NO_NAMES = (
    "cannot check the rule names: no daemon has reported its rules in the last minute; "
    "pass --rules PATH (the daemon's rule files) to check them against those"
)


async def pause(
    settings: Settings,
    rules: Sequence[str],
    every: bool,
    key: str | None,
    seconds: float,
    reason: str,
    by: str | None,
    known: Sequence[str] | None = None,
    start: float | None = None,
) -> str:
    """Pause; a rule name that neither `known` (the `--rules` files) nor, without them,
    the running daemons know is refused: a typo would pause nothing and say "paused"."""
    try:
        made = pauses_for(
            rules, every, key, seconds=seconds, reason=reason, by=who(by), now=start or time.time()
        )
    except ScopeError as exc:
        raise ConfigError(str(exc)) from None

    async def work(control: Control) -> str:
        if not every:
            names = set(known) if known is not None else await control.fleet_rules()
            if names is None:
                raise ConfigError(NO_NAMES)
            try:
                check_rule_names(rules, names)
            except ScopeError as exc:
                raise ConfigError(str(exc)) from None
        for one in made:
            await control.pause(one)
        ahead = (
            f"scheduled from {iso(dt.datetime.fromtimestamp(start, dt.UTC))}: "
            if start and start > time.time()
            else ""
        )
        return "\n".join(ahead + p.describe() for p in made)

    return await _with_control(settings, work)


async def resume(
    settings: Settings, rules: Sequence[str], every: bool, key: str | None
) -> list[tuple[bool, str]]:
    """(was paused, what happened in words) per target. A name is not checked against the
    loaded rules: the pause of a rule removed since can still be lifted."""
    try:
        targets = resume_targets(rules, every, key)
    except ScopeError as exc:
        raise ConfigError(str(exc)) from None

    async def work(control: Control) -> list[tuple[bool, str]]:
        lines = []
        for target in targets:
            if await control.resume(target.name):
                lines.append((True, f"resumed {target.what}"))
                continue
            paused = {p.scope for p in await control.pauses()} - {ALL}
            hint = did_you_mean(target.scope, paused)
            lines.append((False, f"not paused: {target.what}{hint}"))
        return lines

    return await _with_control(settings, work)


async def status(
    settings: Settings, as_json: bool, windows: list[dict[str, object]] | None = None
) -> str:
    """`windows`: when each rule may act next (from `--rules` files), when given."""
    nc = await connect(settings, settings.nats_url or DEFAULT_URL)
    try:
        control = await Control.open(nc.jetstream())
        state = await KVStore.open(nc.jetstream(), STATE_BUCKET, ttl=STATE_TTL)
        report = await status_report(control, state, settings.max_actions)
        if windows is not None:
            report["windows"] = windows
    finally:
        await nc.close()
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
