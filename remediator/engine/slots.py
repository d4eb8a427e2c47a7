"""Concurrency per group: at most `max` runs of a rule in flight at once per group,
fleet-wide (`concurrency: {key, max, wait}`, SPEC §17).

Each group is one key of the shared state store, `slots.<rule>.<digest>`, holding the
tokens of the runs in flight (`held`) and of the runs waiting (`queue`, in arrival
order), each with a lease. Every change is a compare-and-set, so N replicas count as
one. A run renews its lease while it runs and waiters renew theirs while they poll, so
a replica that dies (SIGKILL) frees its slots and its place in line within one lease.
A waiter is admitted only when fewer runs are ahead of it in the queue than there are
free slots: waiting runs start in arrival order. One that waits past `wait` leaves the
queue and its run reports `throttled` with the reason. While it waits, the pipeline
keeps its message in progress (the message is in flight), so it is not redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from remediator.engine.guards import Guards
from remediator.engine.limits import cap_text
from remediator.engine.state import Conflict, StateStore, write
from remediator.errors import TransportError
from remediator.metrics import Metrics
from remediator.model import Result, Rule

log = logging.getLogger(__name__)

LEASE = 15.0  # a holder or waiter that stops renewing is forgotten after this long
POLL = 0.25  # how often a waiter looks for a free slot


@dataclass(frozen=True, slots=True)
class Ticket:
    """A slot held: renew it while the run lasts, release it when the run ends."""

    rule: str
    key: str
    token: str


@dataclass(slots=True, kw_only=True)
class Slots:
    store: StateStore
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    metrics: Metrics | None = None
    lease: float = LEASE
    poll: float = POLL
    _ids: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)

    @classmethod
    def beside(cls, guards: Guards, metrics: Metrics | None) -> Slots:
        """In the guards' store, on their clock."""
        return cls(store=guards.store, clock=guards.clock, sleep=guards.sleep, metrics=metrics)

    async def acquire(self, rule: str, group: str, most: int, wait: float) -> Ticket | str:
        """A slot of `group`, after waiting in line at most `wait` seconds; else why not."""
        ticket = Ticket(rule, f"slots.{rule}.{_digest(group)}", self._ids())
        deadline = self.clock() + wait
        self._gauge("waiting", rule, 1)
        try:
            while not await self._step(ticket, most, leave=False):
                if self.clock() >= deadline:
                    await self._step(ticket, most, leave=True)
                    shown = cap_text(group, 256)
                    return (
                        f"concurrency: {most} run(s) of group {shown!r} in flight; waited {wait:g}s"
                    )
                await self.sleep(self.poll)
        finally:
            self._gauge("waiting", rule, -1)
        self._gauge("in_use", rule, 1)
        return ticket

    async def keep(self, ticket: Ticket) -> None:
        """Renew the lease until cancelled (the run's end); a failed renewal is tried
        again next turn (three turns per lease)."""
        while True:
            await self.sleep(self.lease / 3)
            with contextlib.suppress(TransportError):
                await self._change(
                    ticket, lambda held, queue, now: held.update({ticket.token: now + self.lease})
                )

    async def release(self, ticket: Ticket) -> None:
        """Give the slot back. When the store cannot be reached the run still counts as
        done (its steps ran): the lease frees the slot instead."""
        self._gauge("in_use", ticket.rule, -1)
        try:
            await self._change(ticket, lambda held, queue, now: held.pop(ticket.token, None))
        except TransportError as exc:
            log.warning("rule %s: slot not released (its lease frees it): %s", ticket.rule, exc)

    async def _step(self, ticket: Ticket, most: int, *, leave: bool) -> bool:
        """Join or stay in line (renewing the place), and take a slot when it is our turn;
        `leave`: give up the place. Whether a slot is now held."""
        taken = False

        def move(held: dict[str, float], queue: dict[str, float], now: float) -> None:
            nonlocal taken
            if leave:
                queue.pop(ticket.token, None)
                return
            queue[ticket.token] = now + self.lease  # a dict keeps insertion order: the line
            ahead = list(queue).index(ticket.token)
            taken = ahead < most - len(held)
            if taken:
                del queue[ticket.token]
                held[ticket.token] = now + self.lease

        await self._change(ticket, move)
        return taken

    async def _change(
        self, ticket: Ticket, move: Callable[[dict[str, float], dict[str, float], float], object]
    ) -> None:
        """Read, drop lapsed leases, apply `move`, write back by compare-and-set."""
        while True:
            entry = await self.store.get(ticket.key)
            now = self.clock()
            body: Mapping[str, Mapping[str, float]] = (
                {} if entry is None else json.loads(entry.value)
            )
            held = {t: u for t, u in body.get("held", {}).items() if u > now}
            queue = {t: u for t, u in body.get("queue", {}).items() if u > now}
            move(held, queue, now)
            value = json.dumps({"held": held, "queue": queue}).encode()
            try:
                await write(self.store, ticket.key, value, entry)
                return
            except Conflict:
                continue

    def _gauge(self, which: str, rule: str, change: int) -> None:
        if self.metrics is not None:
            gauge = self.metrics.slots_in_use if which == "in_use" else self.metrics.slots_waiting
            gauge.labels(rule).inc(change)


async def slotted(
    slots: Slots,
    rule: Rule,
    context: Mapping[str, object],
    run: Callable[[], Awaitable[Result]],
    refuse: Callable[[str], Result],
) -> Result:
    """`run()` inside a slot of the rule's group (rendered from `context`: TemplateError),
    or `refuse(reason)` when none came free in time."""
    limit = rule.concurrency
    assert limit is not None
    group = "" if limit.key is None else str(limit.key.render(context))
    got = await slots.acquire(rule.name, group, limit.max, limit.wait)
    if isinstance(got, str):
        return refuse(got)
    keeper = asyncio.create_task(slots.keep(got))
    try:
        return await run()
    finally:
        keeper.cancel()
        await slots.release(got)


def _digest(group: str) -> str:
    return hashlib.blake2b(group.encode(), digest_size=12).hexdigest()
