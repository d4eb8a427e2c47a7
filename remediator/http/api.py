"""The control part of `/api/`: status, rules, approvals and their decisions, pause, resume.

Every route asks `Access` first (viewer to read, operator to decide or
pause) and records the token's name as `by`. The work is the same as the
command line's (`remediator.nats.control`), so a pause made here and one made
with `remediator pause` are the same key in `REMEDIATOR_CONTROL`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from remediator.durations import parse_duration
from remediator.engine.control import AlreadyDecided, pending
from remediator.engine.scopes import ScopeError, check_rule_names, pauses_for, resume_targets
from remediator.engine.state import StateStore
from remediator.errors import TransportError
from remediator.http.approvalview import Mask, describe
from remediator.http.auth import Access
from remediator.model import Rule
from remediator.nats.acts import Acts
from remediator.nats.audit import AuditLog, AuditUnavailable, read_audit
from remediator.nats.control import UnknownApproval
from remediator.nats.controlplane import ControlPlane
from remediator.nats.status import status_report
from remediator.rules.windows import parse_instant, windows_report

log = logging.getLogger(__name__)

DEFAULT_PAUSE = 3600.0
# Sent by the console's requests, so the audit trail tells its clicks from scripts' calls.
CLIENT_HEADER = "X-Remediator-Client"
_DECISIONS = {"approve": "approved", "deny": "denied"}


def _json(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda b: json.dumps(b, default=str))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class ControlAPI:
    def __init__(
        self,
        access: Access,
        plane: ControlPlane | None,
        rules: Callable[[], tuple[Rule, ...]],
        state: StateStore | None,
        budget: tuple[int, float] | None,
        mask: Mask = lambda payload: payload,
    ) -> None:
        self.mask = mask  # the key labels shown with a request are the alert's: masked
        self.access = access
        self.plane = plane
        self.rules = rules
        self.state = state
        self.budget = budget
        self.audit: AuditLog | None = plane.audit if plane is not None else None

    def mount(self, app: web.Application) -> None:
        add = app.router
        add.add_get("/api/status", self.status)
        add.add_get("/api/rules", self.list_rules)
        add.add_get("/api/approvals", self.approvals)
        add.add_get("/api/approvals/{id}", self.approval)
        add.add_post("/api/approvals/{id}/{decision:approve|deny}", self.decide)
        add.add_post("/api/pause", self.pause)
        add.add_post("/api/resume", self.resume)
        add.add_post("/api/rules/{rule}/run", self.run)
        add.add_get("/api/audit", self.audit_trail)

    def _plane(self) -> ControlPlane:
        if self.plane is None:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": "human control needs JetStream (not in --core mode)"}),
                content_type="application/json",
            )
        return self.plane

    def acts(self, request: web.Request, by: str) -> Acts:
        """`by` acting through this request, every act audited."""
        if self.audit is None:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": "no audit trail here (not in --core mode)"}),
                content_type="application/json",
            )
        client = request.headers.get(CLIENT_HEADER, "")
        source = "console" if client == "console" else "api"
        return Acts(self._plane().control, self.audit, by, source, request.remote)

    async def operator(self, request: web.Request, act: str, target: str) -> str:
        """The operator's name; a caller refused for its token is audited, then refused."""
        try:
            return self.access.require(request, "operator")
        except web.HTTPException as exc:
            if self.audit is not None and self.plane is not None:
                why = json.loads(exc.text or "{}").get("error", "") if exc.text else ""
                acts = self.acts(request, self.access.name_of(request))
                try:
                    await acts.note(act, target, f"refused ({exc.status}): {why}")
                except AuditUnavailable as failed:
                    log.warning("%s", failed)
            raise

    async def run(self, request: web.Request) -> web.Response:
        from remediator.http.runs import run_rule

        return await run_rule(self, request)

    async def audit_trail(self, request: web.Request) -> web.Response:
        """`GET /api/audit?since=24h&limit=200`: the newest records, oldest first."""
        self.access.require(request, "viewer")
        try:
            since = parse_duration(request.query.get("since", "24h"))
            limit = max(1, int(request.query.get("limit", "200")))
        except ValueError as exc:
            return _error(400, str(exc))
        reader = read_audit(self._plane().runs.nc, time.time() - since)
        try:
            records = [record.to_json() async for record in reader]
        except TransportError as exc:
            if "not found" not in str(exc):
                return _error(503, str(exc))
            records = []  # no act recorded yet
        return _json({"audit": records[-limit:]})

    async def status(self, request: web.Request) -> web.Response:
        self.access.require(request, "viewer")
        plane = self._plane()
        known = (r for r, _ in plane.watcher.requests.values())
        report = await status_report(plane.control, self.state, self.budget, known)
        report["windows"] = windows_report(self.rules(), dt.datetime.now(dt.UTC))
        return _json(report)

    async def list_rules(self, request: web.Request) -> web.Response:
        self.access.require(request, "viewer")
        pauses = self.plane.pauses if self.plane is not None else None
        body, now = [], dt.datetime.now(dt.UTC)
        for rule in self.rules():
            paused = pauses.paused(rule.name, "") if pauses is not None else None
            body.append(
                {
                    "name": rule.name,
                    "description": rule.description,
                    "subjects": list(rule.subjects),
                    "priority": rule.priority,
                    "dry_run": rule.dry_run,
                    "approval": None
                    if rule.approval is None
                    else {"timeout_s": rule.approval.timeout},
                    "paused": None if paused is None or paused.key else paused.describe(),
                    "windows": None if rule.windows is None else rule.windows.state(now),
                    "source": str(rule.source),
                    "schedule": None if rule.schedule is None else rule.schedule.describe(),
                }
            )
        return _json({"rules": body})

    async def approvals(self, request: web.Request) -> web.Response:
        self.access.require(request, "viewer")
        plane = self._plane()
        if request.query.get("state") == "all":  # done ones too: only the bucket has them
            shown = await plane.control.requests()
        else:  # from memory, without the events: the console polls this
            shown = pending(r for r, _ in plane.watcher.requests.values())
        return _json({"approvals": [describe(r, self.mask) for r in shown]})

    async def approval(self, request: web.Request) -> web.Response:
        """One request, pending or decided (the page a notification links to)."""
        self.access.require(request, "viewer")
        try:
            found, _ = await self._plane().control.request(request.match_info["id"])
        except UnknownApproval as exc:
            return _error(404, str(exc))
        return _json({"approval": describe(found, self.mask)})

    async def decide(self, request: web.Request) -> web.Response:
        verb, request_id = request.match_info["decision"], request.match_info["id"]
        by = await self.operator(request, verb, f"approval {request_id}")
        body = await _body(request)
        comment = str(body.get("comment", ""))
        try:
            decided = await self.acts(request, by).decide(request_id, _DECISIONS[verb], comment)
        except UnknownApproval as exc:
            return _error(404, str(exc))
        except AlreadyDecided as exc:
            return _error(409, str(exc))
        except AuditUnavailable as exc:
            return _error(503, str(exc))
        log.info("approval %s %s by %s", decided.id, decided.state, by)
        return _json({"approval": describe(decided, self.mask)})

    async def pause(self, request: web.Request) -> web.Response:
        by = await self.operator(request, "pause", _target(request))
        body = await _body(request)
        try:
            seconds = parse_duration(body.get("for", DEFAULT_PAUSE))
            start = _start(body.get("from"))
            made = pauses_for(
                _names(body),
                bool(body.get("all")),
                _key(body),
                seconds=seconds,
                reason=str(body.get("reason", "")),
                by=by,
                now=start if start is not None else time.time(),
            )
            if not body.get("all"):  # a typo must not pause nothing and answer 200
                check_rule_names(_names(body), {rule.name for rule in self.rules()})
        except (ScopeError, ValueError) as exc:
            return _error(400, str(exc))
        try:
            await self.acts(request, by).pause(made)
        except AuditUnavailable as exc:
            return _error(503, str(exc))
        plane = self._plane()
        for pause in made:
            plane.wrote(pause.name, pause)
            log.info("%s", pause.describe())
        return _json({"pauses": [p.summary() for p in made]})

    async def resume(self, request: web.Request) -> web.Response:
        by = await self.operator(request, "resume", _target(request))
        body = await _body(request)
        try:
            targets = resume_targets(_names(body), bool(body.get("all")), _key(body))
        except ScopeError as exc:
            return _error(400, str(exc))
        try:
            done = await self.acts(request, by).resume(targets, str(body.get("reason", "")))
        except AuditUnavailable as exc:
            return _error(503, str(exc))
        plane, resumed = self._plane(), []
        for target, lifted in done:
            if lifted:
                plane.wrote(target.name, None)
                resumed.append(target.what)
        missed = [t.what for t, lifted in done if not lifted]
        log.info("resumed %s by %s", ", ".join(resumed) or "nothing", by)
        if not resumed:
            return _error(404, "not paused: " + ", ".join(missed))
        return _json({"resumed": resumed, "not_paused": missed})


async def _body(request: web.Request) -> Mapping[str, object]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not JSON: {exc}"}), content_type="application/json"
        ) from None
    if not isinstance(body, Mapping):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body must be a JSON object"}),
            content_type="application/json",
        )
    return body


def _target(request: web.Request) -> str:
    """What a refused call aimed at, before its body is read (a refused body is not read)."""
    return request.path


def _names(body: Mapping[str, object]) -> list[str]:
    rules = body.get("rules", [])
    return [str(r) for r in rules] if isinstance(rules, list) else [str(rules)]


def _key(body: Mapping[str, object]) -> str | None:
    key = body.get("key")
    return None if key is None else str(key)


def _start(value: object) -> float | None:
    """`from`: when the pause begins, as `pause --from` takes it (ISO 8601; no offset:
    UTC); None for now. ValueError (a 400) if it is not a date-time."""
    if value is None:
        return None
    problems: list[tuple[tuple[str | int, ...], str]] = []
    when = parse_instant(value, (), problems)
    if when is None:
        raise ValueError(f"from: {problems[0][1]}")
    return when.timestamp()
