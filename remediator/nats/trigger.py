"""Manual runs over NATS: the request in the control bucket, the replica that claims it.

`ask` stores a `RunRequest` under `trigger.<id>` in `REMEDIATOR_CONTROL`;
every daemon's `RunWorker` watches `trigger.>` and the first whose
compare-and-set moves it to `running` runs the rule through its engine (so
exactly one replica runs it; pause and approval apply, `forced` skips throttle
and budget), stores the result like any other, and moves the request to
`done` with that result. `answer` waits for that, and withdraws a request no
daemon claimed in time so that it never runs after its asker gave up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping

from nats.aio.client import Client
from nats.errors import Error as NatsError

from remediator.engine.engine import Engine
from remediator.engine.manual import RunRequest
from remediator.engine.schedule import iso
from remediator.engine.state import Conflict
from remediator.errors import RemediatorError, TransportError
from remediator.nats.control import Control
from remediator.nats.results import read_results
from remediator.nats.transport import Transport
from remediator.strictjson import dumps

log = logging.getLogger(__name__)

POLL = 0.1  # seconds between looks at a request by whoever waits for its answer
LOOK_BACK = 7 * 24 * 3600.0  # how far back `--from` looks for the result of an event


class NoAnswer(RemediatorError):
    """No daemon answered a manual run in time."""


async def ask(control: Control, request: RunRequest) -> None:
    await control.store.create(request.key, request.encode())


async def answer(control: Control, request: RunRequest, wait: float) -> RunRequest:
    """The request once done or failed; NoAnswer (and the request withdrawn) after `wait`."""
    deadline = time.monotonic() + wait
    while True:
        entry = await control.store.get(request.key)
        if entry is not None:
            found = RunRequest.decode(entry.value)
            if found.state in ("done", "failed"):
                # Answered: the result is in the results stream; the bucket keeps no history.
                with contextlib.suppress(Conflict, TransportError):
                    await control.store.delete(request.key, entry.revision)
                return found
            if time.monotonic() >= deadline:
                await _give_up(control, found, entry.revision, wait)
        elif time.monotonic() >= deadline:
            raise NoAnswer(f"manual run {request.id} of {request.rule}: the request is gone")
        await asyncio.sleep(POLL)


async def _give_up(control: Control, found: RunRequest, revision: int, wait: float) -> None:
    if found.state == "pending":
        with contextlib.suppress(Conflict):
            await control.store.delete(found.key, revision)
            raise NoAnswer(
                f"no daemon answered within {wait:g}s: manual run {found.id} of rule "
                f"{found.rule} withdrawn, nothing ran (is a daemon running, on this NATS?)"
            )
        return  # claimed just now: look again
    raise NoAnswer(
        f"manual run {found.id} of rule {found.rule} was claimed by {found.claimed_by} "
        f"but has no result after {wait:g}s; see `remediator show trigger:{found.id}` later"
    )


async def stored_event(nc: Client, event_id: str, now: float) -> tuple[str, dict[str, object]]:
    """(subject, payload) of the event an earlier result was for (`--from`)."""
    if event_id.startswith("schedule:"):
        _, rule, tick = event_id.split(":", 2)
        return f"remediator.schedule.{rule}", {"schedule": {"rule": rule, "tick": tick}}
    async for body in read_results(nc, now - LOOK_BACK):
        origin = body.get("origin")
        if body.get("event_id") != event_id or not isinstance(origin, Mapping):
            continue
        try:
            msg = await nc.jetstream().get_msg(str(origin["stream"]), int(origin["sequence"]))
            payload = json.loads(msg.data or b"null")
        except (NatsError, TimeoutError, ValueError, KeyError) as exc:
            raise RemediatorError(f"the event of {event_id} is no longer stored: {exc}") from exc
        if isinstance(payload, dict):
            return str(body.get("subject", "")), payload
    raise RemediatorError(f"no stored event for {event_id!r} (a result with its origin)")


MANUAL_PREFIX = "remediator.manual."


class RunWorker:
    """On every daemon: claims pending manual runs and runs them through the engine."""

    def __init__(
        self,
        control: Control,
        transport: Transport,
        engine: Callable[[], Engine],
        identity: str,
    ) -> None:
        self.control, self.transport, self.engine = control, transport, engine
        self.nc, self.identity = transport.nc, identity
        self._busy: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while True:
            try:
                watcher = await self.control.kv.watch("trigger.>", ignore_deletes=True)
                async for entry in watcher:
                    if entry is not None and entry.value and entry.revision is not None:
                        self._start(entry.value, entry.revision)
            except (NatsError, TimeoutError, OSError) as exc:
                log.warning("manual runs: watch failed, watching again: %s", exc)
                await asyncio.sleep(1.0)

    def _start(self, value: bytes, revision: int) -> None:
        try:
            request = RunRequest.decode(value)
        except (ValueError, TypeError) as exc:
            log.warning("manual runs: ignoring an unreadable request: %s", exc)
            return
        if request.state != "pending":
            return
        task = asyncio.create_task(self._take(request, revision))
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)

    async def _take(self, request: RunRequest, revision: int) -> None:
        try:
            if request.expires_at <= time.time():  # its asker gave up: never run it
                await self.control.store.delete(request.key, revision)
                return
            claimed = request.with_(state="running", claimed_by=self.identity)
            revision = await self.control.store.update(request.key, claimed.encode(), revision)
        except Conflict:
            return  # another replica took it, or its asker withdrew it
        except TransportError as exc:
            log.warning("manual run %s: cannot claim it: %s", request.id, exc)
            return
        done = await self._run(claimed)
        with contextlib.suppress(Conflict):
            await self.control.store.update(request.key, done.encode(), revision)

    async def _run(self, request: RunRequest) -> RunRequest:
        engine = self.engine()
        rule = next((r for r in engine.index.rules if r.name == request.rule), None)
        if rule is None:
            why = f"no rule {request.rule!r} is loaded (replica {self.identity})"
            return request.with_(state="failed", error=why)
        try:
            subject, payload = None, dict(request.payload or {})
            if request.from_event:
                subject, payload = await stored_event(self.nc, request.from_event, time.time())
            elif request.payload is None and rule.schedule is not None:
                # A scheduled rule run by hand gets a tick's event, at the time it was asked.
                moment = dt.datetime.fromtimestamp(request.at, dt.UTC)
                payload = {"schedule": {"rule": rule.name, "tick": iso(moment)}}
            log.info("rule %s: manual run %s by %s", rule.name, request.id, request.by)
            stored = await self._keep(request, payload)
            result = await engine.run_rule(rule, request.event(rule, subject, payload, stored))
        except RemediatorError as exc:
            return request.with_(state="failed", error=str(exc))
        return request.with_(state="done", result=result.to_json(), payload=None)

    async def _keep(
        self, request: RunRequest, payload: Mapping[str, object]
    ) -> tuple[str, int] | None:
        """Store the run's event like an alert, so its result can show it and be run again
        (None: no stream captures it, e.g. a results stream remediator did not make)."""
        data = dumps(payload).encode()
        headers = {"Nats-Msg-Id": f"manual:{request.id}"}
        ack = await self.transport.publish(f"{MANUAL_PREFIX}{request.rule}", data, headers)
        if "stream" not in ack:
            return None
        return str(ack["stream"]), int(str(ack["seq"]))
