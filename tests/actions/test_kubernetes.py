"""The `kubernetes` action over real HTTPS against the fake API server (tokens, client certs)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
import yaml

from remediator.actions.base import StepContext
from remediator.actions.kubeclient import KubeSettings
from remediator.actions.kubernetes import KubernetesAction
from remediator.errors import StepError
from tests.support.attempts import attempts, failure
from tests.support.kube_api import FakeKubeAPI

CONTEXT = StepContext(event_id="e-1", trace_id="t-1", rule="fix", step="k8s", timeout=30.0)
NOW = dt.datetime(2026, 12, 3, 9, 30, 5, 123456, tzinfo=dt.UTC)
RESTARTED_AT = "2026-12-03T09:30:05Z"
WEB = "/apis/apps/v1/namespaces/prod/deployments/web"
POD = "/api/v1/namespaces/prod/pods/web-1"
EVICTION = POD + "/eviction"
NODE = "/api/v1/nodes/node-a"
CONFIG = "/api/v1/namespaces/prod/configmaps/flags"
WIDGET = "/apis/example.com/v1/namespaces/prod/widgets/w1"


def explicit(api: FakeKubeAPI) -> KubeSettings:
    section = {"api": api.url, "token": api.token, "ca": str(api.pki.ca_cert)}
    return KubeSettings.from_config(section, {})


@pytest.fixture
async def action(api: FakeKubeAPI) -> AsyncIterator[KubernetesAction]:
    kubernetes = KubernetesAction(explicit(api), now=lambda: NOW)
    yield kubernetes
    await kubernetes.close()


def annotations(obj: Mapping[str, object]) -> object:
    return obj["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]


# -- restart ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind", "plural"),
    [
        ("deployment", "Deployment", "deployments"),
        ("statefulset", "StatefulSet", "statefulsets"),
        ("daemonset", "DaemonSet", "daemonsets"),
    ],
)
async def test_restart_patches_the_pod_template_annotation(
    api: FakeKubeAPI, action: KubernetesAction, key: str, kind: str, plural: str
) -> None:
    path = api.objects.add("apps/v1", kind, "web", "prod")

    output = await action.run({"restart": {"namespace": "prod", key: "web"}}, CONTEXT)

    assert output == {
        "kind": kind,
        "namespace": "prod",
        "name": "web",
        "restarted_at": RESTARTED_AT,
    }
    assert path == f"/apis/apps/v1/namespaces/prod/{plural}/web"
    assert api.writes == [("PATCH", path)]
    assert annotations(api.objects.objects[path]) == {
        "kubectl.kubernetes.io/restartedAt": RESTARTED_AT
    }
    assert set(api.identities) == {"token"}


async def test_restart_conflict_is_transient_and_retried(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("apps/v1", "Deployment", "web", "prod")
    api.fail_next(WEB, 409, message="the object has been modified")

    output, tries = await attempts(
        action, {"restart": {"namespace": "prod", "deployment": "web"}}, CONTEXT
    )

    assert tries == 2
    assert isinstance(output, dict) and output["restarted_at"] == RESTARTED_AT
    assert api.writes == [("PATCH", WEB)] * 2


async def test_restart_of_a_missing_deployment_is_permanent(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    error, tries = await attempts(
        action, {"restart": {"namespace": "prod", "deployment": "web"}}, CONTEXT
    )

    assert isinstance(error, StepError) and error.permanent and tries == 1
    assert 'deployments "web" not found' in error.message


# -- evict ------------------------------------------------------------------------------


async def test_evict_uses_the_eviction_api(api: FakeKubeAPI, action: KubernetesAction) -> None:
    api.objects.add("v1", "Pod", "web-1", "prod")

    request = {"evict": {"namespace": "prod", "pod": "web-1", "grace_period": "30"}}
    output = await action.run(request, CONTEXT)

    assert output == {"pod": "web-1", "namespace": "prod", "evicted": True}
    assert api.writes == [("POST", EVICTION)]
    assert api.objects.evictions == [("prod", "web-1", 30)]


async def test_a_disruption_budget_refusal_is_retried(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("v1", "Pod", "web-1", "prod")
    api.objects.add_pdb("prod", refusals=2)

    first = await failure(action, {"evict": {"namespace": "prod", "pod": "web-1"}}, CONTEXT)
    output, tries = await attempts(
        action, {"evict": {"namespace": "prod", "pod": "web-1"}}, CONTEXT
    )

    assert not first.permanent and first.retry_after == 10
    assert "disruption budget" in first.message
    assert (output, tries) == ({"pod": "web-1", "namespace": "prod", "evicted": True}, 2)
    assert api.writes == [("POST", EVICTION)] * 3
    assert api.objects.evictions == [("prod", "web-1", None)]


async def test_a_pdb_that_keeps_refusing_fails_after_the_attempts(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("v1", "Pod", "web-1", "prod")
    api.objects.add_pdb("prod", refusals=5)

    error, tries = await attempts(action, {"evict": {"namespace": "prod", "pod": "web-1"}}, CONTEXT)

    assert isinstance(error, StepError) and not error.permanent and tries == 3
    assert POD in api.objects.objects  # still running: the budget held


async def test_evicting_a_pod_that_is_gone_changes_nothing(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    output = await action.run({"evict": {"namespace": "prod", "pod": "web-1"}}, CONTEXT)

    assert output["evicted"] is False
    assert 'pods "web-1" not found' in str(output["reason"])


async def test_forbidden_eviction_is_permanent_and_names_the_permission(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("v1", "Pod", "web-1", "prod")
    api.objects.deny("create", "pods/eviction")

    error, tries = await attempts(action, {"evict": {"namespace": "prod", "pod": "web-1"}}, CONTEXT)

    assert isinstance(error, StepError) and error.permanent and tries == 1
    assert error.output == {"status": 403}
    assert 'cannot create resource "pods/eviction"' in error.message  # the API's Status
    assert "needs RBAC permission: create pods/eviction in namespace prod" in error.message
    assert f"POST {EVICTION}: HTTP 403" in error.message  # what was attempted


# -- cordon / uncordon ------------------------------------------------------------------


async def test_cordon_then_cordon_again_then_uncordon(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("v1", "Node", "node-a")

    first = await action.run({"cordon": {"node": "node-a"}}, CONTEXT)
    again = await action.run({"cordon": {"node": "node-a"}}, CONTEXT)
    assert api.objects.objects[NODE]["spec"] == {"unschedulable": True}
    back = await action.run({"uncordon": {"node": "node-a"}}, CONTEXT)

    assert (first, again, back) == (
        {"node": "node-a", "changed": True},
        {"node": "node-a", "changed": False},
        {"node": "node-a", "changed": True},
    )
    assert api.objects.objects[NODE]["spec"] == {"unschedulable": False}
    reads_and_writes = [("GET", NODE), ("PATCH", NODE), ("GET", NODE), ("GET", NODE)]
    assert api.requests == [*reads_and_writes, ("PATCH", NODE)]


async def test_uncordon_of_a_schedulable_node_writes_nothing(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("v1", "Node", "node-a")

    output = await action.run({"uncordon": {"node": "node-a"}}, CONTEXT)

    assert output == {"node": "node-a", "changed": False}
    assert api.writes == []


async def test_forbidden_node_read_names_the_cluster_permission(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("v1", "Node", "node-a")
    api.objects.deny("get", "nodes")

    error = await failure(action, {"cordon": {"node": "node-a"}}, CONTEXT)

    assert error.permanent
    assert "needs RBAC permission: get nodes (cluster-wide)" in error.message


# -- patch ------------------------------------------------------------------------------


async def test_merge_patch_of_a_configmap_through_discovery(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("v1", "ConfigMap", "flags", "prod")
    patch = {
        "api_version": "v1",
        "kind": "ConfigMap",
        "namespace": "prod",
        "name": "flags",
        "type": "merge",
        "body": {"data": {"feature-x": "off"}},
    }

    first = await action.run({"patch": patch}, CONTEXT)
    second = await action.run({"patch": patch | {"body": {"data": {"feature-y": "on"}}}}, CONTEXT)

    stored = api.objects.objects[CONFIG]
    assert stored["data"] == {"feature-x": "off", "feature-y": "on"}
    assert second == {
        "kind": "ConfigMap",
        "name": "flags",
        "namespace": "prod",
        "resource_version": stored["metadata"]["resourceVersion"],  # type: ignore[index]
    }
    assert first["resource_version"] != second["resource_version"]
    assert api.objects.discoveries == ["v1"]  # cached for the second step
    assert api.requests == [("GET", "/api/v1"), ("PATCH", CONFIG), ("PATCH", CONFIG)]


async def test_json_patch_of_a_custom_resource(api: FakeKubeAPI, action: KubernetesAction) -> None:
    api.objects.add("example.com/v1", "Widget", "w1", "prod")
    body = [
        {"op": "add", "path": "/spec", "value": {"size": 3}},
        {"op": "replace", "path": "/spec/size", "value": 5},
    ]
    request = {
        "api_version": "example.com/v1",
        "kind": "Widget",
        "namespace": "prod",
        "name": "w1",
        "type": "json",
        "body": body,
    }

    output = await action.run({"patch": request}, CONTEXT)

    assert api.objects.objects[WIDGET]["spec"] == {"size": 5}
    assert (
        output["resource_version"]
        == api.objects.objects[WIDGET]["metadata"][  # type: ignore[index]
            "resourceVersion"
        ]
    )
    assert api.requests == [("GET", "/apis/example.com/v1"), ("PATCH", WIDGET)]  # not /status


async def test_strategic_patch_of_a_custom_resource_is_refused_permanently(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("example.com/v1", "Widget", "w1", "prod")
    request = {
        "api_version": "example.com/v1",
        "kind": "Widget",
        "namespace": "prod",
        "name": "w1",
        "type": "strategic",
        "body": {"spec": {"size": 1}},
    }

    error, tries = await attempts(action, {"patch": request}, CONTEXT)

    assert isinstance(error, StepError) and error.permanent and tries == 1
    assert "HTTP 415" in error.message


async def test_patch_of_a_cluster_scoped_object(api: FakeKubeAPI, action: KubernetesAction) -> None:
    api.objects.add("v1", "Node", "node-a")
    request = {
        "api_version": "v1",
        "kind": "Node",
        "name": "node-a",
        "type": "strategic",
        "body": {"metadata": {"labels": {"remediator/quarantine": "true"}}},
    }

    output = await action.run({"patch": request}, CONTEXT)
    error = await failure(action, {"patch": request | {"namespace": "prod"}}, CONTEXT)

    assert set(output) == {"kind", "name", "resource_version"}
    assert api.writes == [("PATCH", NODE)]
    assert error.permanent and "cluster-scoped" in error.message


@pytest.mark.parametrize(
    ("api_version", "kind", "complaint"),
    [
        ("v1", "Gadget", "apiVersion v1 has no kind Gadget (known: ConfigMap, Node, Pod)"),
        ("nowhere.io/v1", "Gadget", "apiVersion nowhere.io/v1 is not served by this cluster"),
    ],
)
async def test_unknown_kinds_are_permanent(
    api: FakeKubeAPI, action: KubernetesAction, api_version: str, kind: str, complaint: str
) -> None:
    request = {"api_version": api_version, "kind": kind, "name": "x", "type": "merge", "body": {}}

    error, tries = await attempts(action, {"patch": request}, CONTEXT)

    assert isinstance(error, StepError) and error.permanent and tries == 1
    assert complaint in error.message
    assert api.writes == []


async def test_forbidden_patch_names_the_permission(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("v1", "ConfigMap", "flags", "prod")
    api.objects.deny("patch", "configmaps")
    request = {
        "api_version": "v1",
        "kind": "ConfigMap",
        "namespace": "prod",
        "name": "flags",
        "type": "merge",
        "body": {"data": {"a": "b"}},
    }

    error = await failure(action, {"patch": request}, CONTEXT)

    assert error.permanent
    assert "needs RBAC permission: patch configmaps in namespace prod" in error.message


async def test_discovery_unavailable_is_transient(
    api: FakeKubeAPI, action: KubernetesAction
) -> None:
    api.objects.add("apps/v1", "Deployment", "web", "prod")
    api.fail_next("/apis/apps/v1", 503, times=2)
    request = {
        "api_version": "apps/v1",
        "kind": "Deployment",
        "namespace": "prod",
        "name": "web",
        "type": "merge",
        "body": {"metadata": {"labels": {"paused-by": "remediator"}}},
    }

    output, tries = await attempts(action, {"patch": request}, CONTEXT)

    assert tries == 3 and isinstance(output, dict)
    assert api.writes == [("PATCH", WEB)]


# -- bad requests, dry run --------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "complaint"),
    [
        ({}, "give exactly one of restart, evict, cordon, uncordon, patch"),
        ({"cordon": {"node": "a"}, "uncordon": {"node": "a"}}, "give exactly one of"),
        ({"drain": {"node": "a"}}, "unknown operation(s): drain"),
        ({"restart": {"deployment": "web", "daemonset": "x"}}, "restart.workload: give exactly"),
        ({"restart": {"deployment": "../web"}}, "restart.deployment: '../web' is not"),
        ({"evict": {"pod": "p", "grace_period": "soon"}}, "evict.grace_period: expected"),
        ({"evict": {"pod": "p", "namespace": "Prod"}}, "evict.namespace: 'Prod' is not"),
        ({"cordon": {"node": "a", "force": True}}, "cordon.force: unknown field"),
        ({"cordon": {}}, "cordon.node: required"),
        (
            {
                "patch": {
                    "api_version": "v1",
                    "kind": "Pod",
                    "name": "p",
                    "type": "json",
                    "body": {},
                }
            },
            "patch.body: a json patch is a non-empty list",
        ),
        (
            {"patch": {"api_version": "v1", "kind": "Pod", "name": "p", "type": "put", "body": {}}},
            "patch.type: 'put' is not one of merge, strategic, json",
        ),
        (
            {"patch": {"api_version": "/v1", "kind": "Pod", "name": "p", "type": "merge"}},
            "patch.api_version: '/v1' is not v1 or group/version",
        ),
    ],
)
async def test_bad_requests_are_permanent_and_send_nothing(
    api: FakeKubeAPI, action: KubernetesAction, request_: dict[str, object], complaint: str
) -> None:
    error = await failure(action, request_, CONTEXT)

    assert error.permanent
    assert complaint in error.message
    assert api.requests == []


def test_preview_shows_the_request_and_sends_nothing() -> None:
    def no_client() -> object:
        raise AssertionError("a preview must not connect")

    action = KubernetesAction(no_client, now=lambda: NOW)  # type: ignore[arg-type]

    restart = action.preview({"restart": {"namespace": "prod", "deployment": "web"}})
    evict = action.preview({"evict": {"namespace": "prod", "pod": "web-1", "grace_period": 5}})
    cordon = action.preview({"cordon": {"node": "node-a"}})
    patch = {"api_version": "example.com/v1", "kind": "Widget", "namespace": "prod"}
    patch |= {"name": "w1", "type": "merge", "body": {"spec": {"size": 1}}}
    patched = action.preview({"patch": patch})

    assert restart == {
        "restart": {"namespace": "prod", "deployment": "web"},
        "method": "PATCH",
        "path": WEB,
        "content_type": "application/strategic-merge-patch+json",
        "body": {
            "spec": {
                "template": {
                    "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": RESTARTED_AT}}
                }
            }
        },
    }
    assert (evict["method"], evict["path"]) == ("POST", EVICTION)
    assert evict["body"] == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "web-1", "namespace": "prod"},
        "deleteOptions": {"gracePeriodSeconds": 5},
    }
    assert (cordon["method"], cordon["path"], cordon["body"]) == (
        "PATCH",
        NODE,
        {"spec": {"unschedulable": True}},
    )
    assert patched["path"] == "/apis/example.com/v1/namespaces/prod/<plural of Widget>/w1"
    with pytest.raises(StepError):
        action.preview({"cordon": {}})


# -- authentication: the same as scale ---------------------------------------------------


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


async def test_kubeconfig_with_a_client_certificate(api: FakeKubeAPI, tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": api.url, "certificate-authority-data": b64(api.pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "test",
                "user": {
                    "client-certificate-data": b64(api.pki.client_cert),
                    "client-key-data": b64(api.pki.client_key),
                },
            }
        ],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    api.objects.add("v1", "Node", "node-a")
    action = KubernetesAction(
        KubeSettings.from_config({"kubeconfig": str(tmp_path / "config")}, {})
    )
    try:
        output = await action.run({"cordon": {"node": "node-a"}}, CONTEXT)
    finally:
        await action.close()

    assert output == {"node": "node-a", "changed": True}
    assert set(api.identities) == {"cert:remediator"}


async def test_a_wrong_token_is_a_permanent_401(api: FakeKubeAPI) -> None:
    section = {"api": api.url, "token": "wrong", "ca": str(api.pki.ca_cert)}
    action = KubernetesAction(KubeSettings.from_config(section, {}))
    api.objects.add("v1", "Node", "node-a")
    try:
        error = await failure(action, {"cordon": {"node": "node-a"}}, CONTEXT)
    finally:
        await action.close()

    assert error.permanent and "HTTP 401" in error.message
    assert api.objects.objects[NODE].get("spec") is None
