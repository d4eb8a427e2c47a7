"""Whole objects for the fake Kubernetes API: discovery, PATCH, node reads, pod evictions.

`FakeKubeAPI` (tests/support/kube_api.py) mounts an `ObjectStore` beside its scale
subresource, behind the same token/client-certificate check and fault injection. The
store answers like the API server for what the `kubernetes` action uses: discovery
(`/api/v1`, `/apis/<group>/<version>`, from a fixed table with a custom resource
`widgets.example.com`), GET and PATCH of objects (merge, strategic-merge for built-in
kinds only, JSON patch; resourceVersion bumped, 409 on a stale one), and the Eviction
subresource with PodDisruptionBudgets that refuse with 429. RBAC denials produce the
API server's own 403 wording, so tests can check what the action adds to it.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
BUILT_IN = frozenset({"", "apps", "policy"})  # groups strategic merge works for
# group/version -> (plural, kind, namespaced); subresources as the real server lists them.
DISCOVERY: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("nodes", "Node", False),
        ("nodes/status", "Node", False),
        ("pods", "Pod", True),
        ("pods/eviction", "Eviction", True),
    ],
    "apps/v1": [
        ("daemonsets", "DaemonSet", True),
        ("deployments", "Deployment", True),
        ("deployments/scale", "Scale", True),
        ("statefulsets", "StatefulSet", True),
    ],
    "example.com/v1": [("widgets/status", "Widget", True), ("widgets", "Widget", True)],
}
Status = Callable[[int, str], web.Response]


@dataclass
class ObjectStore:
    """Objects by URL path (`/apis/apps/v1/namespaces/prod/deployments/web`)."""

    status: Status
    versions: itertools.count[int]
    objects: dict[str, dict[str, object]] = field(default_factory=dict)
    pdb_refusals: dict[str, int] = field(default_factory=dict)  # namespace -> 429s to give
    evictions: list[tuple[str, str, object]] = field(default_factory=list)  # ns, pod, grace
    denied: set[tuple[str, str]] = field(default_factory=set)  # (verb, resource)
    discoveries: list[str] = field(default_factory=list)

    # -- state ---------------------------------------------------------------------------

    def add(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> str:
        """Store an empty object; returns its path."""
        plural = next(p for p, k, _ in DISCOVERY[api_version] if k == kind and "/" not in p)
        base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        path = (
            f"{base}/namespaces/{namespace}/{plural}/{name}"
            if namespace
            else f"{base}/{plural}/{name}"
        )
        metadata = {"name": name, "resourceVersion": str(next(self.versions))}
        if namespace:
            metadata["namespace"] = namespace
        self.objects[path] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
        return path

    def add_pdb(self, namespace: str, refusals: int) -> None:
        """A PodDisruptionBudget that refuses the next `refusals` evictions in `namespace`."""
        self.pdb_refusals[namespace] = refusals

    def deny(self, verb: str, resource: str) -> None:
        """RBAC: the caller may not `verb` `resource` (as RBAC names it, e.g. pods/eviction)."""
        self.denied.add((verb, resource))

    # -- routes --------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/{version}", self._discover)
        router.add_get("/apis/{group}/{version}", self._discover)
        router.add_post("/api/v1/namespaces/{namespace}/pods/{name}/eviction", self._evict)
        for route in (
            "/api/v1/{plural}/{name}",
            "/api/v1/namespaces/{namespace}/{plural}/{name}",
            "/apis/{group}/{version}/{plural}/{name}",
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
        ):
            router.add_get(route, self._get)
            router.add_patch(route, self._patch)

    async def _discover(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        group_version = f"{info['group']}/{info['version']}" if "group" in info else info["version"]
        self.discoveries.append(group_version)
        if group_version not in DISCOVERY:
            return self.status(404, "the server could not find the requested resource")
        resources = [
            {"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind,
             "verbs": ["get", "patch"]}
            for plural, kind, namespaced in DISCOVERY[group_version]
        ]  # fmt: skip
        return web.json_response(
            {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}
        )

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._forbidden(request, "get")) is not None:
            return denied
        found = self.objects.get(request.path)
        return web.json_response(found) if found else self._missing(request)

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._forbidden(request, "patch")) is not None:
            return denied
        found = self.objects.get(request.path)
        if found is None:
            return self._missing(request)
        kind = request.content_type
        if kind == STRATEGIC and request.match_info.get("group", "") not in BUILT_IN:
            return self.status(415, f"the body of the request was in an unknown format - "
                               f"accepted media types include: {JSON_PATCH}, {MERGE}")  # fmt: skip
        try:
            patch = json.loads(await request.read())
            patched = (
                apply_json_patch(found, patch)
                if kind == JSON_PATCH
                else merge(found, patch)
                if kind in (MERGE, STRATEGIC)
                else None
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return self.status(422, f"the patch could not be applied: {exc!r}")
        if patched is None:
            return self.status(415, f"unsupported patch type {kind}")
        old, new = _version(found), _version(patched)
        if new != old:
            return self.status(409, "the object has been modified; please apply your changes "
                               "to the latest version and try again")  # fmt: skip
        metadata = patched["metadata"]
        assert isinstance(metadata, dict)
        metadata["resourceVersion"] = str(next(self.versions))
        self.objects[request.path] = patched
        return web.json_response(patched)

    async def _evict(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if (denied := self._forbidden(request, "create", "pods/eviction")) is not None:
            return denied
        pod = f"/api/v1/namespaces/{namespace}/pods/{name}"
        if pod not in self.objects:
            return self.status(404, f'pods "{name}" not found')
        body = json.loads(await request.read())
        metadata = body.get("metadata") or {}
        if (body.get("apiVersion"), body.get("kind")) != ("policy/v1", "Eviction") or metadata.get(
            "name"
        ) != name:
            return self.status(400, "name in URL does not match name in Eviction object")
        if self.pdb_refusals.get(namespace, 0) > 0:
            self.pdb_refusals[namespace] -= 1
            response = self.status(
                429, "Cannot evict pod as it would violate the pod's disruption budget."
            )
            response.headers["Retry-After"] = "10"
            return response
        del self.objects[pod]
        grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
        self.evictions.append((namespace, name, grace))
        return web.json_response(
            {"kind": "Status", "apiVersion": "v1", "status": "Success"}, status=201
        )

    def _forbidden(
        self, request: web.Request, verb: str, resource: str | None = None
    ) -> web.Response | None:
        """The API server's 403 for a denied request, in its own words."""
        info = request.match_info
        group = info.get("group", "")
        resource = resource or info["plural"]
        if (verb, resource) not in self.denied:
            return None
        name, namespace = info["name"], info.get("namespace")
        where = f' in the namespace "{namespace}"' if namespace else ""
        return self.status(
            403,
            f'{resource.split("/")[0]} "{name}" is forbidden: User '
            f'"system:serviceaccount:ops:remediator" cannot {verb} resource "{resource}" in '
            f'API group "{group}"{where}',
        )

    def _missing(self, request: web.Request) -> web.Response:
        info = request.match_info
        return self.status(404, f'{info["plural"]} "{info["name"]}" not found')


def merge(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch (strategic merge is the same for the maps tests patch)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def apply_json_patch(target: dict[str, object], operations: list[dict[str, object]]) -> object:
    """RFC 6902 add, replace, remove and test; a failed test raises (the server says 422)."""
    document: object = copy.deepcopy(target)
    for operation in operations:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in str(operation["path"]).split("/")[1:]
        ]
        parent = document
        for part in parents:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]  # type: ignore[index]
        op = operation["op"]
        if op == "test":
            if parent[last] != operation["value"]:  # type: ignore[index]
                raise ValueError(f"test failed at {operation['path']}")
        elif op == "remove":
            del parent[last]  # type: ignore[attr-defined]
        elif op in ("add", "replace"):
            parent[last] = copy.deepcopy(operation["value"])  # type: ignore[index]
        else:
            raise ValueError(f"unsupported op {op}")
    return document


def _version(document: object) -> object:
    metadata = document.get("metadata") if isinstance(document, dict) else None
    return metadata.get("resourceVersion") if isinstance(metadata, dict) else None
