"""The control bucket `REMEDIATOR_CONTROL`: pauses, approval requests, replica heartbeats.

One JetStream key-value bucket holds what humans decide: `pause.all`,
`pause.rule.<rule>`, `pause.key.<rule>.<digest>`, `approval.<id>`,
`replica.<id>` and `rules.<digest>` (a set of rule names some replica has
loaded, named by its digest in that replica's heartbeat, so `pause` can refuse
a name no daemon knows; replicas with the same rules share one key).
`Control` is the set of operations the command line, the HTTP API and the
daemon share (every write to a request is a compare-and-set, so one decision
wins). `ControlWatcher` follows the bucket with one watch per
replica and keeps the in-memory `Pauses` view and the request cache current,
so the engine never reads NATS per event and a change reaches every replica
within a second or so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from remediator.engine.control import (
    AlreadyDecided,
    ApprovalRequest,
    Pause,
    Pauses,
    decide,
    pending,
)
from remediator.engine.keylabels import key_labels
from remediator.engine.state import Conflict
from remediator.errors import RemediatorError, TransportError
from remediator.metrics import Metrics
from remediator.nats.jsconfig import bucket_config, bucket_stream, check_replicas
from remediator.nats.kvstore import KVStore, _guard

log = logging.getLogger(__name__)

CONTROL_BUCKET = "REMEDIATOR_CONTROL"
CONTROL_DESCRIPTION = "remediator human control: pauses, approval requests, replicas"
HEARTBEAT = 15.0  # seconds between a replica's `replica.<id>` writes
SEEN_WITHIN = 60.0  # `status` lists replicas heard from within this
KEEP_DONE = 7 * 24 * 3600.0  # finished requests stay this long (the results stream keeps more)
_DELETES = ("DEL", "PURGE")
_STOP_WITHIN = 2.0  # seconds a watcher's unsubscribe may take


class UnknownApproval(RemediatorError):
    """No approval request has this id."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no approval request {request_id!r}")


def rules_digest(names: Sequence[str]) -> str:
    return hashlib.blake2b("\0".join(names).encode(), digest_size=12).hexdigest()


def replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class Control:
    """Operations on the control bucket, shared by the CLI, the API and the daemon."""

    def __init__(self, kv: KeyValue, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.store = KVStore(kv)
        self.clock = clock

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int = 1) -> Control:
        """Bind the bucket, or create it with `replicas` (`--replicas`, as every other
        bucket: with one replica, the brake is gone while its one node is)."""
        try:
            try:
                kv = await js.key_value(CONTROL_BUCKET)
            except BucketNotFoundError:
                config = bucket_config(CONTROL_BUCKET, None, CONTROL_DESCRIPTION, replicas)
                kv = await js.create_key_value(config)
            else:
                info = await js.stream_info(bucket_stream(CONTROL_BUCKET))
                check_replicas(bucket_stream(CONTROL_BUCKET), info.config.num_replicas, replicas)
        except (NatsError, TimeoutError, OSError) as exc:
            raise TransportError(f"control bucket {CONTROL_BUCKET}: {exc}") from exc
        return cls(kv)

    # -- pauses

    async def pause(self, pause: Pause) -> Pause:
        await self.store.put(pause.name, json.dumps(pause.to_json()).encode())
        return pause

    async def resume(self, name: str) -> bool:
        """Delete the pause stored under `name`; False when there was none."""
        if await self.store.get(name) is None:
            return False
        try:
            await _guard(self.kv.delete(name))
        except KeyNotFoundError:
            return False
        return True

    async def pauses(self) -> list[Pause]:
        now = self.clock()
        found = []
        for name in await self.store.keys("pause"):
            if (entry := await self.store.get(name)) is not None:
                pause = Pause.from_json(json.loads(entry.value))
                if pause.until > now:  # in force, or made ahead (`pause --from`)
                    found.append(pause)
        return found

    # -- approval requests

    async def request(self, request_id: str) -> tuple[ApprovalRequest, int]:
        entry = await self.store.get(f"approval.{request_id}")
        if entry is None:
            raise UnknownApproval(request_id)
        return ApprovalRequest.decode(entry.value), entry.revision

    async def requests(self) -> list[ApprovalRequest]:
        found = []
        for name in await self.store.keys("approval"):
            if (entry := await self.store.get(name)) is not None:
                found.append(ApprovalRequest.decode(entry.value))
        return found

    async def create(self, request: ApprovalRequest) -> ApprovalRequest:
        """Store a new request; a redelivered event finds the one it stored before."""
        try:
            await self.store.create(request.key, request.encode())
        except Conflict:
            found, _ = await self.request(request.id)
            return found
        return request

    async def move(self, old: ApprovalRequest, revision: int, new: ApprovalRequest) -> int:
        """Compare-and-set one request from what was read; Conflict when someone moved first."""
        assert old.id == new.id
        return await self.store.update(new.key, new.encode(), revision)

    async def decide(
        self, request_id: str, decision: str, by: str, comment: str = ""
    ) -> ApprovalRequest:
        """Approve or deny; AlreadyDecided names who did when someone was first, and says
        when the request expired (stored as expired if nobody noticed yet): the same answer
        whether or not a replica moved it before the decision came."""
        while True:
            request, revision = await self.request(request_id)
            decided = decide(request, decision, by, comment, self.clock())
            try:
                await self.move(request, revision, decided)
            except Conflict:
                continue  # read again: the answer is "already decided by ..."
            if decided.state == "expired":
                raise AlreadyDecided(decided)
            return decided

    # -- replicas

    async def heartbeat(self, identity: str, facts: dict[str, object]) -> None:
        body = {"id": identity, "seen": self.clock(), **facts}
        await self.store.put(f"replica.{identity}", json.dumps(body).encode())

    async def publish_rules(self, names: Sequence[str]) -> None:
        """Store a set of rule names under its digest, unless a replica already did."""
        with contextlib.suppress(Conflict):
            await self.store.create(
                f"rules.{rules_digest(names)}", json.dumps(list(names)).encode()
            )

    async def fleet_rules(self) -> set[str] | None:
        """The rule names of the replicas seen within SEEN_WITHIN; None when none said."""
        known: set[str] | None = None
        digests = {str(r["rules"]) for r in await self.replicas() if r.get("rules")}
        for digest in digests:
            if (entry := await self.store.get(f"rules.{digest}")) is not None:
                known = (known or set()) | {str(n) for n in json.loads(entry.value)}
        return known

    async def replicas(self) -> list[dict[str, object]]:
        now, seen = self.clock(), []
        for name in await self.store.keys("replica"):
            if (entry := await self.store.get(name)) is not None:
                body = json.loads(entry.value)
                if now - float(body.get("seen", 0)) <= SEEN_WITHIN:
                    seen.append(body)
        return seen


@dataclass(slots=True)
class ControlWatcher:
    """Follows the bucket: the pause view, the request cache, and the gauges."""

    control: Control
    pauses: Pauses
    metrics: Metrics | None = None
    on_request: Callable[[], None] = lambda: None
    requests: dict[str, tuple[ApprovalRequest, int]] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _scopes: set[str] = field(default_factory=set)

    async def run(self) -> None:
        """Watch forever; a broken watch (NATS away) is started again."""
        while True:
            watcher = None
            try:
                watcher = await self.control.kv.watchall()
                async for entry in watcher:
                    if entry is None:
                        self.ready.set()
                        continue
                    self.apply(entry.key, entry.value, entry.revision, entry.operation)
            except (NatsError, TimeoutError, OSError) as exc:
                log.warning("control bucket watch failed, watching again: %s", exc)
                await asyncio.sleep(1.0)
            finally:
                # Cancelled (stopping) or broken: a subscription left behind with nobody
                # reading it holds the connection's drain, and so the exit, for its timeout.
                if watcher is not None:
                    with contextlib.suppress(NatsError, TimeoutError, OSError):
                        async with asyncio.timeout(_STOP_WITHIN):  # a hung server: give up
                            await watcher.stop()  # type: ignore[no-untyped-call]

    def apply(self, key: str, value: bytes | None, revision: int | None, op: str | None) -> None:
        gone = op in _DELETES or not value
        try:
            if key.startswith("pause."):
                self.pauses.apply(key, None if gone else Pause.from_json(json.loads(value or b"")))
                self.refresh_paused()
            elif key.startswith("approval."):
                request_id = key.removeprefix("approval.")
                request = None if gone else ApprovalRequest.decode(value or b"")
                if request is None or request.state == "done":
                    self.requests.pop(request_id, None)  # done: nothing left to follow
                else:  # without its event: 2,000 requests of 50 KB were 120 MB per replica
                    slim = request.slim().with_(payload=key_labels(request.payload))
                    self.requests[request_id] = (slim, int(revision or 0))
                self.refresh_pending()
                self.on_request()
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("control bucket: ignoring unreadable %s: %s", key, exc)

    async def forget_replicas(self) -> None:
        """Heartbeats of replicas gone for a day, then the rule sets no heartbeat names:
        a fleet that restarts, scales and reloads would otherwise fill the bucket.

        The sets are listed first, then the heartbeats read: a replica writes its heartbeat
        naming a set before the set, so a set listed here is named by what is read after."""
        store, horizon = self.control.store, self.control.clock() - 24 * 3600.0
        sets = await store.keys("rules")
        named = set()
        for name in await store.keys("replica"):
            if (entry := await store.get(name)) is None:
                continue
            body = json.loads(entry.value)
            if float(body.get("seen", 0)) >= horizon:
                named.add(f"rules.{body.get('rules')}")
            else:
                with contextlib.suppress(Conflict):
                    await store.delete(name, entry.revision)
        for name in (k for k in sets if k not in named):
            if (entry := await store.get(name)) is not None:
                with contextlib.suppress(Conflict):
                    await store.delete(name, entry.revision)

    def refresh_paused(self) -> None:
        if self.metrics is None:
            return
        scopes = {p.scope for p in self.pauses.active()}
        for scope in scopes:
            self.metrics.paused.labels(scope).set(1)
        for scope in self._scopes - scopes:
            self.metrics.paused.labels(scope).set(0)
        self._scopes = scopes

    def refresh_pending(self) -> None:
        if self.metrics is not None:
            waiting = pending(request for request, _ in self.requests.values())
            self.metrics.approvals_pending.set(len(waiting))

    async def clean_up(self) -> None:
        """Remove pauses past their end (one replica wins each delete) and fix the gauge."""
        for pause in self.pauses.expired():
            entry = await self.control.store.get(pause.name)
            if entry is None:
                continue
            if Pause.from_json(json.loads(entry.value)).active(self.control.clock()):
                continue  # renewed meanwhile
            with contextlib.suppress(Conflict):
                await self.control.store.delete(pause.name, entry.revision)
        self.refresh_paused()
