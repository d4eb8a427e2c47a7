"""The one call every action kind answers, and the helpers kinds share.

The engine hands an action a rendered request (plain data: the step's YAML
with every template already rendered) and a `StepContext`; the action returns
its output mapping or raises `StepError`. The engine owns timeouts, retries,
dry runs and masking, so an action module holds only what its kind does.
The engine never branches on kind: it looks the kind up in an `ActionSet`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from remediator.errors import StepError

OUTPUT_CAP = 64 * 1024  # bytes kept of any body, stdout or stderr


@dataclass(frozen=True, slots=True, kw_only=True)
class StepContext:
    """Who is asking: identifies the run for idempotency keys, trace headers and logs."""

    event_id: str
    trace_id: str
    rule: str
    step: str
    timeout: float

    @property
    def idempotency_key(self) -> str:
        return f"{self.event_id}:{self.rule}:{self.step}"


class Action(Protocol):
    """One action kind, built once by the daemon with its resources (sessions, pools)."""

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        """Do the work; return the step's output or raise StepError."""
        ...

    async def close(self) -> None:
        """Release pooled resources at shutdown."""
        ...


@runtime_checkable
class Previewing(Protocol):
    """An action whose dry run shows the request it would send, not only the rendered step."""

    def preview(self, request: Mapping[str, object]) -> dict[str, object]:
        """The dry-run output; sends nothing. StepError when the request is unusable."""
        ...


@runtime_checkable
class Answering(Protocol):
    """A kind that only asks, whose answer a dry run may be given (a rule test's `answers`)."""

    def answer(
        self, request: Mapping[str, object], context: StepContext
    ) -> dict[str, object] | None:
        """The given answer as the step's output; None: unknown, preview instead."""
        ...


ActionSet = Mapping[str, Action]


def changes_things(action: Action | None) -> bool:
    """Whether running the kind acts on the world; a kind that only asks (`prometheus`)
    sets `reads_only = True`, so a rule whose acting steps were all skipped reports
    `skipped` even though its query ran."""
    return not getattr(action, "reads_only", False)


def cap_text(text: str) -> str:
    """Keep at most OUTPUT_CAP bytes of `text`, cut on a character boundary."""
    data = text.encode()
    if len(data) <= OUTPUT_CAP:
        return text
    return data[:OUTPUT_CAP].decode(errors="ignore")


T = TypeVar("T")


def optional(
    request: Mapping[str, object], name: str, kind: type[T] | tuple[type, ...]
) -> T | None:
    """One rendered field, type-checked: rendered values are only known at run time."""
    value = request.get(name)
    if value is not None and not isinstance(value, kind):
        raise StepError(
            f"{name}: expected {_kind_name(kind)}, got {type(value).__name__}", permanent=True
        )
    return value  # type: ignore[return-value]


def required(request: Mapping[str, object], name: str, kind: type[T] | tuple[type, ...]) -> T:
    value: T | None = optional(request, name, kind)
    if value is None:
        raise StepError(f"{name}: required", permanent=True)
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
