"""The StateStore protocol over a JetStream key-value bucket, shared by every replica.

The engine only knows `StateStore` (remediator.engine.state); this module is
the NATS edge that implements it: revisions map to the bucket's per-key
sequence numbers, and the client's errors map onto `Conflict` (someone else
wrote first) and `TransportError` (the store cannot be reached).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from remediator.engine.state import Conflict, Entry
from remediator.errors import TransportError
from remediator.nats.jsconfig import bucket_config, bucket_stream, check_replicas
from remediator.nats.publishing import AckedPublisher, check_message, max_payload_of

STATE_BUCKET = "REMEDIATOR_STATE"
_PUT_TIMEOUT = 5.0
_SCAN_IDLE = 10.0  # seconds before the server drops a scan's consumer if not deleted
VERIFY_BUCKET = "REMEDIATOR_VERIFY"
STATE_TTL = 7 * 24 * 3600.0  # completion records and throttle state outlive any sane window
_WRONG_LAST_SEQUENCE = (10071, 10164)
# What a conditional write adds: Nats-Expected-Last-Subject-Sequence and its number.
_KV_HEADERS = {"Nats-Expected-Last-Subject-Sequence": "18446744073709551615"}
T = TypeVar("T")


class KVStore:
    """StateStore over a JetStream key-value bucket, shared by every replica."""

    def __init__(
        self, kv: KeyValue, publisher: AckedPublisher | None = None, bucket: str = ""
    ) -> None:
        self._kv = kv
        self._publisher = publisher
        self._prefix = f"$KV.{bucket or kv._name}."
        self._js = kv._js  # the server's limits, for checking writes before they are sent

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        bucket: str,
        ttl: float,
        replicas: int = 1,
        publisher: AckedPublisher | None = None,
    ) -> KVStore:
        stream = bucket_stream(bucket)
        try:
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                description = "remediator state: throttles, budget, completions"
                config = bucket_config(bucket, ttl, description, replicas)
                return cls(await js.create_key_value(config), publisher, bucket)
            check_replicas(stream, info.config.num_replicas, replicas)
            return cls(await js.key_value(bucket), publisher, bucket)
        except (NatsError, TimeoutError, OSError) as exc:
            raise TransportError(f"bucket {bucket}: {exc or type(exc).__name__}") from exc

    async def get(self, key: str) -> Entry | None:
        try:
            entry = await _guard(self._kv.get(key))
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return Entry(entry.value, entry.revision)

    async def create(self, key: str, value: bytes) -> int:
        self._check(key, value)
        return int(await _guard(self._kv.create(key, value)))

    async def update(self, key: str, value: bytes, revision: int) -> int:
        self._check(key, value)
        return int(await _guard(self._kv.update(key, value, last=revision)))

    def _check(self, key: str, value: bytes) -> None:
        """Unpublishable for a write the server would refuse: state too big for NATS is
        then dead-lettered at once, not retried as NATS trouble until max_deliver."""
        check_message(self._prefix + key, value, _KV_HEADERS, max_payload_of(self._js))

    async def delete(self, key: str, revision: int) -> None:
        await _guard(self._kv.delete(key, last=revision))

    async def put(self, key: str, value: bytes) -> int:
        self._check(key, value)
        if self._publisher is None:
            return int(await _guard(self._kv.put(key, value)))
        # An unconditional write (the completion record, once per fired rule) needs no
        # request of its own: the publisher shares one reply subscription, as results do.
        put = self._publisher.publish(self._prefix + key, value, {}, _PUT_TIMEOUT)
        return int((await _guard(put)).seq)

    async def keys(self, under: str | None = None) -> list[str]:
        """Every key, or those under `under.` (filtered by the server: the client's
        `keys(filters)` reads every key first). Each call reads through an ordered consumer
        that is deleted once read: nats-py leaves it for 5 minutes, and sweeps that look
        every second on every replica filled the server's consumer limit."""
        return await _guard(self._scan(">" if under is None else f"{under}.>"))

    async def _scan(self, pattern: str) -> list[str]:
        watcher = await self._kv.watch(
            pattern, ignore_deletes=True, meta_only=True, inactive_threshold=_SCAN_IDLE
        )
        keys = []
        try:
            async for entry in watcher:
                if entry is None:
                    break  # the watcher has delivered what exists now
                keys.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
            await self._delete_consumer(watcher._sub)
        return keys

    async def _delete_consumer(self, sub: JetStreamContext.PushSubscription | None) -> None:
        """Best effort: should it fail, the server drops it after _SCAN_IDLE anyway."""
        if sub is None:
            return
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await self._js.delete_consumer(sub._stream, sub._consumer)


async def _guard(call: Awaitable[T]) -> T:
    """Map the client's errors onto Conflict and TransportError."""
    try:
        return await call
    except KeyWrongLastSequenceError as exc:
        raise Conflict(str(exc)) from exc
    except KeyNotFoundError:
        raise
    except APIError as exc:
        if exc.err_code in _WRONG_LAST_SEQUENCE:
            raise Conflict(str(exc)) from exc
        raise TransportError(f"state store: {exc}") from exc
    except (NatsError, TimeoutError, OSError) as exc:
        raise TransportError(f"state store: {exc or type(exc).__name__}") from exc
