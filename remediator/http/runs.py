"""`POST /api/rules/<rule>/run`: a manual run through the API (SPEC §16).

The same request as `remediator trigger` (an operator's token, its name as
`by`, audited like every act), answered by whichever daemon claims it; the
response is the stored result, or 504 when no daemon answered in time.
Body: `{event?, from?, dry_run?, force?, reason?, wait?}`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from remediator.durations import parse_duration
from remediator.engine.manual import RunRequest
from remediator.errors import RemediatorError
from remediator.nats.audit import AuditUnavailable
from remediator.nats.trigger import NoAnswer

if TYPE_CHECKING:
    from remediator.http.api import ControlAPI

DEFAULT_WAIT = 30.0
MAX_WAIT = 120.0


def _given(body: Mapping[str, object]) -> dict[str, object]:
    """The request's fields from the body; ValueError names a wrong one."""
    event, source = body.get("event"), body.get("from")
    if event is not None and not isinstance(event, Mapping):
        raise ValueError("event must be a JSON object")
    if event is not None and source is not None:
        raise ValueError("give event or from, not both")
    return {
        "payload": None if event is None else dict(event),
        "from_event": None if source is None else str(source),
        "forced": body.get("force") is True,
        "dry_run": body.get("dry_run") is True,
        "reason": str(body.get("reason", "")),
    }


async def run_rule(api: ControlAPI, request: web.Request) -> web.Response:
    from remediator.http.api import _body, _error, _json

    rule = request.match_info["rule"]
    by = await api.operator(request, "trigger", rule)
    body = await _body(request)
    if rule not in {r.name for r in api.rules()}:
        return _error(404, f"no rule {rule!r}")
    try:
        given = _given(body)
        wait = min(parse_duration(body.get("wait", DEFAULT_WAIT)), MAX_WAIT)
    except ValueError as exc:
        return _error(400, str(exc))
    acts = api.acts(request, by)
    run = RunRequest.new(rule, by, time.time(), wait, source=acts.source, **given)
    try:
        done = await acts.trigger(run, wait)
    except AuditUnavailable as exc:
        return _error(503, str(exc))
    except NoAnswer as exc:
        return _error(504, str(exc))
    except RemediatorError as exc:
        return _error(502, str(exc))
    if done.state == "failed":
        return _error(422, f"manual run {done.id} of {rule} failed: {done.error}")
    return _json({"id": done.id, "result": done.result})
