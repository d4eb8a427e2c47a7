"""The StateStore protocol over a JetStream key-value bucket, shared by every replica.

The engine only knows `StateStore` (remediator.engine.state); this module is
the NATS edge that implements it: revisions map to the bucket's per-key
sequence numbers, and the client's errors map onto `Conflict` (someone else
wrote first) and `TransportError` (the store cannot be reached).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from remediator.engine.state import Conflict, Entry
from remediator.errors import TransportError
from remediator.nats.jsconfig import bucket_config, bucket_stream, check_replicas

STATE_BUCKET = "REMEDIATOR_STATE"
_PUT_TIMEOUT = 5.0
VERIFY_BUCKET = "REMEDIATOR_VERIFY"
STATE_TTL = 7 * 24 * 3600.0  # completion records and throttle state outlive any sane window
_WRONG_LAST_SEQUENCE = (10071, 10164)
T = TypeVar("T")


class KVStore:
    """StateStore over a JetStream key-value bucket, shared by every replica."""

    def __init__(self, kv: KeyValue, js: JetStreamContext | None = None, bucket: str = "") -> None:
        self._kv = kv
        self._js = js
        self._prefix = f"$KV.{bucket}."

    @classmethod
    async def open(
        cls, js: JetStreamContext, bucket: str, ttl: float, replicas: int = 1
    ) -> KVStore:
        stream = bucket_stream(bucket)
        try:
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                description = "remediator state: throttles, budget, completions"
                config = bucket_config(bucket, ttl, description, replicas)
                return cls(await js.create_key_value(config), js, bucket)
            check_replicas(stream, info.config.num_replicas, replicas)
            return cls(await js.key_value(bucket), js, bucket)
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
        return int(await _guard(self._kv.create(key, value)))

    async def update(self, key: str, value: bytes, revision: int) -> int:
        return int(await _guard(self._kv.update(key, value, last=revision)))

    async def delete(self, key: str, revision: int) -> None:
        await _guard(self._kv.delete(key, last=revision))

    async def put(self, key: str, value: bytes) -> int:
        if self._js is None:
            return int(await _guard(self._kv.put(key, value)))
        # An unconditional write (the completion record, once per fired rule) needs no
        # request of its own: publish_async shares one reply subscription, as results do.
        return int(await _guard(self._put_async(self._js, key, value)))

    async def _put_async(self, js: JetStreamContext, key: str, value: bytes) -> int:
        future = await js.publish_async(self._prefix + key, value)
        async with asyncio.timeout(_PUT_TIMEOUT):
            ack = await future
        return int(ack.seq)

    async def keys(self, under: str | None = None) -> list[str]:
        if under is not None:
            return await _guard(self._keys_under(under))
        try:
            return list(await _guard(self._kv.keys()))
        except NoKeysError:
            return []

    async def _keys_under(self, under: str) -> list[str]:
        """Filtered by the server (the client's `keys(filters)` reads every key first)."""
        watcher = await self._kv.watch(f"{under}.>", ignore_deletes=True, meta_only=True)
        keys = []
        try:
            async for entry in watcher:
                if entry is None:
                    break  # the watcher has delivered what exists now
                keys.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return keys


async def _guard(call: Awaitable[T]) -> T:
    """Map the client's errors onto Conflict and TransportError."""
    try:
        return await call
    except KeyWrongLastSequenceError as exc:
        raise Conflict(str(exc)) from exc
    except (KeyNotFoundError, NoKeysError):
        raise
    except APIError as exc:
        if exc.err_code in _WRONG_LAST_SEQUENCE:
            raise Conflict(str(exc)) from exc
        raise TransportError(f"state store: {exc}") from exc
    except (NatsError, TimeoutError, OSError) as exc:
        raise TransportError(f"state store: {exc or type(exc).__name__}") from exc
