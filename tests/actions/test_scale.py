"""The `scale` action and the Kubernetes client, over real HTTPS against the fake API server."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from remediator.actions.base import StepContext
from remediator.actions.kubeclient import Conflict, KubeClient, KubeSettings
from remediator.actions.scale import MAX_CONFLICTS, ScaleAction
from remediator.errors import ConfigError, StepError
from tests.support.attempts import attempts, failure
from tests.support.kube_api import FakeKubeAPI

CONTEXT = StepContext(
    event_id="e-1", trace_id="t-1", rule="scale-out-web", step="scale", timeout=30.0
)
WEB_SCALE = "/apis/apps/v1/namespaces/default/deployments/web/scale"
WEB_HPA = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web"


def explicit(api: FakeKubeAPI, token: str | None = None) -> KubeSettings:
    section = {"api": api.url, "token": token or api.token, "ca": str(api.pki.ca_cert)}
    return KubeSettings.from_config(section, {})


@pytest.fixture
async def action(api: FakeKubeAPI) -> AsyncIterator[ScaleAction]:
    scale = ScaleAction(explicit(api))
    yield scale
    await scale.close()


# -- a, b, c: the scale subresource -----------------------------------------------------


async def test_a_step_is_clamped_to_max_replicas(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)

    output = await action.run({"deployment": "web", "step": 2, "max_replicas": 4}, CONTEXT)

    assert output == {
        "from": 3,
        "to": 4,
        "changed": True,
        "via": "scale",
        "namespace": "default",
        "kind": "Deployment",
        "name": "web",
    }
    assert api.replicas("web") == 4
    assert api.writes == [("PUT", WEB_SCALE)]


async def test_b_already_at_target_writes_nothing(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 4)

    output = await action.run({"deployment": "web", "step": 2, "max_replicas": 4}, CONTEXT)

    assert output["changed"] is False
    assert (output["from"], output["to"]) == (4, 4)
    assert api.writes == []
    assert ("GET", WEB_SCALE) in api.requests


async def test_c_conflict_rereads_and_recomputes(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)
    api.another_writer("web", replicas=6)  # between our first read and our write

    output = await action.run({"deployment": "web", "step": 2, "max_replicas": 10}, CONTEXT)

    assert api.replicas("web") == 8  # 6 (re-read) + 2, not 3 + 2
    assert (output["from"], output["to"], output["changed"]) == (6, 8, True)
    scale_requests = [r for r in api.requests if r[1] == WEB_SCALE]
    assert scale_requests == [("GET", WEB_SCALE), ("PUT", WEB_SCALE)] * 2


async def test_endless_conflicts_give_up_transiently(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)
    api.another_writer("web", replicas=3, times=MAX_CONFLICTS)

    error = await failure(action, {"deployment": "web", "step": 1}, CONTEXT)

    assert not error.permanent
    assert "conflicting" in error.message
    assert len(api.writes) == MAX_CONFLICTS
    assert api.replicas("web") == 3


async def test_the_client_raises_conflict_on_a_stale_write(api: FakeKubeAPI) -> None:
    api.add_deployment("web", 3)
    client = KubeClient(explicit(api))
    try:
        body = {"metadata": {"name": "web", "resourceVersion": "1"}, "spec": {"replicas": 5}}
        with pytest.raises(Conflict) as raised:
            await client.put(WEB_SCALE, body)
    finally:
        await client.close()
    assert "the object has been modified" in raised.value.message


async def test_statefulset(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_statefulset("db", 1, namespace="prod")

    output = await action.run({"namespace": "prod", "statefulset": "db", "replicas": 3}, CONTEXT)

    assert output["kind"] == "StatefulSet"
    assert (output["from"], output["to"], output["namespace"]) == (1, 3, "prod")
    assert api.replicas("db", "statefulsets", "prod") == 3
    assert api.writes == [("PUT", "/apis/apps/v1/namespaces/prod/statefulsets/db/scale")]


async def test_negative_step_stops_at_min_replicas(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 5)

    output = await action.run({"deployment": "web", "step": -4, "min_replicas": 2}, CONTEXT)

    assert (output["from"], output["to"]) == (5, 2)
    assert api.replicas("web") == 2


async def test_a_step_never_moves_against_its_sign(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 25)  # scaled by hand above the rule's max
    api.add_deployment("api", 1)  # below the rule's min

    up = await action.run({"deployment": "web", "step": 2, "max_replicas": 20}, CONTEXT)
    down = await action.run({"deployment": "api", "step": "-1", "min_replicas": 2}, CONTEXT)

    assert (up["to"], up["changed"], down["to"], down["changed"]) == (25, False, 1, False)
    assert api.writes == []


async def test_replicas_is_clamped_and_zero_is_allowed(
    api: FakeKubeAPI, action: ScaleAction
) -> None:
    api.add_deployment("web", 3)
    api.add_deployment("batch", 2)

    web = await action.run({"deployment": "web", "replicas": 50, "max_replicas": 10}, CONTEXT)
    batch = await action.run({"deployment": "batch", "replicas": 0}, CONTEXT)
    again = await action.run({"deployment": "batch", "step": 1}, CONTEXT)  # spec.replicas absent

    assert (web["to"], batch["to"]) == (10, 0)
    assert (again["from"], again["to"]) == (0, 1)


# -- d: a HorizontalPodAutoscaler owns the count ----------------------------------------


async def test_d_hpa_floor_is_raised_instead(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)
    api.add_hpa("web", target="web", min_replicas=2, max_replicas=10)

    output = await action.run({"deployment": "web", "step": 2, "max_replicas": 20}, CONTEXT)

    assert output["via"] == "hpa"
    assert (output["from"], output["to"], output["changed"]) == (2, 5, True)
    assert (output["hpa"], output["replicas"]) == ("web", 3)
    assert api.autoscalers["default", "web"].min_replicas == 5
    assert api.replicas("web") == 3
    assert api.writes == [("PATCH", WEB_HPA)]


async def test_hpa_floor_stays_within_its_max(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)
    api.add_hpa("web", target="web", min_replicas=2, max_replicas=4)

    output = await action.run({"deployment": "web", "step": 5}, CONTEXT)

    assert (output["from"], output["to"]) == (2, 4)
    assert api.autoscalers["default", "web"].min_replicas == 4


async def test_hpa_scale_in_only_lowers_the_floor(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 6)
    api.add_hpa("web", target="web", min_replicas=5, max_replicas=10)

    lowered = await action.run({"deployment": "web", "step": -3}, CONTEXT)
    unchanged = await action.run({"deployment": "web", "step": -1}, CONTEXT)

    assert (lowered["from"], lowered["to"]) == (5, 3)
    assert (unchanged["from"], unchanged["to"], unchanged["changed"]) == (3, 3, False)
    assert api.writes == [("PATCH", WEB_HPA)]


async def test_hpa_for_another_workload_is_ignored(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)
    api.add_statefulset("web", 1)
    api.add_hpa("web-db", target="web", kind="StatefulSet", min_replicas=1, max_replicas=3)

    output = await action.run({"deployment": "web", "step": 1}, CONTEXT)

    assert output["via"] == "scale"
    assert api.writes == [("PUT", WEB_SCALE)]


async def test_two_hpas_on_one_workload_are_refused(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)
    api.add_hpa("a", target="web", min_replicas=1, max_replicas=3)
    api.add_hpa("b", target="web", min_replicas=1, max_replicas=3)

    error = await failure(action, {"deployment": "web", "step": 1}, CONTEXT)

    assert error.permanent and "(a, b)" in error.message
    assert api.writes == []


# -- e: errors and the engine's retry loop ----------------------------------------------


async def test_e_forbidden_is_permanent_with_the_api_message(
    api: FakeKubeAPI, action: ScaleAction
) -> None:
    api.add_deployment("web", 3)
    message = (
        'deployments.apps "web" is forbidden: User "system:serviceaccount:ops:remediator"'
        ' cannot get resource "deployments/scale" in API group "apps"'
    )
    api.forbid_next(WEB_SCALE, message)

    error, tries = await attempts(action, {"deployment": "web", "step": 1}, CONTEXT)

    assert tries == 1
    assert isinstance(error, StepError) and error.permanent
    assert message in error.message and "403" in error.message
    assert api.replicas("web") == 3


async def test_e_unavailable_twice_then_ok(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)
    api.fail_next(WEB_SCALE, 503, times=2, retry_after="2")
    errors: list[StepError] = []

    for _ in range(3):  # keep what each attempt raised, as the engine logs it
        try:
            output = await action.run({"deployment": "web", "step": 1}, CONTEXT)
            break
        except StepError as exc:
            assert not exc.permanent
            errors.append(exc)

    assert len(errors) + 1 == 3
    assert [e.retry_after for e in errors] == [2.0, 2.0]
    assert (output["to"], api.replicas("web")) == (4, 4)
    assert [r for r in api.requests if r[1] == WEB_SCALE].count(("GET", WEB_SCALE)) == 3


async def test_e_retry_loop_counts_three_attempts(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)
    api.fail_next(WEB_SCALE, 503, times=2)

    output, tries = await attempts(action, {"deployment": "web", "step": 1}, CONTEXT)

    assert tries == 3
    assert isinstance(output, dict) and output["to"] == 4


async def test_missing_deployment_is_permanent(api: FakeKubeAPI, action: ScaleAction) -> None:
    error = await failure(action, {"deployment": "nope", "step": 1}, CONTEXT)

    assert error.permanent
    assert 'deployments.apps "nope" not found' in error.message


async def test_too_many_requests_is_transient(api: FakeKubeAPI, action: ScaleAction) -> None:
    api.add_deployment("web", 3)
    api.fail_next(None, 429, message="too many requests", retry_after="7")

    error = await failure(action, {"deployment": "web", "step": 1}, CONTEXT)

    assert (error.permanent, error.retry_after) == (False, 7.0)


async def test_unreachable_api_is_transient_and_named() -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{closed.getsockname()[1]}"
        action = ScaleAction(KubeSettings.from_config({"api": url, "token": "t"}, {}))
        try:
            error = await failure(action, {"deployment": "web", "step": 1}, CONTEXT)
        finally:
            await action.close()

    assert not error.permanent
    assert url in error.message


@pytest.mark.parametrize(
    ("request_", "complaint"),
    [
        ({"deployment": "web"}, "exactly one of step or replicas"),
        ({"deployment": "web", "step": 1, "replicas": 2}, "exactly one of step or replicas"),
        ({"step": 1}, "exactly one of deployment or statefulset"),
        ({"deployment": "web", "statefulset": "db", "step": 1}, "exactly one of deployment"),
        ({"deployment": "web", "step": True}, "step: expected an integer"),
        ({"deployment": "web", "step": 1.5}, "step: expected int or str"),
        ({"deployment": "web", "replicas": -1}, "replicas: must not be negative"),
        ({"deployment": "web", "step": 1, "min_replicas": 5, "max_replicas": 2}, "above"),
        ({"deployment": "web", "step": 1, "max_replica": 2}, "unknown field(s): max_replica"),
        ({"deployment": "../../secrets", "step": 1}, "not a Kubernetes object name"),
        ({"deployment": "web", "namespace": "Prod", "step": 1}, "not a Kubernetes namespace"),
        ({"deployment": "web", "step": 1, "provider": "nomad"}, "provider: 'nomad'"),
    ],
)
async def test_bad_requests_are_permanent_and_send_nothing(
    api: FakeKubeAPI, action: ScaleAction, request_: dict[str, object], complaint: str
) -> None:
    error = await failure(action, request_, CONTEXT)

    assert error.permanent
    assert complaint in error.message
    assert api.requests == []


# -- f: authentication ------------------------------------------------------------------


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    cluster: dict[str, object],
    user: dict[str, object],
    context: str = "test",
) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
    }
    path.write_text(yaml.safe_dump(document))
    return path


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


async def scale_once(settings: KubeSettings, api: FakeKubeAPI) -> dict[str, object]:
    api.add_deployment("web", 1)
    action = ScaleAction(settings)
    try:
        return await action.run({"deployment": "web", "step": 1}, CONTEXT)
    finally:
        await action.close()


async def test_f_kubeconfig_with_bearer_token(api: FakeKubeAPI, tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        server=api.url,
        cluster={"certificate-authority-data": b64(api.pki.ca_cert)},
        user={"token": api.token},
    )

    output = await scale_once(KubeSettings.from_config({"kubeconfig": str(path)}, {}), api)

    assert output["to"] == 2
    assert set(api.identities) == {"token"}


async def test_f_kubeconfig_with_client_certificate_data(api: FakeKubeAPI, tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        server=api.url,
        cluster={"certificate-authority-data": b64(api.pki.ca_cert)},
        user={
            "client-certificate-data": b64(api.pki.client_cert),
            "client-key-data": b64(api.pki.client_key),
        },
    )

    output = await scale_once(KubeSettings.from_config({}, {"KUBECONFIG": str(path)}), api)

    assert output["to"] == 2
    assert set(api.identities) == {"cert:remediator"}


async def test_kubeconfig_with_relative_file_paths(api: FakeKubeAPI, tmp_path: Path) -> None:
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_bytes((api.pki.ca_cert.parent / name).read_bytes())
    write_kubeconfig(
        tmp_path / "config",
        server=api.url,
        cluster={"certificate-authority": "ca.crt"},
        user={"client-certificate": "client.crt", "client-key": "client.key"},
    )

    settings = KubeSettings.from_config({"kubeconfig": str(tmp_path / "config")}, {})

    output = await scale_once(settings, api)

    assert output["to"] == 2
    assert set(api.identities) == {"cert:remediator"}


async def test_f_wrong_token_is_a_permanent_401(api: FakeKubeAPI, tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        server=api.url,
        cluster={"certificate-authority-data": b64(api.pki.ca_cert)},
        user={"token": "wrong"},
    )
    api.add_deployment("web", 1)
    action = ScaleAction(KubeSettings.from_config({"kubeconfig": str(path)}, {}))
    try:
        error, tries = await attempts(action, {"deployment": "web", "step": 1}, CONTEXT)
    finally:
        await action.close()

    assert tries == 1
    assert isinstance(error, StepError) and error.permanent
    assert "401" in error.message and "Unauthorized" in error.message


async def test_named_context_is_used(api: FakeKubeAPI, tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        server=api.url,
        context="prod",
        cluster={"certificate-authority-data": b64(api.pki.ca_cert)},
        user={"tokenFile": "token"},
    )
    (tmp_path / "token").write_text(api.token + "\n")
    document = yaml.safe_load(path.read_text())
    document["current-context"] = "elsewhere"
    path.write_text(yaml.safe_dump(document))

    settings = KubeSettings.from_config({"kubeconfig": str(path), "context": "prod"}, {})

    assert (await scale_once(settings, api))["to"] == 2


async def test_untrusted_server_certificate_is_permanent(api: FakeKubeAPI, tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config", server=api.url, cluster={}, user={"token": api.token}
    )
    action = ScaleAction(KubeSettings.from_config({"kubeconfig": str(path)}, {}))
    try:
        error = await failure(action, {"deployment": "web", "step": 1}, CONTEXT)
    finally:
        await action.close()

    assert error.permanent
    assert "not trusted" in error.message
    assert api.requests == []


async def test_insecure_skip_tls_verify(api: FakeKubeAPI, tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        server=api.url,
        cluster={"insecure-skip-tls-verify": True},
        user={"token": api.token},
    )

    output = await scale_once(KubeSettings.from_config({"kubeconfig": str(path)}, {}), api)

    assert output["to"] == 2


async def test_explicit_api_with_ca_data(api: FakeKubeAPI) -> None:
    section = {"api": api.url + "/", "token": api.token, "ca": api.pki.ca_cert.read_text()}

    output = await scale_once(KubeSettings.from_config(section, {}), api)

    assert output["to"] == 2


# -- settings resolution ----------------------------------------------------------------


@pytest.fixture
def service_account(api: FakeKubeAPI, tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(api.token)
    (directory / "ca.crt").write_bytes(api.pki.ca_cert.read_bytes())
    yield directory


def in_cluster_env(api: FakeKubeAPI, home: Path) -> dict[str, str]:
    return {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": api.url.rsplit(":", 1)[1],
        "HOME": str(home),
    }


async def test_in_cluster_service_account(
    api: FakeKubeAPI, service_account: Path, tmp_path: Path
) -> None:
    settings = KubeSettings.from_config(
        {}, in_cluster_env(api, tmp_path), service_account_dir=service_account
    )

    endpoint = settings.resolve()
    output = await scale_once(settings, api)

    assert endpoint.server == api.url
    assert endpoint.source == "in-cluster service account"
    assert output["to"] == 2


async def test_in_cluster_token_is_reread(
    api: FakeKubeAPI, service_account: Path, tmp_path: Path
) -> None:
    client = KubeClient(
        KubeSettings.from_config(
            {}, in_cluster_env(api, tmp_path), service_account_dir=service_account
        )
    )
    api.add_deployment("web", 1)
    try:
        await client.get(WEB_SCALE)
        (service_account / "token").write_text("rotated")  # the kubelet rotates it
        with pytest.raises(StepError) as raised:
            await client.get(WEB_SCALE)
    finally:
        await client.close()
    assert raised.value.permanent and "401" in raised.value.message


def test_kubeconfig_env_comes_before_in_cluster(
    api: FakeKubeAPI, service_account: Path, tmp_path: Path
) -> None:
    path = write_kubeconfig(
        tmp_path / "config", server="https://kube.example:6443", cluster={}, user={"token": "t"}
    )
    environ = {**in_cluster_env(api, tmp_path), "KUBECONFIG": f"{tmp_path / 'none'}:{path}"}

    endpoint = KubeSettings.from_config({}, environ, service_account_dir=service_account).resolve()

    assert endpoint.server == "https://kube.example:6443"


def test_explicit_api_comes_first(tmp_path: Path) -> None:
    settings = KubeSettings.from_config(
        {"api": "http://127.0.0.1:8001"},
        {
            "KUBECONFIG": str(tmp_path / "config"),
            "KUBERNETES_SERVICE_HOST": "10.0.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
        },
    )

    endpoint = settings.resolve()

    assert (endpoint.server, endpoint.ssl_context) == ("http://127.0.0.1:8001", None)


def test_default_kubeconfig_under_home(tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    write_kubeconfig(
        tmp_path / ".kube" / "config", server="https://kube.example", cluster={}, user={}
    )

    endpoint = KubeSettings.from_config({}, {"HOME": str(tmp_path)}).resolve()

    assert endpoint.server == "https://kube.example"
    assert endpoint.credentials.authorization() is None


async def test_nothing_configured_fails_at_first_use_only(tmp_path: Path) -> None:
    settings = KubeSettings.from_config({}, {"HOME": str(tmp_path)})  # no error yet
    action = ScaleAction(settings)
    try:
        error = await failure(action, {"deployment": "web", "step": 1}, CONTEXT)
    finally:
        await action.close()

    with pytest.raises(ConfigError, match="no API server configured"):
        settings.resolve()
    assert error.permanent and "no API server configured" in error.message


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[1, 2", "cannot read"),
        ("- just\n- a list\n", "not a YAML mapping"),
        ("clusters: {c: 1}\n", "clusters: expected a list"),
        ("current-context: x\ncontexts: []\n", "context 'x' not found"),
        ("clusters: []\ncontexts: []\n", "no current-context"),
    ],
)
def test_malformed_kubeconfig_fails_lazily(tmp_path: Path, text: str, complaint: str) -> None:
    (tmp_path / "config").write_text(text)
    settings = KubeSettings.from_config({"kubeconfig": str(tmp_path / "config")}, {})

    with pytest.raises(ConfigError, match=complaint):
        settings.resolve()


def test_unsupported_kubeconfig_auth_is_named(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        server="https://kube.example",
        cluster={},
        user={"exec": {"command": "aws"}},
    )

    with pytest.raises(ConfigError, match="'exec' is not supported"):
        KubeSettings.from_config({"kubeconfig": str(path)}, {}).resolve()


def test_bad_client_certificate_data_fails_lazily(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        server="https://kube.example",
        cluster={},
        user={"client-certificate-data": "bm90IGEgY2VydA==", "client-key-data": "bm90IGEga2V5"},
    )

    with pytest.raises(ConfigError, match="TLS material"):
        KubeSettings.from_config({"kubeconfig": str(path)}, {}).resolve()


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ({"apiserver": "https://x"}, "unknown key"),
        ({"token": "t"}, "only with kubernetes.api"),
        ({"api": "kube:6443"}, "expected https://host"),
        ({"api": 6443}, "expected a string"),
    ],
)
def test_section_shape_is_checked_at_start(section: dict[str, object], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        KubeSettings.from_config(section, {})


def test_token_stays_out_of_repr() -> None:
    settings = KubeSettings.from_config({"api": "https://kube.example", "token": "s3cret"}, {})

    assert "s3cret" not in repr(settings)
    assert "s3cret" not in repr(settings.resolve())


@pytest.mark.parametrize(("server_name", "works"), [("localhost", True), ("kube.invalid", False)])
async def test_tls_server_name_is_the_name_verified(
    api: FakeKubeAPI, tmp_path: Path, server_name: str, works: bool
) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        server=api.url,
        cluster={
            "certificate-authority-data": b64(api.pki.ca_cert),
            "tls-server-name": server_name,
        },
        user={"token": api.token},
    )
    settings = KubeSettings.from_config({"kubeconfig": str(path)}, {})

    if works:
        assert (await scale_once(settings, api))["to"] == 2
    else:
        action = ScaleAction(settings)
        try:
            error = await failure(action, {"deployment": "web", "step": 1}, CONTEXT)
        finally:
            await action.close()
        assert error.permanent and "not trusted" in error.message
