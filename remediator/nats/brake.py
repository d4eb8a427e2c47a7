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

from remediator.engine.control import ALL, AlreadyDecided, pending
from remediator.engine.manual import RunRequest
from remediator.engine.scopes import (
    ScopeError,
    check_rule_names,
    did_you_mean,
    pauses_for,
    resume_targets,
)
from remediator.errors import ConfigError, TransportError
from remediator.nats.acts import Acts
from remediator.nats.audit import AuditLog
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


NO_NAMES = (
    "cannot check the rule names: no daemon has reported its rules in the last minute; "
    "pass --rules PATH (the daemon's rule files) to check them against those"
)


async def _with_acts(settings: Settings, by: str | None, work: Callable[[Acts], Awaitable[T]]) -> T:
    """As `_with_control`, acting as `by` (else the login name), every act audited. A try
    that timed out may have written its audit record: a retry writes it again, which
    over-reports an attempt rather than hiding one."""

    async def once(nc: Client) -> T:
        js = nc.jetstream()
        control = await Control.open(js, settings.replicas)
        return await work(Acts(control, AuditLog(js, settings.replicas), who(by), "cli"))

    return await _patiently(settings, once)


async def pause(
    settings: Settings,
    rules: Sequence[str],
    every: bool,
    key: str | None,
    seconds: float,
    reason: str,
    by: str | None,
    known: Sequence[str] | None = None,
) -> str:
    """Pause; a rule name that neither `known` (the `--rules` files) nor, without them,
    the running daemons know is refused: a typo would pause nothing and say "paused"."""
    try:
        made = pauses_for(
            rules, every, key, seconds=seconds, reason=reason, by=who(by), now=time.time()
        )
    except ScopeError as exc:
        raise ConfigError(str(exc)) from None

    async def work(acts: Acts) -> str:
        if not every:
            names = set(known) if known is not None else await acts.control.fleet_rules()
            if names is None:
                raise ConfigError(NO_NAMES)
            try:
                check_rule_names(rules, names)
            except ScopeError as exc:
                raise ConfigError(str(exc)) from None
        return "\n".join(p.describe() for p in await acts.pause(made))

    return await _with_acts(settings, by, work)


async def resume(
    settings: Settings,
    rules: Sequence[str],
    every: bool,
    key: str | None,
    by: str | None = None,
    reason: str = "",
) -> list[tuple[bool, str]]:
    """(was paused, what happened in words) per target. A name is not checked against the
    loaded rules: the pause of a rule removed since can still be lifted."""
    try:
        targets = resume_targets(rules, every, key)
    except ScopeError as exc:
        raise ConfigError(str(exc)) from None

    async def work(acts: Acts) -> list[tuple[bool, str]]:
        lines = []
        for target, resumed in await acts.resume(targets, reason):
            if resumed:
                lines.append((True, f"resumed {target.what}"))
                continue
            paused = {p.scope for p in await acts.control.pauses()} - {ALL}
            hint = did_you_mean(target.scope, paused)
            lines.append((False, f"not paused: {target.what}{hint}"))
        return lines

    return await _with_acts(settings, by, work)


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

    async def work(acts: Acts) -> tuple[bool, str]:
        try:
            decided = await acts.decide(request_id, decision, comment)
        except AlreadyDecided as exc:
            return False, str(exc)
        if decided.state == "expired":
            return False, f"approval {request_id} expired before the decision"
        return (
            True,
            f"approval {decided.id} ({decided.rule}) {decided.state} by {decided.decided_by}",
        )

    return await _with_acts(settings, by, work)


async def approvals(settings: Settings, as_json: bool) -> str:
    async def work(control: Control) -> str:
        rows = [r.summary() for r in pending(await control.requests())]
        return json.dumps(rows, indent=2, default=str) if as_json else approvals_text(rows)

    return await _with_control(settings, work)


async def trigger(settings: Settings, wait: float, by: str | None, **given: object) -> RunRequest:
    """`remediator trigger`: a manual run, audited, answered by one daemon (or NoAnswer)."""

    async def work(acts: Acts) -> RunRequest:
        rule = str(given.pop("rule"))
        request = RunRequest.new(rule, acts.by, time.time(), wait, source="cli", **given)
        return await acts.trigger(request, wait)

    return await _with_acts(settings, by, work)
