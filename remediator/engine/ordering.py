"""Ordering keys: which events of a replica wait for each other (SPEC §5).

Events with the same ordering key are processed one at a time, in stream
order; events with different keys run concurrently. The key is the setting
`order_key`: unset, the payload's `fingerprint` when it has one (a `firing`
and its `resolved` share it) and the subject otherwise; `none`, no ordering
at all; anything else, a template over the event context, compiled once at
start-up. `KeyedQueue` holds, per key with work in flight, only the task
that ran last (the tail): O(1) per event, and the entry goes with the tail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import jinja2

from remediator.errors import ConfigError, TemplateError
from remediator.model import Event, Renderable
from remediator.rules.templating import Templates

log = logging.getLogger(__name__)

NONE = "none"


class OrderKey:
    """The ordering key of an event; None means the event waits for nothing."""

    def __init__(self, template: Renderable | None, *, enabled: bool = True) -> None:
        self._template = template
        self.enabled = enabled

    @classmethod
    def compile(cls, setting: str | None, templates: Templates) -> OrderKey:
        """From the `order_key` setting; a syntax error is a start-up error naming it."""
        if setting is None or not setting.strip():
            return cls(None)
        if setting.strip().lower() == NONE:
            return cls(None, enabled=False)
        try:
            return cls(templates.compile(setting, field="order_key"))
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"setting order_key: {exc}") from exc

    def of(self, event: Event, context: Callable[[Event], Mapping[str, object]]) -> str | None:
        if not self.enabled:
            return None
        if self._template is None:
            fingerprint = event.payload.get("fingerprint")
            # Prefixed, so a subject, a fingerprint and a rendered key never collide.
            return f"s:{event.subject}" if fingerprint is None else f"fp:{fingerprint}"
        try:
            return f"k:{self._template.render(context(event))}"
        except TemplateError as exc:
            # An event the template does not fit is still ordered, by its subject.
            log.warning("order_key for event %s: %s; ordered by subject", event.event_id, exc)
            return f"s:{event.subject}"


class KeyedQueue:
    """Tasks chained per key: each waits for the one before it of its key, if any."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references, for drain

    def busy(self, key: str | None) -> bool:
        return key is not None and key in self._tails

    def __len__(self) -> int:
        return len(self._tasks)

    def start(
        self,
        key: str | None,
        work: Callable[[asyncio.Task[None] | None], asyncio.Task[None]],
    ) -> asyncio.Task[None]:
        """Start `work(previous)`, where `previous` is the tail of `key` it must wait for."""
        previous = self._tails.get(key) if key is not None else None
        task = work(previous)
        self._tasks.add(task)
        if key is not None:
            self._tails[key] = task
        task.add_done_callback(lambda t: self._done(key, t))
        return task

    def _done(self, key: str | None, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if key is not None and self._tails.get(key) is task:
            del self._tails[key]

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    @property
    def keys(self) -> int:
        """Keys with work in flight (for tests: the structure shrinks back to nothing)."""
        return len(self._tails)
