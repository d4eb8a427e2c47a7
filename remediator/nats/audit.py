"""The audit trail: every human or API act, kept in the stream `REMEDIATOR_AUDIT`.

Pause, resume, approve, deny, trigger, and every control call refused for its
token, from the command line, the API or the console, become one record on
`remediator.audit.<act>`: `at, act, by, source, remote, target, reason,
outcome` (kept 90 days). The record is written *before* the act and the act
is refused when it cannot be stored, so nothing is done unaudited; an act that
then fails writes a second record saying so.

`REMEDIATOR_RESULTS` used to capture all of `remediator.>`, which overlaps the
audit subjects (JetStream refuses two streams sharing a subject): `ensure`
narrows a results stream remediator created to the subjects it names in
`RESULTS_SUBJECTS` (its stored messages stay), once, before creating this one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from remediator.errors import RemediatorError, TransportError
from remediator.nats import history
from remediator.nats.connection import connect
from remediator.nats.jsconfig import MANAGED, RESULTS_STREAM, RESULTS_SUBJECTS, stream_config
from remediator.settings import Settings

log = logging.getLogger(__name__)

AUDIT_STREAM = "REMEDIATOR_AUDIT"
AUDIT_PREFIX = "remediator.audit."
AUDIT_MAX_AGE = 90 * 24 * 3600.0
ACTS = ("pause", "resume", "approve", "deny", "trigger")
_PUBLISH_TIMEOUT = 5.0
_TEXT_CAP = 1024  # a reason or target longer than this is cut: a record is not a log


class AuditUnavailable(RemediatorError):
    """The audit record could not be stored, so the act was not done."""

    def __init__(self, act: str, why: object) -> None:
        super().__init__(
            f"{act} refused: the audit record cannot be stored in {AUDIT_STREAM} ({why}); "
            "nothing was done"
        )


class AuditTimeout(AuditUnavailable, TransportError):
    """The stream did not answer in time (a leader election after a node died): a
    TransportError too, so the CLI's patience tries the act again, audit first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    at: str
    act: str
    by: str
    source: str  # cli, api, console
    target: str
    outcome: str
    reason: str = ""
    remote: str | None = None  # the client address, for the API

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> AuditRecord:
        remote = body.get("remote")
        return cls(
            **{k: str(body.get(k, "")) for k in ("at", "act", "by", "source", "target")},
            outcome=str(body.get("outcome", "")),
            reason=str(body.get("reason", "")),
            remote=None if remote is None else str(remote),
        )


def _cap(text: str) -> str:
    return text if len(text) <= _TEXT_CAP else text[: _TEXT_CAP - 1] + "…"


@dataclass(slots=True)
class AuditLog:
    """Writes records (masked by `mask`: no token or secret is ever stored) and ensures
    the stream exists."""

    js: JetStreamContext
    replicas: int = 1
    mask: Callable[[str], str] = lambda text: text
    clock: Callable[[], float] = time.time
    _ready: bool = False

    def record(
        self,
        act: str,
        *,
        by: str,
        source: str,
        target: str,
        outcome: str,
        reason: str = "",
        remote: str | None = None,
    ) -> AuditRecord:
        at = dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat(timespec="milliseconds")
        return AuditRecord(
            at=at,
            act=act,
            by=_cap(self.mask(by)),
            source=source,
            target=_cap(self.mask(target)),
            outcome=_cap(self.mask(outcome)),
            reason=_cap(self.mask(reason)),
            remote=remote,
        )

    async def ready(self) -> None:
        """Make sure the stream exists (once per process)."""
        if not self._ready:
            try:
                await ensure(self.js, self.replicas)
            except (NatsError, TimeoutError, OSError) as exc:
                raise RemediatorError(f"stream {AUDIT_STREAM}: {exc}") from exc
            self._ready = True

    async def write(self, record: AuditRecord) -> None:
        """Store `record`; AuditUnavailable when the stream does not take it."""
        try:
            await self.ready()
            headers = {"Nats-Msg-Id": f"audit:{uuid.uuid4().hex}"}
            data = json.dumps(record.to_json()).encode()
            await self.js.publish(
                AUDIT_PREFIX + record.act, data, headers=headers, timeout=_PUBLISH_TIMEOUT
            )
        except (TimeoutError, NatsTimeout) as exc:
            raise AuditTimeout(record.act, exc or type(exc).__name__) from exc
        except RemediatorError as exc:
            if "timeout" in str(exc):  # the stream's creation timed out, in ready()
                raise AuditTimeout(record.act, exc) from exc
            raise AuditUnavailable(record.act, exc) from exc
        except (NatsError, OSError) as exc:
            raise AuditUnavailable(record.act, exc or type(exc).__name__) from exc


async def ensure(js: JetStreamContext, replicas: int) -> None:
    """Create `REMEDIATOR_AUDIT`, first narrowing an old results stream that overlaps it."""
    try:
        await js.stream_info(AUDIT_STREAM)
        return
    except NotFoundError:
        pass
    await narrow_results(js)
    config = stream_config(AUDIT_STREAM, [AUDIT_PREFIX + ">"], replicas, AUDIT_MAX_AGE)
    config.description = f"{MANAGED}: who paused, resumed, approved, denied or ran what"
    try:
        await js.add_stream(config)
    except NatsError as exc:
        raise RemediatorError(f"creating stream {AUDIT_STREAM}: {exc}") from exc
    log.info("created stream %s for %s>", AUDIT_STREAM, AUDIT_PREFIX)


async def narrow_results(js: JetStreamContext) -> None:
    """An old `REMEDIATOR_RESULTS` captured `remediator.>`: give it the named subjects."""
    try:
        info = await js.stream_info(RESULTS_STREAM)
    except NotFoundError:
        return
    subjects = info.config.subjects or []
    if "remediator.>" not in subjects:
        return
    if info.config.description != MANAGED:
        raise RemediatorError(
            f"stream {RESULTS_STREAM} captures remediator.>, which overlaps {AUDIT_PREFIX}>, "
            f"and was not created by remediator: give it the subjects "
            f"{' '.join(RESULTS_SUBJECTS)} (nats stream edit {RESULTS_STREAM} --subjects ...)"
        )
    info.config.subjects = [s for s in subjects if s != "remediator.>"] + RESULTS_SUBJECTS
    await js.update_stream(info.config)
    log.warning(
        "stream %s narrowed from remediator.> to %s, so that %s> can be kept apart",
        RESULTS_STREAM,
        ", ".join(RESULTS_SUBJECTS),
        AUDIT_PREFIX,
    )


async def read_audit(nc: Client, since: float | None) -> AsyncIterator[AuditRecord]:
    """The records stored since `since` (seconds since the epoch), oldest first."""
    span = history.Span(since=since, subject=AUDIT_PREFIX + ">")
    async for stored in history.read(nc, AUDIT_STREAM, span):
        try:
            body = json.loads(stored.data)
        except ValueError:
            continue
        if isinstance(body, dict):
            yield AuditRecord.from_json(body)


async def read_all(settings: Settings, since: float) -> list[AuditRecord]:
    """`remediator audit`: the records since `since`; none when the stream is not there."""
    nc = await connect(settings, settings.nats_url or "nats://127.0.0.1:4222")
    try:
        return [r async for r in read_audit(nc, since)]
    except TransportError as exc:
        if "not found" in str(exc):
            return []
        raise
    finally:
        await nc.close()


def audit_text(records: list[AuditRecord]) -> str:
    lines = []
    for r in records:
        where = r.source + (f" {r.remote}" if r.remote else "")
        why = f"  ({r.reason})" if r.reason else ""
        lines.append(f"{r.at}  {r.act:<8} {r.target}  by {r.by} via {where}: {r.outcome}{why}")
    return "\n".join(lines)
