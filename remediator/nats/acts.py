"""Human acts on the control bucket, each one audited: the one path for the CLI and the API.

`Acts` is who is acting (`by`, `source`, `remote`) plus the control bucket and
the audit log. Each act writes its audit record first (`AuditUnavailable`:
nothing is done) and then does the work, so a pause made with `remediator
pause` and one made through `/api/pause` leave the same trace. An act whose
work then fails, or that lost a race (a decision someone made a moment
before), writes a second record saying how it ended.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from remediator.engine.control import AlreadyDecided, ApprovalRequest, Pause
from remediator.engine.manual import RunRequest
from remediator.errors import RemediatorError
from remediator.nats.audit import AuditLog
from remediator.nats.control import Control, UnknownApproval
from remediator.nats.trigger import answer, ask

_VERB = {"approved": "approve", "denied": "deny"}


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def pause_target(pause: Pause) -> str:
    return pause.scope if pause.key is None else f"{pause.scope} key={pause.key}"


@dataclass(slots=True)
class Acts:
    control: Control
    audit: AuditLog
    by: str
    source: str  # cli, api, console
    remote: str | None = None

    async def note(self, act: str, target: str, outcome: str, reason: str = "") -> None:
        record = self.audit.record(
            act,
            by=self.by,
            source=self.source,
            target=target,
            outcome=outcome,
            reason=reason,
            remote=self.remote,
        )
        await self.audit.write(record)

    async def _failed(self, act: str, target: str, exc: Exception) -> None:
        """Best effort: the act was audited before; say it did not happen."""
        with contextlib.suppress(RemediatorError):
            await self.note(act, target, f"failed: {exc}")

    async def pause(self, made: Sequence[Pause]) -> list[Pause]:
        for pause in made:
            target = pause_target(pause)
            await self.note("pause", target, f"paused until {_iso(pause.until)}", pause.reason)
            try:
                await self.control.pause(pause)
            except RemediatorError as exc:
                await self._failed("pause", target, exc)
                raise
        return list(made)

    async def resume(self, targets: Sequence[Pause], reason: str = "") -> list[tuple[Pause, bool]]:
        """(target, whether there was a pause to lift) for each target."""
        done = []
        for target in targets:
            paused = await self.control.store.get(target.name) is not None
            where = pause_target(target)
            await self.note("resume", where, "resumed" if paused else "not paused", reason)
            try:
                done.append((target, paused and await self.control.resume(target.name)))
            except RemediatorError as exc:
                await self._failed("resume", where, exc)
                raise
        return done

    async def trigger(self, request: RunRequest, wait: float) -> RunRequest:
        """Ask the daemons for a manual run and wait for its answer (NoAnswer: none came)."""
        flags = [f for f, on in (("forced", request.forced), ("dry run", request.dry_run)) if on]
        source = f" from {request.from_event}" if request.from_event else ""
        outcome = f"requested run {request.id}{source}" + (
            f" ({', '.join(flags)})" if flags else ""
        )
        await self.note("trigger", request.rule, outcome, request.reason)
        try:
            await ask(self.control, request)
        except RemediatorError as exc:
            await self._failed("trigger", request.rule, exc)
            raise
        return await answer(self.control, request, wait)

    async def decide(self, request_id: str, decision: str, comment: str) -> ApprovalRequest:
        """Approve or deny; AlreadyDecided (audited as refused) when someone was first."""
        act = _VERB[decision]
        try:
            request, _ = await self.control.request(request_id)
        except UnknownApproval as exc:
            await self.note(act, f"approval {request_id}", f"refused: {exc}", comment)
            raise
        target = f"approval {request_id} ({request.rule})"
        if request.state != "pending":
            refused = AlreadyDecided(request)
            await self.note(act, target, f"refused: {refused}", comment)
            raise refused
        await self.note(act, target, decision, comment)
        try:
            decided = await self.control.decide(request_id, decision, self.by, comment)
        except AlreadyDecided as exc:
            await self.note(act, target, f"refused: {exc}", comment)
            raise
        except RemediatorError as exc:
            await self._failed(act, target, exc)
            raise
        if decided.state != decision:  # expired meanwhile
            await self.note(act, target, f"refused: {decided.state} before the decision")
        return decided
