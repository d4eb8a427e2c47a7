"""Shared state: a tiny compare-and-set key-value protocol, in memory or in JetStream.

Throttles, the global budget, completion records and pending verifications
all live behind `StateStore`. Every write names the revision it read
(`create` expects none), so N replicas updating one key serialise through
the server: a `Conflict` means "someone else won; read again". JetStream
key-value buckets give exactly that and survive restarts of either side;
`MemoryStore` gives the same semantics to `--core` mode, `replay` and tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue

from remediator.errors import TransportError

STATE_BUCKET = "REMEDIATOR_STATE"
_PUT_TIMEOUT = 5.0
VERIFY_BUCKET = "REMEDIATOR_VERIFY"
_WRONG_LAST_SEQUENCE = (10071, 10164)
T = TypeVar("T")


class Conflict(Exception):
    """The key changed since it was read (or exists, for `create`)."""


@dataclass(frozen=True, slots=True)
class Entry:
    value: bytes
    revision: int


class StateStore(Protocol):
    async def get(self, key: str) -> Entry | None: ...

    async def create(self, key: str, value: bytes) -> int:
        """Write if absent; Conflict otherwise."""
        ...

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Write if the key is still at `revision`; Conflict otherwise."""
        ...

    async def delete(self, key: str, revision: int) -> None:
        """Delete if the key is still at `revision`; Conflict otherwise."""
        ...

    async def put(self, key: str, value: bytes) -> int:
        """Write whatever is there."""
        ...

    async def keys(self) -> list[str]: ...


async def write(store: StateStore, key: str, value: bytes, entry: Entry | None) -> int:
    """Create or update against what was read: the one compare-and-set step."""
    if entry is None:
        return await store.create(key, value)
    return await store.update(key, value, entry.revision)


@dataclass(slots=True)
class MemoryStore:
    """In-process StateStore with the same compare-and-set semantics."""

    data: dict[str, Entry] = field(default_factory=dict)
    _revision: int = 0

    async def get(self, key: str) -> Entry | None:
        return self.data.get(key)

    async def create(self, key: str, value: bytes) -> int:
        if key in self.data:
            raise Conflict(key)
        return self._put(key, value)

    async def update(self, key: str, value: bytes, revision: int) -> int:
        current = self.data.get(key)
        if current is None or current.revision != revision:
            raise Conflict(key)
        return self._put(key, value)

    async def delete(self, key: str, revision: int) -> None:
        current = self.data.get(key)
        if current is None or current.revision != revision:
            raise Conflict(key)
        del self.data[key]

    async def put(self, key: str, value: bytes) -> int:
        return self._put(key, value)

    async def keys(self) -> list[str]:
        return list(self.data)

    def _put(self, key: str, value: bytes) -> int:
        self._revision += 1
        self.data[key] = Entry(value, self._revision)
        return self._revision


class KVStore:
    """StateStore over a JetStream key-value bucket, shared by every replica."""

    def __init__(self, kv: KeyValue, js: JetStreamContext | None = None, bucket: str = "") -> None:
        self._kv = kv
        self._js = js
        self._prefix = f"$KV.{bucket}."

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, ttl: float) -> KVStore:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=1,
                    ttl=ttl,
                    description="remediator state: throttles, budget, completions",
                )
            )
        return cls(kv, js, bucket)

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

    async def keys(self) -> list[str]:
        try:
            return list(await _guard(self._kv.keys()))
        except NoKeysError:
            return []


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
