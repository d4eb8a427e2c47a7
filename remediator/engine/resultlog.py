"""The daemon's own recollection of recent results, which the console and `/api/` read.

Reads must be cheap, so a request never rereads the results stream: the daemon
hands every result it publishes to a `ResultLog`, which keeps the most recent
ones (a ring bounded by count and by bytes, newest last: a result may be up to
the server's max_payload, so 10,000 of them could be 10 GB) and per-minute
counts by rule and status for the last day. At start-up the daemon seeds it
from the stream's last 24 hours (`seed`), so a restart does not blank the
console. Results are kept as the JSON bodies that were published: already
masked, never unmasked here.

A result published twice for one `(event_id, rule)` (a redelivery answered from
its completion record) is counted once.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterable, Callable, Mapping
from dataclasses import dataclass

RING = 10_000  # results kept whole, for the list and the detail views
RING_BYTES = 64 * 1024 * 1024  # and at most this much of them, as JSON
MINUTE = 60
DAY_MINUTES = 24 * 60
HOUR_MINUTES = 60

Body = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Recorded:
    """One published result and when it finished (seconds since the epoch)."""

    at: float
    body: Body
    size: int = 0  # bytes of the body as JSON

    @classmethod
    def of(cls, body: Body, size: int | None = None) -> Recorded:
        """`size`: the body's length as JSON, when the caller has it encoded already."""
        return cls(finished_at(body), body, size or len(json.dumps(body, default=str)))

    @property
    def rule(self) -> str:
        return str(self.body.get("rule", ""))

    @property
    def status(self) -> str:
        return str(self.body.get("status", ""))

    @property
    def key(self) -> tuple[str, str, str]:
        return key_of(self.body)


def key_of(body: Body) -> tuple[str, str, str]:
    """What makes a result one: the status too, as one (event, rule) has two results when
    it asked first (awaiting_approval, then the run's own), and both belong in the history."""
    return str(body.get("event_id", "")), str(body.get("rule", "")), str(body.get("status", ""))


def finished_at(body: Body) -> float:
    """When a result body says it finished; 0 when it does not say (sorted first)."""
    try:
        return dt.datetime.fromisoformat(str(body["finished_at"])).timestamp()
    except (KeyError, ValueError):
        return 0.0


SEARCHED = ("rule", "status", "event_id", "subject", "reason", "trigger", "trace_id")


def searchable(body: Body) -> str:
    """What a text filter looks in: the result's names, reason and each step's error."""
    parts = [str(body.get(name) or "") for name in SEARCHED]
    steps = body.get("steps")
    if isinstance(steps, list):
        parts += [f"{s.get('name')} {s.get('error') or ''}" for s in steps if isinstance(s, dict)]
    return " ".join(parts).casefold()


class ResultLog:
    """Recent results and per-minute counts; fed by the daemon, read by the HTTP API."""

    def __init__(
        self, clock: Callable[[], float] = time.time, size: int = RING, max_bytes: int = RING_BYTES
    ) -> None:
        self.clock = clock
        self.size = size
        self.max_bytes = max_bytes
        self._bytes = 0  # of the results in the ring
        self._ring: deque[Recorded] = deque()
        self._keys: set[tuple[str, str, str]] = set()
        self._minutes: dict[int, Counter[tuple[str, str]]] = {}
        self._pruned = 0  # the minute the day's buckets were last pruned
        self._mine: dict[str, None] = {}  # ids of results added as published here, in order

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, body: Body, size: int | None = None, published_as: str | None = None) -> None:
        """A result just published, by this daemon or (read from the stream) another;
        each daemon's own come twice (as published, then from the stream): once kept.
        `published_as`: the message id this daemon published it with (`published_here`)."""
        if published_as is not None:
            self._mine[published_as] = None
            if len(self._mine) > self.size:  # never seen in the stream (not followed?)
                del self._mine[next(iter(self._mine))]
        if key_of(body) in self._keys:
            return
        entry = Recorded.of(body, size)
        self._count(entry)
        # Newest last, by when it finished: results of other replicas may arrive a little
        # out of order, and `recent(since=...)` stops at the first older one.
        at = len(self._ring)
        while at and self._ring[at - 1].at > entry.at:
            at -= 1
        self._ring.insert(at, entry)
        self._bytes += entry.size
        self._keys.add(entry.key)
        self._trim()

    def published_here(self, msg_id: str | None) -> bool:
        """Whether the stream's copy of a result is one this daemon added as it published
        it: the follower skips it unread (decoding every result twice was 10% of a firing
        daemon). Told once: a message id is forgotten once its copy came."""
        return msg_id is not None and self._mine.pop(msg_id, False) is None

    async def seed(self, bodies: AsyncIterable[Body]) -> int:
        """Results read back from the stream (oldest first), merged with those added
        meanwhile; all are counted, only the newest `size` kept whole. Returns how many."""
        kept: deque[Recorded] = deque(maxlen=self.size)
        count, kept_bytes = 0, 0
        async for body in bodies:
            count += 1
            entry = Recorded.of(body)
            if entry.key not in self._keys:
                self._count(entry)
                self._keys.add(entry.key)
                if len(kept) == kept.maxlen:
                    kept_bytes -= kept[0].size
                kept.append(entry)
                kept_bytes += entry.size
                while kept_bytes > self.max_bytes:  # a day of big results: never all at once
                    kept_bytes -= kept.popleft().size
        self._ring = deque(sorted([*kept, *self._ring], key=lambda e: e.at))
        self._bytes = sum(e.size for e in self._ring)
        self._trim()
        self._keys = {e.key for e in self._ring}
        return count

    def recent(
        self,
        *,
        rule: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[Body]:
        """The newest `limit` results passing the filters, newest first, after skipping
        the newest `offset` of them (the console pages through the whole ring)."""
        found: list[Body] = []
        needle = text.casefold() if text else None
        for entry in reversed(self._ring):
            if since is not None and entry.at < since:
                break
            if until is not None and entry.at > until:
                continue
            if (rule is None or entry.rule == rule) and (status is None or entry.status == status):
                if needle is not None and needle not in searchable(entry.body):
                    continue
                if offset > 0:
                    offset -= 1
                    continue
                found.append(entry.body)
                if len(found) >= limit:
                    break
        return found

    def event(self, event_id: str) -> list[Body]:
        """Every kept result of one event, in the order they finished."""
        return [e.body for e in self._ring if e.key[0] == event_id]

    def last(self) -> dict[str, Body]:
        """The newest kept result of each rule."""
        newest: dict[str, Body] = {}
        for entry in self._ring:
            newest[entry.rule] = entry.body
        return newest

    def counts(self, minutes: int) -> dict[str, Counter[str]]:
        """Per rule, results by status over the last `minutes` (this minute included)."""
        now = self._minute(self.clock())
        per_rule: dict[str, Counter[str]] = {}
        for minute, counter in self._minutes.items():
            if now - minute < minutes:
                for (rule, status), n in counter.items():
                    per_rule.setdefault(rule, Counter())[status] += n
        return per_rule

    def per_minute(self, minutes: int = HOUR_MINUTES) -> list[tuple[int, Counter[str]]]:
        """Results by status for each of the last `minutes` minutes, oldest first; each
        minute as its start in seconds since the epoch."""
        now = self._minute(self.clock())
        series = []
        for minute in range(now - minutes + 1, now + 1):
            by_status: Counter[str] = Counter()
            for (_, status), n in self._minutes.get(minute, Counter()).items():
                by_status[status] += n
            series.append((minute * MINUTE, by_status))
        return series

    def _count(self, entry: Recorded) -> None:
        minute = self._minute(entry.at or self.clock())
        if self._minute(self.clock()) - minute >= DAY_MINUTES:
            return
        self._minutes.setdefault(minute, Counter())[entry.rule, entry.status] += 1

    def _trim(self) -> None:
        while len(self._ring) > self.size or (self._bytes > self.max_bytes and self._ring):
            dropped = self._ring.popleft()
            self._bytes -= dropped.size
            self._keys.discard(dropped.key)
        now = self._minute(self.clock())
        if now == self._pruned:  # once a minute, not once a result
            return
        self._pruned = now
        horizon = now - DAY_MINUTES
        for minute in [m for m in self._minutes if m <= horizon]:
            del self._minutes[minute]

    @staticmethod
    def _minute(at: float) -> int:
        return int(at // MINUTE)
