"""Packaging and deployment cannot drift from the program they deploy.

Every flag and `REMEDIATOR_*` variable the Dockerfile, the Kubernetes manifests and the
docs mention is one `remediator run` accepts (read from `build_parser()` and
`settings.FIELDS`, never from a copied list); every `run` flag has a variable and a row
in the configuration table of docs/operations.md; the manifests parse, the Roles grant
exactly what the scale and kubernetes actions call, and the alert rules name real metrics
and labels.
tests/test_image.py runs the image's configuration; tests/test_packaging.py its build.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from remediator import settings as settings_module
from remediator.cli import build_parser
from remediator.durations import parse_duration
from remediator.metrics import Metrics
from remediator.nats.audit import AUDIT_STREAM
from remediator.nats.control import CONTROL_BUCKET
from remediator.nats.jsconfig import MANAGED, RESULTS_STREAM
from remediator.nats.kvstore import STATE_BUCKET, VERIFY_BUCKET
from remediator.rules.loader import load_rules
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from remediator.settings import FIELDS, Settings, env_name
from tests.support import dockerfile
from tests.support.manifests import (
    KUBERNETES,
    container_env,
    containers,
    containers_of,
    daemon_container,
    documents,
    manifest,
    pod_spec,
)

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

ENV_NAME = re.compile(r"(?<![A-Za-z0-9_])REMEDIATOR_[A-Z0-9]+(?:_[A-Z0-9]+)*")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
COMMAND = re.compile(r"^\s*(?:\$\s*)?(?:remediator|python3? -m remediator)(?:\s|$)")

# Names that look like settings and are not. Each must still be used where it is said to
# be, so this list cannot keep a name its reason no longer holds for.
NOT_SETTINGS = {
    # JetStream stream and buckets the daemon creates, named in the docs.
    RESULTS_STREAM: ROOT / "remediator" / "nats" / "jsconfig.py",
    AUDIT_STREAM: ROOT / "remediator" / "nats" / "audit.py",
    STATE_BUCKET: ROOT / "remediator" / "nats" / "kvstore.py",
    VERIFY_BUCKET: ROOT / "remediator" / "nats" / "kvstore.py",
    CONTROL_BUCKET: ROOT / "remediator" / "nats" / "control.py",
    # Read by the test suite, not the daemon: SSH and browser tests fail instead of skipping.
    "REMEDIATOR_REQUIRE_SSHD": ROOT / "tests" / "support" / "sshd.py",
    "REMEDIATOR_REQUIRE_BROWSER": ROOT / "tests" / "support" / "browser.py",
    "REMEDIATOR_REQUIRE_PROMETHEUS": ROOT / "tests" / "support" / "prometheus.py",
}
# The exact Role the scale action needs (docs/kubernetes.md, "RBAC"): GET and PUT on the
# scale subresource, GET of the HPA collection (list) and PATCH of one HPA.
SCALE_RBAC = {
    ("apps", "deployments/scale", "get"),
    ("apps", "deployments/scale", "update"),
    ("apps", "statefulsets/scale", "get"),
    ("apps", "statefulsets/scale", "update"),
    ("autoscaling", "horizontalpodautoscalers", "list"),
    ("autoscaling", "horizontalpodautoscalers", "patch"),
}
# What the kubernetes action calls in a namespace: restart (PATCH a workload) and evict
# (POST pods/NAME/eviction); and, cluster-wide, cordon/uncordon (GET and PATCH a node).
# Discovery needs nothing (system:discovery); `patch` targets are the rules' own to grant.
KUBERNETES_RBAC = {
    ("apps", "deployments", "patch"),
    ("apps", "statefulsets", "patch"),
    ("apps", "daemonsets", "patch"),
    ("", "pods/eviction", "create"),
}
NODES_RBAC = {("", "nodes", "get"), ("", "nodes", "patch")}
ROLES = {
    ("Role", "remediator-scale"): SCALE_RBAC,
    ("Role", "remediator-kubernetes"): KUBERNETES_RBAC,
    ("ClusterRole", "remediator-nodes"): NODES_RBAC,
}


# --- what the CLI accepts ------------------------------------------------------------------


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions for o in a.option_strings if o.startswith("--")}


def run_parser() -> argparse.ArgumentParser:
    return subparsers(build_parser())["run"]


def run_options() -> dict[str, argparse.Action]:
    return {o: a for o, a in options(run_parser()).items() if a.dest != "help"}


def accepted_flags() -> set[str]:
    """Flags of `run`, of the other subcommands, and of `remediator` itself."""
    parser = build_parser()
    found = set(options(parser))
    for sub in subparsers(parser).values():
        found |= set(options(sub))
    return found


def variable(action: argparse.Action) -> str:
    return env_name(action.dest)


def known_variables() -> set[str]:
    return {env_name(name) for name in FIELDS} | {env_name("config")} | set(NOT_SETTINGS)


# --- what the files mention ----------------------------------------------------------------


def markdown_flags(text: str) -> set[str]:
    """Flags in inline code that starts with `--` or a remediator command, and in commands
    of fenced blocks that run remediator; flags of other tools (`nats stream add
    --replicas`) are written with their command and so are not taken."""
    found: set[str] = set()
    fenced = False
    logical = ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced, logical = not fenced, ""
            continue
        if fenced:
            if line.rstrip().endswith("\\"):
                logical += line.rstrip()[:-1] + " "
                continue
            logical, line = "", logical + line
            for command in re.split(r"&&|\|\||;", line):
                if COMMAND.match(command):
                    found |= set(FLAG.findall(command))
            continue
        for span in re.findall(r"`([^`]+)`", line):
            if span.startswith("--") or COMMAND.match(span):
                found |= set(FLAG.findall(span))
    return found


def mentioned_flags() -> dict[str, set[str]]:
    # docs/performance.md documents the flags of the bench/ scripts, not of remediator.
    found = {
        str(path.relative_to(ROOT)): markdown_flags(path.read_text())
        for path in DOCS
        if path.name != "performance.md"
    }
    words: list[str] = []
    for instruction in dockerfile.instructions(DOCKERFILE):
        if instruction.keyword in ("ENTRYPOINT", "CMD"):
            words += instruction.exec_form()
    found["Dockerfile"] = {w for w in words if FLAG.fullmatch(w.partition("=")[0])}
    words = [w for c in containers() for w in [*c.get("command", []), *c.get("args", [])]]
    found["deploy/kubernetes"] = {w.partition("=")[0] for w in words if w.startswith("--")}
    return found


def mentioned_variables() -> dict[str, set[str]]:
    files = [DOCKERFILE, *sorted(KUBERNETES.glob("*.yaml")), *DOCS]
    return {str(p.relative_to(ROOT)): set(ENV_NAME.findall(p.read_text())) for p in files}


# --- a. flags and variables cannot drift ---------------------------------------------------


def test_every_flag_mentioned_is_accepted() -> None:
    accepted = accepted_flags()
    found = mentioned_flags()
    unknown = {f"{where}: {flag}" for where, flags in found.items() for flag in flags - accepted}
    assert not unknown, "flags the CLI does not accept"
    assert {"--rules", "--nats", "--concurrency"} <= found["docs/running.md"]  # the reader works


def test_every_variable_mentioned_is_a_setting() -> None:
    known = known_variables()
    found = mentioned_variables()
    unknown = {f"{where}: {name}" for where, names in found.items() for name in names - known}
    assert not unknown, "REMEDIATOR_* names that are not settings"
    assert {"REMEDIATOR_RULES", "REMEDIATOR_HTTP"} <= found["Dockerfile"]


def test_names_that_are_not_settings_are_still_used_where_said() -> None:
    for name, where in NOT_SETTINGS.items():
        assert name not in {env_name(f) for f in FIELDS}, f"{name} is a setting now"
        assert name in where.read_text(), f"{name} is not used in {where.relative_to(ROOT)}"


def test_every_run_flag_has_a_variable() -> None:
    for flag, action in run_options().items():
        assert action.dest in FIELDS or action.dest == "config", f"{flag} has no variable"


def sample(name: str) -> tuple[str, object]:
    """A value the setting's parser accepts, and what it parses to."""
    parse = FIELDS[name]
    for text in ("7", "true", "7s", "host:7", "3/1m", "text", "debug"):
        try:
            return text, parse(text)
        except ValueError:
            continue
    raise AssertionError(f"no sample value for {name}")


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_variable_is_read(name: str) -> None:
    text, parsed = sample(name)
    assert getattr(Settings.load({}, {env_name(name): text}), name) == parsed


def test_config_variable_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text("stream: FROM_FILE\nnats: {url: nats://file:4222}\n")
    loaded = Settings.load({}, {env_name("config"): str(config)})
    assert (loaded.stream, loaded.nats_url) == ("FROM_FILE", "nats://file:4222")


# --- the one configuration table -----------------------------------------------------------


def table_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip()[1:-1])] for row in rows]


def code(cell: str) -> str:
    return cell.replace("`", "").strip()


def nested(path: str, value: object) -> dict[str, object]:
    head, _, rest = path.partition(".")
    return {head: nested(rest, value) if rest else value}


def test_configuration_table_lists_every_run_flag_once() -> None:
    rows = table_rows(OPERATIONS.read_text(), "Configuration reference")
    flags = [FLAG.match(code(row[0])) for row in rows]
    assert all(flags), "every row starts with one flag"
    listed = [m.group(0) for m in flags if m]
    assert sorted(listed) == sorted(run_options()), "one row per `run` flag"


def test_configuration_table_rows_are_true() -> None:
    actions = run_options()
    defaults = Settings()
    for flag_cell, variable_cell, file_cell, default_cell, _ in table_rows(
        OPERATIONS.read_text(), "Configuration reference"
    ):
        match = FLAG.match(code(flag_cell))
        assert match is not None
        action = actions[match.group(0)]
        assert code(variable_cell) == variable(action), flag_cell
        if action.dest == "config":
            continue
        key = code(file_cell)
        value: object = {"max_runs": 1} if key == "budget" else "x"
        assert action.dest in settings_module._flatten(nested(key, value)), (flag_cell, key)
        assert_default(action.dest, getattr(defaults, action.dest), code(default_cell))


def assert_default(name: str, default: object, cell: str) -> None:
    if default is None:
        return  # "none", "none: embedded" or empty
    if isinstance(default, bool):
        assert cell == ("on" if default else "off"), name
    elif isinstance(default, float):
        assert parse_duration(cell) == default, name
    elif isinstance(default, tuple):
        assert tuple(cell.split(",")) == default, name
    else:
        assert cell == str(default), name


def test_the_flags_page_points_to_the_complete_table() -> None:
    running = (ROOT / "docs" / "running.md").read_text()
    assert "operations.md#configuration-reference" in running


# --- b. the manifests ----------------------------------------------------------------------


def test_manifests_parse_and_kustomization_lists_them_all() -> None:
    kinds = [document["kind"] for _, document in documents()]
    assert "Deployment" in kinds
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    images = {c["image"] for d in yaml.safe_load_all(built.stdout) for c in containers_of(d)}
    assert images == {"remediator:0.1.0"}


def rbac_rules(role: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    found = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found |= {(group, resource, verb) for verb in rule["verbs"]}
    return found


def test_roles_grant_exactly_what_the_actions_call() -> None:
    roles = {
        (d["kind"], d["metadata"]["name"]): d
        for _, d in documents()
        if d["kind"] in ("Role", "ClusterRole")
    }
    assert {key: rbac_rules(role) for key, role in roles.items()} == ROLES
    account = manifest("ServiceAccount")
    bindings = [d for _, d in documents() if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert sorted(b["roleRef"]["name"] for b in bindings) == sorted(n for _, n in ROLES)
    for binding in bindings:
        kind = binding["roleRef"]["kind"]
        role = roles[kind, binding["roleRef"]["name"]]
        assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
        # Only the cluster-scoped nodes get a ClusterRoleBinding: the rest stays in prod.
        assert binding["kind"] == ("ClusterRoleBinding" if kind == "ClusterRole" else "RoleBinding")
        if kind == "Role":
            assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": account["metadata"]["namespace"],
            }
        ]
    assert pod_spec()["serviceAccountName"] == account["metadata"]["name"]


def test_kubernetes_docs_show_the_same_roles() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    parsed = [d for b in blocks for d in yaml.safe_load_all(b) if isinstance(d, dict)]
    roles = {
        (d["kind"], d["metadata"]["name"]): rbac_rules(d)
        for d in parsed
        if d.get("kind") in ("Role", "ClusterRole")
    }
    assert roles == ROLES


def test_deployment_runs_three_safe_replicas() -> None:
    deployment = manifest("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    settings = Settings.load({}, {**dockerfile.env(DOCKERFILE), **container_env(container)})
    # The kubelet's SIGKILL must not cut the drain short.
    assert pod["terminationGracePeriodSeconds"] > settings.drain_timeout + 5
    # Probes on the port the listener binds, reachable from outside the pod.
    host, port = settings.http_host_port
    assert host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_deployment_mounts_rules_secrets_and_creds_where_the_settings_say() -> None:
    pod = pod_spec()
    container = daemon_container()
    settings = Settings.load({}, {**dockerfile.env(DOCKERFILE), **container_env(container)})
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    (rules_dir,) = settings.rules
    rules = mounts[rules_dir]
    assert "subPath" not in rules, "a subPath mount never sees ConfigMap edits"
    config_map = manifest("ConfigMap", volumes[rules["name"]]["configMap"]["name"])
    assert settings.nats_url and settings.creds
    creds = Path(settings.creds)
    secret_volume = volumes[mounts[str(creds.parent)]["name"]]["secret"]
    assert creds.name in manifest("Secret", secret_volume["secretName"])["stringData"]
    (source,) = container["envFrom"]
    env_secret = manifest("Secret", source["secretRef"]["name"])
    assert "CHAT_TOKEN" in env_secret["stringData"]
    assert "secret('CHAT_TOKEN')" in "".join(config_map["data"].values())


def test_rules_in_the_config_map_validate(tmp_path: Path) -> None:
    for name, text in manifest("ConfigMap", "remediator-rules")["data"].items():
        (tmp_path / name).write_text(text)
    rules = load_rules([str(tmp_path)], Templates(Secrets({})))
    assert [rule.name for rule in rules] == ["scale-out-web"]
    assert all(rule.dry_run for rule in rules), "an example that acts must be opted into"


def test_services_and_monitors_use_the_container_port() -> None:
    names = {p["name"] for p in daemon_container()["ports"]}
    labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = manifest("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    monitor = manifest("PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= names


# --- alerts on our own metrics -------------------------------------------------------------


def exported_metrics() -> dict[str, set[str]]:
    """Sample names remediator exports, each with its label names."""
    metrics = Metrics(CollectorRegistry())
    found: dict[str, set[str]] = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = set(metric._labelnames)
        name, kind = metric._name, metric._type
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        for suffix in suffixes.get(kind, [""]):
            found[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return found


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in manifest("PrometheusRule")["spec"]["groups"] for r in g["rules"]]


def test_alerts_use_metrics_and_labels_that_exist() -> None:
    exported = exported_metrics()
    target_labels = {"namespace", "pod"}  # added by the scrape, not by remediator
    for rule in alert_rules():
        expr = rule["expr"]
        names = set(re.findall(r"remediator_[a-z_]+", expr))
        assert names, rule["alert"]
        for name in names:
            assert name in exported, f"{rule['alert']}: no metric {name}"
        labels = set(re.findall(r"([a-z_]+)=~?\"", expr))
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            labels |= {label.strip() for label in grouping.split(",")}
        allowed = set().union(*(exported[n] for n in names)) | target_labels
        assert labels <= allowed, f"{rule['alert']}: labels {labels - allowed}"


def test_alerts_cover_what_operators_must_hear_about() -> None:
    text = " ".join(rule["expr"] for rule in alert_rules())
    for needle in (
        "remediator_dead_letters_total",
        "remediator_consumer_pending_messages",
        'remediator_rule_results_total{status="throttled"}',
        'remediator_rule_results_total{status="failed"}',
        'remediator_rules_reloads_total{result="error"}',
        "remediator_approvals_pending",
        'remediator_approvals_total{result="expired"}',
        "remediator_paused",
    ):
        assert needle in text


def test_docs_show_the_same_alert_rules() -> None:
    text = OPERATIONS.read_text()
    section = text.split("\n## Alerting on remediator itself\n", 1)[1]
    (block,) = re.findall(r"```yaml\n(groups:.*?)```", section, re.S)
    assert yaml.safe_load(block) == {"groups": manifest("PrometheusRule")["spec"]["groups"]}


def test_docs_name_the_stream_marker_remediator_uses() -> None:
    assert f"'{MANAGED}'" in OPERATIONS.read_text()
