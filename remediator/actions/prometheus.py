"""The `prometheus` action: one instant query whose answer later steps decide on.

`prometheus: {query, url?}`: the query is rendered like any template and sent to
the configured server (or the step's own `url`) by the shared `PromClient`. The
output is `value` (the first sample as a float, null when the answer is empty),
`values` (every sample: `{labels, value}`) and `query` (as rendered), so a later
step's `when` reads `results.<step>.value`. It changes nothing, so its dry run
says what it would ask and leaves the answer unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

from remediator.actions.base import StepContext, optional, required
from remediator.actions.promclient import PromClient

WOULD_ASK = "would_ask"  # the dry run's output key: the rendered query, unanswered


class PrometheusAction:
    """Asks Prometheus through one client, shared with verification by query."""

    reads_only = True  # a check, not an action: see `changes_things`

    def __init__(self, client: PromClient) -> None:
        self._client = client

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        query = required(request, "query", str)
        answer = await self._client.ask(query, optional(request, "url", str))
        return answer.output()

    def preview(self, request: Mapping[str, object]) -> dict[str, object]:
        """What a dry run shows: the query it would send; the answer is unknown."""
        preview: dict[str, object] = {WOULD_ASK: required(request, "query", str)}
        if (url := optional(request, "url", str)) is not None:
            preview["url"] = url
        return preview

    async def close(self) -> None:
        await self._client.close()
