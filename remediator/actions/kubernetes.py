"""The `kubernetes` action: restart, evict, cordon, uncordon or patch, as kubectl does them.

This module owns running one operation (parsed by `remediator.actions.kubeops`) against
the API server the `scale` action uses (same `KubeSettings`, same `KubeClient`): one client
per action, opened at the first step, and with it a discovery cache (kind -> plural and
scope, read from `/api/v1` or `/apis/<group>/<version>`), which lives and dies with the
client. Errors keep the client's classification (4xx other than 409/429 permanent; 409,
429, 5xx and connection failures transient), and a 403 also names the permission the
request needed, since that is what the operator must grant. A dry run shows the write
request (`preview`) without discovery or any other request.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from remediator.actions.base import StepContext
from remediator.actions.kubeclient import KubeAPI, KubeClient, KubeSettings
from remediator.actions.kubeops import Call, Resource, parse
from remediator.errors import ConfigError, StepError

logger = logging.getLogger(__name__)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime) -> str:
    """Seconds, UTC, `Z`: the form `kubectl rollout restart` writes (in its local zone)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class KubeSession:
    """One client and what discovery has told it; implements `kubeops.Session`."""

    client: KubeAPI
    resources: dict[tuple[str, str], Resource] = field(default_factory=dict)

    async def send(self, call: Call) -> dict[str, object]:
        try:
            if call.method == "GET":
                return await self.client.get(call.path)
            if call.method == "POST":
                return await self.client.post(call.path, _mapping(call.body))
            if call.method == "PATCH":
                return await self.client.patch(call.path, call.body or {}, call.content_type)
        except StepError as exc:
            if (exc.output or {}).get("status") != 403:
                raise
            raise StepError(
                f"{exc.message} (the daemon's account needs RBAC permission: {call.permission})",
                permanent=True,
                output=exc.output,
            ) from exc
        raise AssertionError(f"no such method: {call.method}")  # pragma: no cover

    async def resource(self, api_version: str, kind: str) -> Resource:
        """The plural and scope of `kind`; cached, so discovery runs once per kind."""
        found = self.resources.get((api_version, kind))
        if found is None:
            found = await self._discover(api_version, kind)
            self.resources[api_version, kind] = found
        return found

    async def _discover(self, api_version: str, kind: str) -> Resource:
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        call = Call(method="GET", path=path, verb="get", resource=f"non-resource URL {path}")
        try:
            listing = await self.send(call)
        except StepError as exc:
            if (exc.output or {}).get("status") == 404:
                raise StepError(
                    f"apiVersion {api_version} is not served by this cluster ({exc.message})",
                    permanent=True,
                ) from exc
            raise
        entries = listing.get("resources")
        top = [
            entry
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, Mapping) and "/" not in str(entry.get("name"))
        ]
        for entry in top:
            if entry.get("kind") == kind:
                return Resource(str(entry["name"]), namespaced=entry.get("namespaced") is True)
        known = ", ".join(sorted(str(e.get("kind")) for e in top)) or "none"
        raise StepError(
            f"apiVersion {api_version} has no kind {kind} (known: {known})", permanent=True
        )


class KubernetesAction:
    """The `kubernetes` kind. Built once by the daemon from `KubeSettings` (or a client factory)."""

    def __init__(
        self,
        kube: KubeSettings | Callable[[], KubeAPI],
        *,
        now: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._factory: Callable[[], KubeAPI] = (
            functools.partial(KubeClient, kube) if isinstance(kube, KubeSettings) else kube
        )
        self._now = now
        self._session: KubeSession | None = None

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        operation = parse(request)
        try:
            if self._session is None:
                self._session = KubeSession(self._factory())
            output = await operation.perform(self._session, rfc3339(self._now()))
        except ConfigError as exc:
            raise StepError(str(exc), permanent=True) from exc
        logger.info(
            "rule %s event %s: step %s: kubernetes %s: %s",
            context.rule,
            context.event_id,
            context.step,
            type(operation).__name__.lower(),
            output,
        )
        return output

    def preview(self, request: Mapping[str, object]) -> dict[str, object]:
        """The rendered step and the write it would send; no request, not even discovery."""
        call = parse(request).preview(rfc3339(self._now()))
        return {**request, **call.shown()}

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.client.close()


def _mapping(body: object) -> Mapping[str, object]:
    if not isinstance(body, Mapping):
        raise AssertionError("a POST body is an object")  # kubeops builds only these
    return body
