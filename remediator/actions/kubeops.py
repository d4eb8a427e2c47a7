"""The operations of the `kubernetes` action, and the API requests each one makes.

This module owns what `restart`, `evict`, `cordon`/`uncordon` and `patch` mean in
requests: a rendered step is parsed into one frozen operation (every problem there is
permanent, since a retry renders the same), which shows the write it would send (`Call`,
what a dry run prints and what a 403 names) and performs itself through a `Session`. The
session, which owns the client, discovery and error wording, lives in
`remediator.actions.kubernetes`; nothing here opens a connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from remediator.actions.base import optional, required
from remediator.actions.kubeclient import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, Body
from remediator.errors import StepError

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
OPERATIONS = ("restart", "evict", "cordon", "uncordon", "patch")
PATCH_TYPES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_MERGE_PATCH, "json": JSON_PATCH}
_WORKLOADS = {
    "deployment": ("Deployment", "deployments"),
    "statefulset": ("StatefulSet", "statefulsets"),
    "daemonset": ("DaemonSet", "daemonsets"),
}
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(rf"{_LABEL.pattern}(\.{_LABEL.pattern})*")
_API_VERSION = re.compile(rf"({_SUBDOMAIN.pattern}/)?v[0-9]+((alpha|beta)[0-9]+)?")
_KIND = re.compile(r"[A-Z][A-Za-z0-9]*")
_INTEGER = re.compile(r"\d+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One API request, with the RBAC permission it needs (verb, resource, namespace)."""

    method: str
    path: str
    body: Body | None = None
    content_type: str = "application/json"
    verb: str
    resource: str  # as RBAC names it: "deployments.apps", "pods/eviction", "nodes"
    namespace: str | None = None

    @property
    def permission(self) -> str:
        where = f"in namespace {self.namespace}" if self.namespace else "(cluster-wide)"
        return f"{self.verb} {self.resource} {where}"

    def shown(self) -> dict[str, object]:
        """The request as a dry run reports it."""
        shown: dict[str, object] = {"method": self.method, "path": self.path}
        if self.body is not None:
            shown.update(content_type=self.content_type, body=self.body)
        return shown


@dataclass(frozen=True, slots=True)
class Resource:
    """What discovery says about a kind: its plural name and whether it is namespaced."""

    plural: str
    namespaced: bool


class Session(Protocol):
    """Requests on behalf of one step: errors worded, discovery cached."""

    async def send(self, call: Call) -> dict[str, object]: ...

    async def resource(self, api_version: str, kind: str) -> Resource: ...


class Operation(Protocol):
    def preview(self, now: str) -> Call:
        """The write this operation sends, without sending anything (no discovery either)."""
        ...

    async def perform(self, session: Session, now: str) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart:
    """`kubectl rollout restart`: a new pod-template annotation makes a new rollout."""

    namespace: str
    kind: str
    plural: str
    name: str

    def preview(self, now: str) -> Call:
        annotations = {RESTARTED_AT: now}
        return Call(
            method="PATCH",
            path=f"/apis/apps/v1/namespaces/{self.namespace}/{self.plural}/{self.name}",
            body={"spec": {"template": {"metadata": {"annotations": annotations}}}},
            content_type=STRATEGIC_MERGE_PATCH,
            verb="patch",
            resource=f"{self.plural}.apps",
            namespace=self.namespace,
        )

    async def perform(self, session: Session, now: str) -> dict[str, object]:
        await session.send(self.preview(now))
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "restarted_at": now,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Evict:
    """The Eviction API (policy/v1): the API server refuses, 429, what a PDB forbids."""

    namespace: str
    pod: str
    grace_period: int | None

    def preview(self, now: str) -> Call:
        body: dict[str, object] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": self.pod, "namespace": self.namespace},
        }
        if self.grace_period is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": self.grace_period}
        return Call(
            method="POST",
            path=f"/api/v1/namespaces/{self.namespace}/pods/{self.pod}/eviction",
            body=body,
            verb="create",
            resource="pods/eviction",
            namespace=self.namespace,
        )

    async def perform(self, session: Session, now: str) -> dict[str, object]:
        output: dict[str, object] = {"pod": self.pod, "namespace": self.namespace}
        try:
            await session.send(self.preview(now))
        except StepError as exc:
            if (exc.output or {}).get("status") != 404:
                raise
            # Already gone (evicted, deleted, rescheduled): what the step wanted holds.
            return output | {"evicted": False, "reason": exc.message}
        return output | {"evicted": True}


@dataclass(frozen=True, slots=True, kw_only=True)
class Cordon:
    """`kubectl cordon`/`uncordon`: read the node, patch `spec.unschedulable` if it differs."""

    node: str
    unschedulable: bool

    @property
    def path(self) -> str:
        return f"/api/v1/nodes/{self.node}"

    def preview(self, now: str) -> Call:
        return Call(
            method="PATCH",
            path=self.path,
            body={"spec": {"unschedulable": self.unschedulable}},
            content_type=MERGE_PATCH,
            verb="patch",
            resource="nodes",
        )

    async def perform(self, session: Session, now: str) -> dict[str, object]:
        node = await session.send(Call(method="GET", path=self.path, verb="get", resource="nodes"))
        spec = node.get("spec")
        current = spec.get("unschedulable") is True if isinstance(spec, Mapping) else False
        if current != self.unschedulable:
            await session.send(self.preview(now))
        return {"node": self.node, "changed": current != self.unschedulable}


@dataclass(frozen=True, slots=True, kw_only=True)
class Patch:
    """Any object, by apiVersion and kind; the plural and scope come from discovery."""

    api_version: str
    kind: str
    namespace: str | None
    name: str
    type: str
    body: Body

    def preview(self, now: str) -> Call:
        unknown = Resource(f"<plural of {self.kind}>", namespaced=self.namespace is not None)
        return self.call(unknown)

    async def perform(self, session: Session, now: str) -> dict[str, object]:
        resource = await session.resource(self.api_version, self.kind)
        if not resource.namespaced and self.namespace is not None:
            raise StepError(
                f"namespace: {self.kind} ({self.api_version}) is cluster-scoped; remove it",
                permanent=True,
            )
        patched = await session.send(self.call(resource))
        metadata = patched.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        output: dict[str, object] = {"kind": self.kind, "name": self.name}
        if resource.namespaced:
            output["namespace"] = self.namespace or "default"
        return output | {"resource_version": str(version) if version is not None else None}

    def call(self, resource: Resource) -> Call:
        group, _, version = self.api_version.rpartition("/")
        path = f"/apis/{self.api_version}" if group else f"/api/{version}"
        namespace = (self.namespace or "default") if resource.namespaced else None
        if namespace is not None:
            path += f"/namespaces/{namespace}"
        return Call(
            method="PATCH",
            path=f"{path}/{resource.plural}/{quote(self.name, safe=':@')}",
            body=self.body,
            content_type=PATCH_TYPES[self.type],
            verb="patch",
            resource=f"{resource.plural}.{group}" if group else resource.plural,
            namespace=namespace,
        )


def parse(request: Mapping[str, object]) -> Operation:
    """The one operation a rendered `kubernetes` step asks for."""
    given = [key for key in request if key in OPERATIONS]
    unknown = sorted(str(key) for key in request if key not in OPERATIONS)
    if unknown:
        raise StepError(f"unknown operation(s): {', '.join(unknown)}", permanent=True)
    if len(given) != 1:
        raise StepError(f"give exactly one of {', '.join(OPERATIONS)}", permanent=True)
    key = given[0]
    fields = required(request, key, Mapping)
    parser = _PARSERS[key]
    try:
        return parser(fields)
    except StepError as exc:
        raise StepError(f"{key}.{exc.message}", permanent=True) from exc


def _restart(fields: Mapping[str, object]) -> Operation:
    _only(fields, {"namespace", *_WORKLOADS})
    given = [key for key in _WORKLOADS if fields.get(key) is not None]
    if len(given) != 1:
        raise StepError("workload: give exactly one of deployment, statefulset, daemonset")
    kind, plural = _WORKLOADS[given[0]]
    name = _name(fields, given[0])
    return Restart(namespace=_namespace(fields), kind=kind, plural=plural, name=name)


def _evict(fields: Mapping[str, object]) -> Operation:
    _only(fields, {"namespace", "pod", "grace_period"})
    grace = optional(fields, "grace_period", (int, str))
    if grace is not None and not (isinstance(grace, int) and not isinstance(grace, bool)):
        if not (isinstance(grace, str) and _INTEGER.fullmatch(grace.strip())):
            raise StepError(f"grace_period: expected seconds (an integer), got {grace!r}")
        grace = int(grace)
    if grace is not None and grace < 0:
        raise StepError(f"grace_period: must not be negative, got {grace}")
    return Evict(namespace=_namespace(fields), pod=_name(fields, "pod"), grace_period=grace)


def _cordon(fields: Mapping[str, object]) -> Operation:
    _only(fields, {"node"})
    return Cordon(node=_name(fields, "node"), unschedulable=True)


def _uncordon(fields: Mapping[str, object]) -> Operation:
    _only(fields, {"node"})
    return Cordon(node=_name(fields, "node"), unschedulable=False)


def _patch(fields: Mapping[str, object]) -> Operation:
    _only(fields, {"api_version", "kind", "namespace", "name", "type", "body"})
    api_version, kind = required(fields, "api_version", str), required(fields, "kind", str)
    if not _API_VERSION.fullmatch(api_version):
        raise StepError(f"api_version: {api_version!r} is not v1 or group/version")
    if not _KIND.fullmatch(kind):
        raise StepError(f"kind: {kind!r} is not a Kubernetes kind (e.g. ConfigMap)")
    name = required(fields, "name", str)
    if not name or len(name) > 253 or "/" in name or name in (".", ".."):
        raise StepError(f"name: {name!r} is not a Kubernetes object name")
    patch_type = required(fields, "type", str)
    if patch_type not in PATCH_TYPES:
        raise StepError(f"type: {patch_type!r} is not one of {', '.join(PATCH_TYPES)}")
    return Patch(
        api_version=api_version,
        kind=kind,
        namespace=_namespace(fields) if fields.get("namespace") is not None else None,
        name=name,
        type=patch_type,
        body=_patch_body(fields, patch_type),
    )


def _patch_body(fields: Mapping[str, object], patch_type: str) -> Body:
    body = fields.get("body")
    if patch_type != "json":
        if not isinstance(body, Mapping):
            raise StepError(f"body: a {patch_type} patch is a mapping")
        return body
    if not isinstance(body, Sequence) or isinstance(body, str) or not body:
        raise StepError("body: a json patch is a non-empty list of operations")
    for index, operation in enumerate(body):
        if not isinstance(operation, Mapping) or not all(
            isinstance(operation.get(key), str) for key in ("op", "path")
        ):
            raise StepError(f"body[{index}]: a json patch operation needs op and path")
    return body


_PARSERS = {
    "restart": _restart,
    "evict": _evict,
    "cordon": _cordon,
    "uncordon": _uncordon,
    "patch": _patch,
}


def _only(fields: Mapping[str, object], known: set[str]) -> None:
    unknown = sorted(str(key) for key in fields if key not in known)
    if unknown:
        raise StepError(f"{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")


def _namespace(fields: Mapping[str, object]) -> str:
    namespace = optional(fields, "namespace", str) or "default"
    if not _LABEL.fullmatch(namespace) or len(namespace) > 63:
        raise StepError(f"namespace: {namespace!r} is not a Kubernetes namespace name")
    return namespace


def _name(fields: Mapping[str, object], key: str) -> str:
    name = required(fields, key, str)
    if not _SUBDOMAIN.fullmatch(name) or len(name) > 253:
        raise StepError(f"{key}: {name!r} is not a Kubernetes object name")
    return name
