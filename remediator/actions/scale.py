"""The `scale` action: change how many replicas a Deployment or StatefulSet runs.

It reads the workload's `scale` subresource, computes the target (`step` or `replicas`,
clamped to `min_replicas`/`max_replicas`) and writes it back with the resourceVersion it
read, so a concurrent writer causes a 409 and a fresh read instead of a lost update. When
a HorizontalPodAutoscaler owns the workload, a direct write would be undone at its next
sync, so the action moves the HPA's `minReplicas` floor instead. A `step` never moves the
count (or the floor) against its sign: a scale-out rule finding the workload already above
`max_replicas` leaves it alone rather than scaling it in. The API client lives in
`remediator.kube`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from remediator.actions.base import StepContext, optional
from remediator.actions.kubeclient import MERGE_PATCH, Conflict, KubeAPI, KubeClient, KubeSettings
from remediator.errors import ConfigError, StepError

logger = logging.getLogger(__name__)

MAX_CONFLICTS = 5  # reads and writes per step before a conflict becomes a (transient) failure
_KINDS = {
    "deployment": ("Deployment", "deployments"),
    "statefulset": ("StatefulSet", "statefulsets"),
}
_FIELDS = frozenset(
    {"provider", "namespace", *_KINDS, "step", "replicas", "min_replicas", "max_replicas"}
)
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(rf"{_LABEL.pattern}(\.{_LABEL.pattern})*")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """The Deployment or StatefulSet a step scales."""

    namespace: str
    kind: str  # Deployment or StatefulSet
    plural: str
    name: str

    @property
    def scale_path(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/{self.plural}/{self.name}/scale"

    @property
    def autoscalers_path(self) -> str:
        return f"/apis/autoscaling/v2/namespaces/{self.namespace}/horizontalpodautoscalers"

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """`step` or `replicas`, and the bounds the result must stay in."""

    step: int | None
    replicas: int | None
    lowest: int
    highest: int | None

    def target(self, current: int) -> int:
        """The new replica count for a workload that runs `current`."""
        return self._settle(current, current)

    def floor(self, current: int, minimum: int) -> int:
        """The new minReplicas for an HPA with floor `minimum` over `current` replicas."""
        return self._settle(current, minimum)

    def _settle(self, current: int, value: int) -> int:
        if self.replicas is not None:
            return self._clamp(self.replicas)
        step = self.step or 0
        wanted = self._clamp(current + step)
        if step > 0:
            return max(value, wanted)
        return min(value, wanted) if step < 0 else value

    def _clamp(self, value: int) -> int:
        value = max(self.lowest, value)
        return value if self.highest is None else min(self.highest, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleRequest:
    workload: Workload
    change: Change

    @classmethod
    def parse(cls, request: Mapping[str, object]) -> ScaleRequest:
        """Check the rendered step; every problem here is permanent (a retry renders the same)."""
        unknown = sorted(set(request) - _FIELDS)
        if unknown:
            raise StepError(f"unknown field(s): {', '.join(unknown)}", permanent=True)
        provider = optional(request, "provider", str) or "kubernetes"
        if provider != "kubernetes":
            raise StepError(
                f"provider: {provider!r} is not supported (only kubernetes)", permanent=True
            )
        return cls(workload=_workload(request), change=_change(request))


@dataclass(frozen=True, slots=True, kw_only=True)
class Autoscaler:
    """The parts of a HorizontalPodAutoscaler the action reads and writes."""

    name: str
    path: str
    min_replicas: int
    max_replicas: int
    resource_version: str


class ScaleAction:
    """The `scale` kind. Built once by the daemon from `KubeSettings` (or a client factory)."""

    def __init__(self, kube: KubeSettings | Callable[[], KubeAPI]) -> None:
        self._factory: Callable[[], KubeAPI] = (
            functools.partial(KubeClient, kube) if isinstance(kube, KubeSettings) else kube
        )
        self._client: KubeAPI | None = None

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        scale = ScaleRequest.parse(request)
        if self._client is None:
            self._client = self._factory()
        for _ in range(MAX_CONFLICTS):
            try:
                return await _scale_once(self._client, scale, context)
            except Conflict as exc:
                logger.info(
                    "rule %s event %s: %s changed while being scaled, reading it again: %s",
                    context.rule,
                    context.event_id,
                    scale.workload,
                    exc.message,
                )
            except ConfigError as exc:
                raise StepError(str(exc), permanent=True) from exc
        raise StepError(
            f"{scale.workload}: still conflicting with other writers after {MAX_CONFLICTS} attempts"
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


async def _scale_once(
    client: KubeAPI, scale: ScaleRequest, context: StepContext
) -> dict[str, object]:
    """One read-compute-write round; a Conflict from the write means another round."""
    workload = scale.workload
    autoscaler = await _find_autoscaler(client, workload)
    read = await client.get(workload.scale_path)
    current = _int_at(read, "spec", "replicas", default=0)
    if autoscaler is not None:
        return await _move_floor(client, scale, autoscaler, current, context)
    target = scale.change.target(current)
    if target != current:
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": workload.name,
                "namespace": workload.namespace,
                "resourceVersion": _str_at(read, "metadata", "resourceVersion"),
            },
            "spec": {"replicas": target},
        }
        await client.put(workload.scale_path, body)
        logger.info(
            "rule %s event %s: scaled %s from %d to %d",
            context.rule,
            context.event_id,
            workload,
            current,
            target,
        )
    return _output(workload, current, target, via="scale")


async def _move_floor(
    client: KubeAPI, scale: ScaleRequest, hpa: Autoscaler, current: int, context: StepContext
) -> dict[str, object]:
    """Raise or lower the HPA's minReplicas (within 1..maxReplicas); `from`/`to` are floors."""
    floor = min(hpa.max_replicas, max(1, scale.change.floor(current, hpa.min_replicas)))
    if floor != hpa.min_replicas:
        patch = {
            "metadata": {"resourceVersion": hpa.resource_version},
            "spec": {"minReplicas": floor},
        }
        await client.patch(hpa.path, patch, MERGE_PATCH)
        logger.info(
            "rule %s event %s: %s is autoscaled by %s: minReplicas %d -> %d",
            context.rule,
            context.event_id,
            scale.workload,
            hpa.name,
            hpa.min_replicas,
            floor,
        )
    output = _output(scale.workload, hpa.min_replicas, floor, via="hpa")
    output.update(hpa=hpa.name, replicas=current)
    return output


async def _find_autoscaler(client: KubeAPI, workload: Workload) -> Autoscaler | None:
    listing = await client.get(workload.autoscalers_path)
    items = listing.get("items")
    candidates = items if isinstance(items, list) else []
    found = [_autoscaler(item, workload) for item in candidates if _targets(item, workload)]
    if len(found) > 1:
        names = ", ".join(hpa.name for hpa in found)
        raise StepError(
            f"{workload}: several HorizontalPodAutoscalers target it ({names})", permanent=True
        )
    return found[0] if found else None


def _targets(item: object, workload: Workload) -> bool:
    ref = _mapping_at(item, "spec", "scaleTargetRef")
    api_version = ref.get("apiVersion")
    return (
        ref.get("kind") == workload.kind
        and ref.get("name") == workload.name
        and (api_version is None or str(api_version).startswith("apps/"))
    )


def _autoscaler(item: object, workload: Workload) -> Autoscaler:
    name = _str_at(item, "metadata", "name")
    return Autoscaler(
        name=name,
        path=f"{workload.autoscalers_path}/{name}",
        min_replicas=_int_at(item, "spec", "minReplicas", default=1),
        max_replicas=_int_at(item, "spec", "maxReplicas", default=1),
        resource_version=_str_at(item, "metadata", "resourceVersion"),
    )


def _output(workload: Workload, old: int, new: int, *, via: str) -> dict[str, object]:
    return {
        "from": old,
        "to": new,
        "changed": old != new,
        "via": via,
        "namespace": workload.namespace,
        "kind": workload.kind,
        "name": workload.name,
    }


def _workload(request: Mapping[str, object]) -> Workload:
    given = [key for key in _KINDS if request.get(key) is not None]
    if len(given) != 1:
        raise StepError("give exactly one of deployment or statefulset", permanent=True)
    namespace = optional(request, "namespace", str) or "default"
    name = optional(request, given[0], str) or ""
    if not _LABEL.fullmatch(namespace) or len(namespace) > 63:
        raise StepError(
            f"namespace: {namespace!r} is not a Kubernetes namespace name", permanent=True
        )
    if not _SUBDOMAIN.fullmatch(name) or len(name) > 253:
        raise StepError(f"{given[0]}: {name!r} is not a Kubernetes object name", permanent=True)
    kind, plural = _KINDS[given[0]]
    return Workload(namespace=namespace, kind=kind, plural=plural, name=name)


def _change(request: Mapping[str, object]) -> Change:
    step, replicas = _integer(request, "step"), _integer(request, "replicas")
    if (step is None) == (replicas is None):
        raise StepError("give exactly one of step or replicas", permanent=True)
    lowest, highest = _integer(request, "min_replicas"), _integer(request, "max_replicas")
    for name, value in (
        ("replicas", replicas),
        ("min_replicas", lowest),
        ("max_replicas", highest),
    ):
        if value is not None and value < 0:
            raise StepError(f"{name}: must not be negative, got {value}", permanent=True)
    if lowest is not None and highest is not None and lowest > highest:
        raise StepError(
            f"min_replicas ({lowest}) is above max_replicas ({highest})", permanent=True
        )
    return Change(step=step, replicas=replicas, lowest=lowest or 0, highest=highest)


def _integer(request: Mapping[str, object], name: str) -> int | None:
    """An int, or a string of digits (event labels are strings); never a bool or a float."""
    value = optional(request, name, (int, str))
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise StepError(f"{name}: expected an integer, got {value!r}", permanent=True)


def _mapping_at(value: object, *keys: str) -> Mapping[str, object]:
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _int_at(value: object, *keys: str, default: int) -> int:
    found = _mapping_at(value, *keys[:-1]).get(keys[-1], default)
    if not isinstance(found, int) or isinstance(found, bool):
        raise StepError(f"unexpected answer from Kubernetes: {'.'.join(keys)} is {found!r}")
    return found


def _str_at(value: object, *keys: str) -> str:
    found = _mapping_at(value, *keys[:-1]).get(keys[-1])
    if not isinstance(found, str):
        raise StepError(f"unexpected answer from Kubernetes: {'.'.join(keys)} is {found!r}")
    return found
