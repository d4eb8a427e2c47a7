"""A rule test's answers to its queries: `answers: {STEP: value | [samples]}`.

Rule tests have no Prometheus. A case gives each query step its answer, by step
name: a number (the first sample's value), `null` (an empty answer), or a list of
samples `[{labels: {...}, value: N}]`. `GivenAnswers` stands in for the
`prometheus` kind in the case's dry run and answers with them, so later steps'
`when` decide on real values; a query without an answer previews what it would
ask, and what depends on it is reported unknown, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping

from remediator.actions.base import StepContext, required
from remediator.actions.promclient import Answer, Sample
from remediator.actions.prometheus import WOULD_ASK
from remediator.errors import StepError

_SAMPLE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["value"],
    "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "value": {"type": "number"},
    },
}
ANSWERS = {
    "type": "object",
    "description": "query step name -> its answer: a number, null (empty), or a list of samples",
    "additionalProperties": {
        "anyOf": [{"type": ["number", "null"]}, {"type": "array", "items": _SAMPLE}]
    },
}
Given = Mapping[str, tuple[Sample, ...]]


def answers_of(raw: Mapping[str, object]) -> dict[str, tuple[Sample, ...]]:
    """A schema-checked `answers` mapping as samples by step name."""
    return {str(step): _samples(value) for step, value in raw.items()}


def _samples(value: object) -> tuple[Sample, ...]:
    if value is None:
        return ()
    if isinstance(value, int | float):
        return (Sample({}, float(value)),)
    assert isinstance(value, list)  # the case schema allows nothing else
    return tuple(
        Sample({str(k): str(v) for k, v in item.get("labels", {}).items()}, float(item["value"]))
        for item in value
    )


class GivenAnswers:
    """The `prometheus` kind in a rule test: answers from the case, never a network."""

    reads_only = True

    def __init__(self, given: Given) -> None:
        self._given = given

    def answer(
        self, request: Mapping[str, object], context: StepContext
    ) -> dict[str, object] | None:
        samples = self._given.get(context.step)
        if samples is None:
            return None
        return Answer(required(request, "query", str), samples).output()

    def preview(self, request: Mapping[str, object]) -> dict[str, object]:
        return {WOULD_ASK: required(request, "query", str)}

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        raise StepError("offline evaluation never runs an action", permanent=True)

    async def close(self) -> None:
        return None
