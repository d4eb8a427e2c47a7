"""Verification: did the fix work? By a resolving event, or by asking Prometheus.

After a rule's steps succeed, `expect` writes one record to the shared
verifications store, keyed by rule and verify key. Every replica looks at the
records; the store's compare-and-set lets exactly one act on each:

- by event: a resolving event for the same key deletes the record (`resolve`)
  and `remediator.verified.<rule>` is published;
- by query (`verify: {query, below | above, within, every}`): a replica claims the
  next question by moving the record's `next_at` one `every` on, asks, and when the
  answer holds deletes the record and publishes `remediator.verified.<rule>`
  (`check_queries`). A replica killed mid-question leaves the record in the store,
  and whoever claims it next asks again;
- past its deadline (`expire`), either kind is deleted and escalated with
  `reason: not_resolved`, and the rule's throttle circuit opens as for any failed
  verification.

A record ends once: the delete that ends it names the revision it read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from remediator.engine.limits import cap_text
from remediator.engine.state import Conflict, Entry, StateStore, write
from remediator.errors import RemediatorError
from remediator.model import Event, Rule

log = logging.getLogger(__name__)

ESCALATIONS = "remediator.escalations"
KEY_CAP = 1024  # bytes of a throttle or verify key kept in records and escalations
QUERY_TIMEOUT = 30.0  # longest one verification question may take


class Querier(Protocol):
    """Asks Prometheus one instant query: the first sample's value, None when empty."""

    async def value(self, query: str) -> float | None: ...


Publish = Callable[[str, Mapping[str, object], str], Awaitable[None]]
OpenCircuit = Callable[[str, float, float], Awaitable[None]]  # throttle key, now, hold


@dataclass(slots=True, kw_only=True)
class Verifier:
    store: StateStore
    publish: Publish
    open_circuit: OpenCircuit
    clock: Callable[[], float]
    querier: Querier | None = None  # None (replay): a query cannot be asked; not recorded

    async def expect(self, rule: Rule, event: Event, record: dict[str, object]) -> None:
        """Record what must hold by `record['deadline']`; the latest run's record wins."""
        verify = rule.verify
        assert verify is not None
        if verify.query is not None and self.querier is None:
            return  # offline: nobody can ask, and guessing would escalate every run
        name = verify_name(rule.name, str(record["key"]))
        while True:
            entry = await self.store.get(name)
            try:
                await write(self.store, name, json.dumps(record).encode(), entry)
                return
            except Conflict:
                continue

    async def resolve(self, rule: Rule, event: Event, key: str) -> bool:
        """A resolving event arrived: the one replica that deletes the record reports it."""
        name = verify_name(rule.name, key)
        entry = await self.store.get(name)
        if entry is None or "query" in json.loads(entry.value):
            return False  # a fix verified by query is done when the query says so
        if not await self._end(name, entry.revision):
            return False
        record = json.loads(entry.value)
        body = {**record, "resolved_by": event.event_id, "resolved_at": self.clock()}
        await self._verified(record, body)
        return True

    async def check_queries(self) -> list[str]:
        """Ask every query whose turn has come (one replica each); returns the rules whose
        query held (verified)."""
        if self.querier is None:
            return []
        turns = []
        for name in await self.store.keys():
            entry = await self.store.get(name)
            record = None if entry is None else json.loads(entry.value)
            if entry is None or not isinstance(record, dict) or "query" not in record:
                continue
            now = self.clock()
            if record["next_at"] > now or record["deadline"] <= now:
                continue  # not its turn yet; or `expire`'s to end
            claimed = await self._claim(name, entry, record, now)
            if claimed is not None:
                turns.append(self._ask(name, record, claimed, self.querier))
        # Asked together: one slow query must not hold back the others' turns.
        held = await asyncio.gather(*turns)
        return [str(record["rule"]) for record in held if record is not None]

    async def _claim(
        self, name: str, entry: Entry, record: dict[str, object], now: float
    ) -> int | None:
        """Take this turn: move `next_at` on by one `every`; the revision, or None when
        another replica took it first."""
        record["next_at"] = now + float(str(record["every"]))
        try:
            return await self.store.update(name, json.dumps(record).encode(), entry.revision)
        except Conflict:
            return None

    async def _ask(
        self, name: str, record: dict[str, object], revision: int, querier: Querier
    ) -> dict[str, object] | None:
        """The record when its query held and this replica ended it; else None."""
        query = str(record["query"])
        try:
            async with asyncio.timeout(min(QUERY_TIMEOUT, float(str(record["every"])))):
                value = await querier.value(query)
        except (RemediatorError, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            log.warning("rule %s: verification query failed: %s", record["rule"], why)
            return None  # asked again next turn; the deadline bounds it
        if not holds(record, value):
            log.info("rule %s: verification query gave %s, not yet", record["rule"], value)
            return None
        if not await self._end(name, revision):
            return None
        await self._verified(record, {**record, "value": value, "resolved_at": self.clock()})
        return record

    async def expire(self, rules: Mapping[str, Rule]) -> list[dict[str, object]]:
        """Escalate every verification past its deadline; returns the records this replica
        ended (exactly one replica ends each: its ladder climbs once)."""
        failed: list[dict[str, object]] = []
        now = self.clock()
        for name in await self.store.keys():
            entry = await self.store.get(name)
            if entry is None:
                continue
            record = json.loads(entry.value)
            if record["deadline"] > now or not await self._end(name, entry.revision):
                continue  # not yet; or another replica ended it
            await self._not_resolved(record, rules.get(record["rule"]), now)
            failed.append(record)
        return failed

    async def _end(self, name: str, revision: int) -> bool:
        try:
            await self.store.delete(name, revision)
        except Conflict:
            return False
        return True

    async def _verified(self, record: Mapping[str, object], body: Mapping[str, object]) -> None:
        msg_id = f"verified:{record['rule']}:{record['key']}:{record['event_id']}"
        await self.publish(f"remediator.verified.{record['rule']}", body, msg_id)

    async def _not_resolved(self, record: dict[str, object], rule: Rule | None, now: float) -> None:
        throttle_key = record.get("throttle")
        if isinstance(throttle_key, str) and rule is not None and rule.throttle is not None:
            hold = rule.throttle.window or rule.throttle.cooldown or 3600.0
            await self.open_circuit(throttle_key, now, hold)
        if "query" in record:
            detail = f"the query did not hold ({record['bound']}) in time: {record['query']}"
        else:
            detail = "no resolving event arrived in time"
        record["detail"] = detail  # the ladder's next rung says why
        body = {
            "reason": "not_resolved",
            "rule": record["rule"],
            "key": record["key"],
            "event_id": record["event_id"],
            "trace_id": record["trace_id"],
            "detail": detail,
        }
        msg_id = f"not_resolved:{record['rule']}:{record['event_id']}"
        await self.publish(str(record["escalate"]), body, msg_id)


def query_fields(rule: Rule, context: Mapping[str, object], now: float) -> dict[str, object]:
    """A query verification's part of the record: the rendered query and its bound.
    TemplateError when the query does not render for this event."""
    assert rule.verify is not None and rule.verify.query is not None
    asked = rule.verify.query
    return {
        "query": str(asked.query.render(context)),
        "below": asked.below,
        "above": asked.above,
        "bound": asked.bound,
        "every": asked.every,
        "next_at": now + asked.every,  # a fix needs time to show: the first look waits
    }


def ladder_fields(target: str, event: Event) -> dict[str, object]:
    """What a ladder needs to fire `target` with the original event once this fails."""
    return {
        "escalate_rule": target,
        "payload": dict(event.payload),
        "headers": dict(event.headers),
    }


def holds(record: Mapping[str, object], value: float | None) -> bool:
    """Whether the answer says the fix worked (an empty answer or NaN never does)."""
    if value is None or value != value:
        return False
    below, above = record.get("below"), record.get("above")
    if isinstance(below, int | float):
        return value < below
    return isinstance(above, int | float) and value > above


def verify_name(rule: str, key: str) -> str:
    return f"{rule}.{hashlib.blake2b(key.encode(), digest_size=12).hexdigest()}"


def bounded_key(key: str) -> str:
    return cap_text(key, KEY_CAP)  # rendered from the event: any size
