"""Shared state: a tiny compare-and-set key-value protocol, and its in-memory store.

Throttles, the global budget, completion records and pending verifications
all live behind `StateStore`. Every write names the revision it read
(`create` expects none), so N replicas updating one key serialise through
the server: a `Conflict` means "someone else won; read again". JetStream
key-value buckets give exactly that and survive restarts of either side;
`MemoryStore` gives the same semantics to `--core` mode, `replay` and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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

    async def keys(self, under: str | None = None) -> list[str]:
        """Every key, or those whose first token is `under` (`under.` + the rest)."""
        ...


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

    async def keys(self, under: str | None = None) -> list[str]:
        if under is None:
            return list(self.data)
        return [key for key in self.data if key.startswith(f"{under}.")]

    def _put(self, key: str, value: bytes) -> int:
        self._revision += 1
        self.data[key] = Entry(value, self._revision)
        return self._revision
