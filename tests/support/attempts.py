"""An action driven as the engine drives it, without the backoff: for action tests that
check which errors are retried and which are permanent."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from remediator.actions.base import Action, StepContext
from remediator.errors import StepError


async def attempts(
    action: Action, request: Mapping[str, object], context: StepContext, limit: int = 3
) -> tuple[dict[str, object] | StepError, int]:
    """The engine's retry loop, without its backoff: retry while the error is not permanent."""
    for attempt in range(1, limit + 1):
        try:
            return await action.run(request, context), attempt
        except StepError as exc:
            if exc.permanent or attempt == limit:
                return exc, attempt
    raise AssertionError("unreachable")


async def failure(action: Action, request: Mapping[str, object], context: StepContext) -> StepError:
    """The StepError a single run raises."""
    with pytest.raises(StepError) as raised:
        await action.run(request, context)
    return raised.value
