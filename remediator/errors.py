"""The whole exception tree of remediator, in one place.

    RemediatorError
     +-- RuleError                 a rule file is wrong (exit 2); names file:line, rule, field
     |    +-- RuleErrors           several RuleErrors, reported together by `validate`
     +-- ConfigError               daemon settings are wrong (exit 2)
     +-- TemplateError             rendering failed for one event: names rule, step, field
     +-- StepError                 an action failed; `permanent` says whether a retry can help
     |    +-- StepTimeout          the step ran past its timeout (transient)
     +-- EventError                a message is not a JSON object: dead-lettered, never retried
     +-- TransportError            NATS is unreachable or refused a request (infrastructure)

Each error carries the fields a caller may need and renders a sentence that
names the thing it is about, so log lines and CLI output need no decoration.
"""

from __future__ import annotations

from collections.abc import Sequence


class RemediatorError(Exception):
    """Base of every error remediator raises on purpose."""


class RuleError(RemediatorError):
    """A rule file is wrong: `file:line: rule NAME: field: message`."""

    def __init__(
        self, message: str, *, file: str, line: int = 0, rule: str = "", field: str = ""
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.rule = rule
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line else self.file]
        if self.rule:
            parts.append(f"rule {self.rule}")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class RuleErrors(RuleError):
    """Every problem found in a rule set, so one `validate` run reports them all."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        super().__init__(
            first.message, file=first.file, line=first.line, rule=first.rule, field=first.field
        )

    def __str__(self) -> str:
        return "\n".join(RuleError.__str__(e) for e in self.errors)


class ConfigError(RemediatorError):
    """A daemon setting (flag, environment variable or config file key) is wrong."""


class TemplateError(RemediatorError):
    """A template failed to render for one event; permanent, since a retry renders the same."""

    def __init__(self, message: str, *, rule: str = "", field: str = "") -> None:
        self.message = message
        self.rule = rule
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(p for p in (f"rule {self.rule}" if self.rule else "", self.field) if p)
        return f"{where}: {self.message}" if where else self.message


class StepError(RemediatorError):
    """An action failed. `permanent` errors are not retried; `retry_after` overrides backoff."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        output: dict[str, object] | None = None,
    ) -> None:
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.output = output
        super().__init__(message)


class StepTimeout(StepError):
    """The step did not finish within its timeout."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"timed out after {timeout:g}s", permanent=False)


class EventError(RemediatorError):
    """A message cannot become an event; `reason` labels the dead letter."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class TransportError(RemediatorError):
    """NATS could not be reached or refused a request; the message is nak'ed, not lost."""


class Unpublishable(TransportError):
    """A message the server would refuse whatever the retry: headers plus payload over its
    max_payload, or headers that are not text. Never sent (the server would close the
    connection); a webhook answers 413, a step fails."""
