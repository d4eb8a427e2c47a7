"""`remediator history` and `remediator show`: the results stream, as a person on call reads it.

Both read `REMEDIATOR_RESULTS` through an ephemeral consumer (`nats.results`),
never the daemon's durable, and publish nothing. `history` keeps the newest
`limit` results passing the filters and prints them as a table, newest last,
with times relative to now ("3m ago"); `show` prints every result of one event
with its steps. Results are stored with secrets masked and are printed as
stored: nothing here could unmask them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from remediator.engine.resultlog import finished_at
from remediator.nats.connection import connect
from remediator.nats.results import read_results
from remediator.settings import Settings

DEFAULT_URL = "nats://127.0.0.1:4222"
REASON_WIDTH = 60
Body = Mapping[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    rule: str | None = None
    status: str | None = None
    since: float  # seconds since the epoch
    limit: int = 50


async def history(settings: Settings, query: Query) -> list[Body]:
    """The newest `query.limit` results passing its filters, oldest first."""
    kept: deque[Body] = deque(maxlen=query.limit)
    nc = await connect(settings, settings.nats_url or DEFAULT_URL)
    try:
        async for body in read_results(nc, query.since, query.rule):
            if query.status is None or body.get("status") == query.status:
                kept.append(body)
    finally:
        await nc.close()
    return list(kept)


async def event_results(settings: Settings, event_id: str, since: float) -> list[Body]:
    """Every stored result of one event (one per fired rule, and any republished copy)."""
    found: list[Body] = []
    nc = await connect(settings, settings.nats_url or DEFAULT_URL)
    try:
        async for body in read_results(nc, since):
            if body.get("event_id") == event_id:
                found.append(body)
    finally:
        await nc.close()
    return found


def table(results: Sequence[Body], now: float) -> str:
    """One line per result: time, rule, status, event id, duration, reason."""
    header = ("TIME", "RULE", "STATUS", "EVENT", "DURATION", "REASON")
    rows = [header, *(_row(body, now) for body in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _row(body: Body, now: float) -> tuple[str, ...]:
    return (
        relative(finished_at(body), now),
        str(body.get("rule", "")),
        str(body.get("status", "")),
        str(body.get("event_id", "")),
        duration(body.get("duration_ms")),
        _short(reason(body), REASON_WIDTH),
    )


def reason(body: Body) -> str:
    """The result's own reason, else the first failed step's error."""
    if body.get("reason"):
        return str(body["reason"])
    for step in _steps(body):
        if step.get("status") == "failed" and step.get("error"):
            return f"{step.get('name')}: {step['error']}"
    return ""


def detail(results: Sequence[Body], now: float) -> str:
    """Every result of one event, each with its steps, outputs and errors."""
    first = results[0]
    lines = [
        f"event {first.get('event_id')}  subject {first.get('subject')}  "
        f"trace {first.get('trace_id')}"
    ]
    for body in results:
        lines.extend(["", *_result_lines(body, now)])
    return "\n".join(lines)


def _result_lines(body: Body, now: float) -> list[str]:
    at = finished_at(body)
    lines = [
        f"rule {body.get('rule')}: {body.get('status')}  "
        f"{relative(at, now)} ({_iso(at)})  {duration(body.get('duration_ms'))}"
        + ("  redelivered" if body.get("redelivered") else "")
    ]
    if body.get("reason"):
        lines.append(f"  reason: {body['reason']}")
    for key in ("approval_id", "approval"):
        if body.get(key):
            lines.append(f"  {key}: {json.dumps(body[key], default=str)}")
    steps = _steps(body)
    lines.append("  steps:" if steps else "  steps: none ran")
    for number, step in enumerate(steps, 1):
        lines.append(
            f"    {number}. {step.get('name')}  {step.get('kind')}  {step.get('status')}  "
            f"attempts {step.get('attempts', 0)}  {duration(step.get('duration_ms'))}"
        )
        if step.get("output") is not None:
            lines.append(_indented("output: " + _pretty(step["output"]), 7))
        if step.get("error"):
            lines.append(_indented(f"error: {step['error']}", 7))
    return lines


def relative(at: float, now: float) -> str:
    """`5s ago`, `3m ago`, `2h ago`, `4d ago` (`in 5s` for a clock ahead of ours)."""
    seconds = int(now - at)
    ahead, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{seconds // size}{unit}"
            break
    else:
        text = f"{seconds}s"
    return f"in {text}" if ahead else f"{text} ago"


def duration(value: object) -> str:
    """`850ms`, `3.2s`, `2m05s`, from milliseconds."""
    try:
        ms = float(str(value))
    except ValueError:
        return "-"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    return f"{minutes}m{seconds:02d}s"


def _steps(body: Body) -> list[Mapping[str, object]]:
    steps = body.get("steps")
    return [s for s in steps if isinstance(s, Mapping)] if isinstance(steps, list) else []


def _pretty(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, default=str)


def _indented(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.splitlines())


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
