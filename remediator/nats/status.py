"""`remediator status`: pauses, open circuits, the budget left, pending approvals, replicas.

One report, read from the control bucket and the state bucket, served as JSON
by `GET /api/status` and printed by the command line (`--json` or text).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence

from remediator.engine.control import ApprovalRequest, pending
from remediator.engine.state import StateStore
from remediator.nats.control import Control


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


async def status_report(
    control: Control,
    state: StateStore | None,
    budget: tuple[int, float] | None,
    known: Iterable[ApprovalRequest] | None = None,
) -> dict[str, object]:
    """`known`: the requests a replica keeps in memory (without their events), so a
    status read does not fetch every request, event and all, from the bucket."""
    now = control.clock()
    pauses = [p.summary() for p in await control.pauses()]
    requests = pending(await control.requests() if known is None else known)
    report: dict[str, object] = {
        "pauses": pauses,
        "circuits": await _circuits(state, now) if state is not None else [],
        "budget": await _budget(state, budget, now) if state is not None else None,
        "approvals": [r.summary() for r in requests],
        "replicas": [
            {"id": r["id"], "seen": _iso(float(str(r["seen"])))} for r in await control.replicas()
        ],
        "schedules": await _schedules(control),
    }
    return report


async def _schedules(control: Control) -> list[dict[str, object]]:
    """Each scheduled rule's last tick fired and its next, as its claim record says."""
    rows: list[dict[str, object]] = []
    for key in sorted(await control.store.keys()):
        if key.startswith("schedule.") and (entry := await control.store.get(key)) is not None:
            body = json.loads(entry.value)
            rows.append(
                {
                    "rule": key.removeprefix("schedule."),
                    "last_tick": body.get("tick"),
                    "next_tick": body.get("next"),
                }
            )
    return rows


async def _circuits(state: StateStore, now: float) -> list[dict[str, object]]:
    """Throttle buckets refusing runs now: a full window, or a failed verification. Only
    the throttle keys are read (filtered by the server), not the whole state bucket."""
    found: list[dict[str, object]] = []
    for key in await state.keys("throttle"):
        if (entry := await state.get(key)) is None:
            continue
        body = json.loads(entry.value)
        rule = key.split(".")[1]
        open_until = body.get("open_until")
        if isinstance(open_until, int | float) and open_until > now:
            found.append({"rule": rule, "bucket": key, "until": _iso(open_until)})
        elif body.get("opened") is not None:
            found.append({"rule": rule, "bucket": key, "since": _iso(float(body["opened"]))})
    return found


async def _budget(
    state: StateStore, budget: tuple[int, float] | None, now: float
) -> dict[str, object] | None:
    if budget is None:
        return None
    max_runs, window = budget
    entry = await state.get("budget")
    body: Mapping[str, object] = json.loads(entry.value) if entry else {}
    start = float(str(body.get("start", now)))
    used = int(str(body.get("count", 0))) if now < start + window else 0
    return {"max_runs": max_runs, "window_s": window, "used": used, "left": max(0, max_runs - used)}


def _rows(report: Mapping[str, object], name: str) -> list[Mapping[str, object]]:
    rows = report.get(name)
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def status_text(report: Mapping[str, object]) -> str:
    pauses, circuits = _rows(report, "pauses"), _rows(report, "circuits")
    lines = [f"pauses: {len(pauses)}"]
    for p in pauses:
        what = f"{p['scope']}" + (f" key={p['key']}" if p.get("key") else "")
        lines.append(f"  {what} by {p['by']} until {p['until']}: {p.get('reason') or '-'}")
    lines.append(f"open circuits: {len(circuits)}")
    lines.extend(f"  {c['rule']} ({c['bucket']})" for c in circuits)
    budget = report.get("budget")
    if isinstance(budget, Mapping):
        lines.append(f"budget: {budget['left']} of {budget['max_runs']} runs left in the window")
    else:
        lines.append("budget: none configured here (pass --config or --max-actions)")
    lines.append(approvals_text(_rows(report, "approvals")))
    replicas = _rows(report, "replicas")
    schedules = _rows(report, "schedules")
    lines.append(f"scheduled rules: {len(schedules)}")
    lines.extend(
        f"  {r['rule']}: last tick {r['last_tick'] or 'none yet'}, next {r['next_tick']}"
        for r in schedules
    )
    lines.append(f"replicas seen in the last minute: {len(replicas)}")
    lines.extend(f"  {r['id']} (last seen {r['seen']})" for r in replicas)
    return "\n".join(lines)


def approvals_text(rows: Sequence[Mapping[str, object]]) -> str:
    lines = [f"pending approvals: {len(rows)}"]
    for a in rows:
        lines.append(
            f"  {a['id']}  rule {a['rule']}  event {a['event_id']}  expires {a['expires_at']}"
        )
    return "\n".join(lines)
