"""The read API of what the daemon did: `/api/results`, `/api/results/<id>`, `/api/overview`.

Every answer comes from the daemon's `ResultLog` (recent results and per-minute
counts kept as results are published), never from rereading the stream, so the
console may poll it every few seconds. Result bodies are the published ones,
secrets already masked; the stored alert is masked as it is served.

Who may read is decided in one place, the `Access` handed in (tokens and
roles; with no token configured, reads on a loopback listener only).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from aiohttp import web

from remediator.durations import parse_duration
from remediator.engine.resultlog import DAY_MINUTES, HOUR_MINUTES, Body, ResultLog
from remediator.http.auth import Access
from remediator.model import RESULT_STATUSES

Handler = Callable[[web.Request], Awaitable[web.Response]]
Stored = Callable[[str, int], Awaitable[object | None]]

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 1000
FIRED: Final = ("succeeded", "failed")  # the statuses of a run whose steps ran


class ResultsAPI:
    """The handlers; `mount` adds them to the listener's application."""

    def __init__(
        self,
        log: ResultLog,
        rules: Callable[[], Iterable[str]],
        access: Access,
        stored: Stored | None = None,
        mask: Callable[[object], object] = lambda payload: payload,
    ) -> None:
        self.log = log
        self.rules = rules  # names of the rules in force, listed even with no result yet
        self.access = access
        self.stored = stored  # reads an alert back from its stream (stream, sequence)
        # The stored alert is as it was published, so secrets a rule's steps sent (and an
        # alert may quote back) are masked here, like every result body before publishing.
        self.mask = mask

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/api/results", self._guarded(self._results))
        app.router.add_get("/api/results/{event_id}", self._guarded(self._event))
        app.router.add_get("/api/results/{event_id}/event", self._guarded(self._payload))
        # The same two by query: an id such as `.` or `..` cannot be a path segment (browsers
        # and yarl resolve it away), so the console always asks this way.
        app.router.add_get("/api/event", self._guarded(self._event))
        app.router.add_get("/api/event/alert", self._guarded(self._payload))
        app.router.add_get("/api/overview", self._guarded(self._overview))
        app.router.add_get("/api/statuses", self._guarded(self._statuses))

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.Response:
            self.access.require(request, "viewer")  # raises 401/403
            return await handler(request)

        return guarded

    async def _results(self, request: web.Request) -> web.Response:
        query = request.query
        now = self.log.clock()
        try:
            since = parse_since(query.get("since"), now)
            until = parse_since(query.get("until"), now)
            limit = parse_limit(query.get("limit"))
            offset = parse_offset(query.get("offset"))
        except ValueError as exc:
            return _error(400, str(exc))
        found = self.log.recent(
            rule=query.get("rule") or None,
            status=query.get("status") or None,
            since=since,
            until=until,
            text=query.get("q") or None,
            offset=offset,
            limit=limit + 1,  # one more: is there a next page?
        )
        body = {"results": found[:limit], "offset": offset, "more": len(found) > limit}
        return web.json_response(body)

    async def _event(self, request: web.Request) -> web.Response:
        event_id = _event_id(request)
        found = self.log.event(event_id)
        if not found:
            return _error(404, f"no recent result for event {event_id}")
        return web.json_response({"event_id": event_id, "results": found})

    async def _payload(self, request: web.Request) -> web.Response:
        """The alert itself, read back from the stream that holds it."""
        event_id = _event_id(request)
        origins = [o for r in self.log.event(event_id) if (o := _origin(r)) is not None]
        if not origins or self.stored is None:
            return _error(404, f"no stored alert known for event {event_id}")
        stream, sequence = origins[0]
        payload = await self.stored(stream, sequence)
        if payload is None:
            return _error(404, f"event {event_id} is no longer in stream {stream}")
        body = {
            "event_id": event_id,
            "stream": stream,
            "sequence": sequence,
            "event": self.mask(payload),
        }
        return web.json_response(body)

    async def _statuses(self, request: web.Request) -> web.Response:
        """Every result status, in the order the console lists and colours them."""
        return web.json_response({"statuses": list(RESULT_STATUSES)})

    async def _overview(self, request: web.Request) -> web.Response:
        return web.json_response(overview(self.log, self.rules()))


def overview(log: ResultLog, rules: Iterable[str]) -> dict[str, object]:
    """Per rule: fired and each status over 1 h and 24 h and its newest result;
    and results by status for each of the last 60 minutes."""
    hour, day, last = log.counts(HOUR_MINUTES), log.counts(DAY_MINUTES), log.last()
    names = sorted({*rules, *day})
    return {
        "generated_at": _iso(log.clock()),
        "statuses": list(RESULT_STATUSES),  # the console's legend and filters: one list
        "rules": [
            {
                "rule": name,
                "last_hour": _summary(hour.get(name)),
                "last_day": _summary(day.get(name)),
                "last": _brief(last.get(name)),
            }
            for name in names
        ],
        "per_minute": [
            {"minute": _iso(start), "counts": dict(counts)} for start, counts in log.per_minute()
        ],
    }


def parse_since(text: str | None, now: float) -> float | None:
    """`since` (or `until`) as a duration back from now (`15m`) or an ISO 8601 time."""
    if not text:
        return None
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"since: expected a duration (15m) or an ISO time, got {text!r}") from None
    return moment.replace(tzinfo=moment.tzinfo or dt.UTC).timestamp()


def parse_limit(text: str | None) -> int:
    if not text:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValueError(f"limit: expected a whole number from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def parse_offset(text: str | None) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(f"offset: expected a whole number, got {text!r}")
    return int(text)


def _summary(by_status: Counter[str] | None) -> dict[str, int]:
    """`fired`: steps were run (succeeded or failed); every status also on its own, so
    a paused, dry-run or awaiting run is never counted as one that acted."""
    by_status = by_status or Counter()
    counts = {status: by_status[status] for status in RESULT_STATUSES}
    return {"fired": sum(by_status[s] for s in FIRED)} | counts


def _brief(body: Body | None) -> dict[str, object] | None:
    if body is None:
        return None
    return {k: body.get(k) for k in ("event_id", "status", "finished_at")}


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat()


def _event_id(request: web.Request) -> str:
    if "event_id" in request.match_info:
        return request.match_info["event_id"]
    if "id" not in request.query:
        raise web.HTTPBadRequest(
            text='{"error": "the query parameter id is required"}', content_type="application/json"
        )
    return request.query["id"]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _origin(body: Body) -> tuple[str, int] | None:
    origin = body.get("origin")
    if not isinstance(origin, dict):
        return None
    stream, sequence = origin.get("stream"), origin.get("sequence")
    return (stream, sequence) if isinstance(stream, str) and isinstance(sequence, int) else None
