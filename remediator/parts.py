"""The daemon's parts built from its settings: the action kinds, the streams, the guards
and the control plane.

Kept beside the composition root (`daemon`) so that it reads as wiring only:
which integration gets which config section, and where shared state lives
(JetStream key-value buckets; memory in core mode).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from remediator.actions.base import ActionSet
from remediator.actions.http import HTTPAction
from remediator.actions.kubeclient import KubeSettings
from remediator.actions.kubernetes import KubernetesAction
from remediator.actions.promclient import PromClient, PromSettings
from remediator.actions.prometheus import PrometheusAction
from remediator.actions.publish import PublishAction
from remediator.actions.scale import ScaleAction
from remediator.actions.ssh import SSHAction
from remediator.actions.sshsettings import SSHSettings
from remediator.engine.engine import Engine
from remediator.engine.guards import Budget, Guards
from remediator.engine.state import MemoryStore, StateStore
from remediator.engine.verification import Querier
from remediator.metrics import Metrics
from remediator.model import Rule
from remediator.nats.controlplane import ControlPlane
from remediator.nats.kvstore import STATE_BUCKET, STATE_TTL, VERIFY_BUCKET, KVStore
from remediator.nats.transport import Transport
from remediator.rules.secrets import Secrets
from remediator.settings import Settings


def build_actions(
    transport: Transport,
    settings: Settings,
    environ: Mapping[str, str],
    prometheus: PromClient,
) -> ActionSet:
    """One instance per kind; integrations read their own config section."""
    kube = KubeSettings.from_config(settings.section("kubernetes"), environ)
    return {
        "http": HTTPAction(),
        "kubernetes": KubernetesAction(kube),
        "prometheus": PrometheusAction(prometheus),
        "publish": PublishAction(transport),
        "scale": ScaleAction(kube),
        "ssh": SSHAction(SSHSettings.from_config(settings.section("ssh"))),
    }


def build_prometheus(settings: Settings, secrets: Secrets, metrics: Metrics) -> PromClient:
    """One client for the `prometheus` steps and verification by query."""
    return PromClient(PromSettings.from_config(settings.section("prometheus"), secrets), metrics)


@dataclass(frozen=True, slots=True)
class Wiring:
    """What the control plane and the guards are built with, beside the transport."""

    engine: Callable[[], Engine]
    querier: Querier
    rule_names: Callable[[], list[str]]
    secrets: Secrets


async def prepare(
    transport: Transport | None,
    settings: Settings,
    metrics: Metrics,
    rules: tuple[Rule, ...],
    wiring: Wiring,
) -> tuple[Guards, ControlPlane | None]:
    """Streams and the consumer, the state buckets, the control plane: each step safe to
    do again, so start-up may retry the whole through a leader election."""
    assert transport is not None
    await transport.prepare({s for rule in rules for s in rule.subjects})
    guards = await build_guards(transport, settings, metrics, wiring.querier)
    if settings.core:
        return guards, None
    plane = await ControlPlane.open(
        transport, settings, metrics, wiring.engine, wiring.rule_names, wiring.secrets
    )
    return guards, plane


async def build_guards(
    transport: Transport, settings: Settings, metrics: Metrics, querier: Querier
) -> Guards:
    """Shared state in JetStream key-value buckets; in memory in core mode."""
    budget = Budget(*settings.max_actions) if settings.max_actions else None
    if settings.core:
        state: StateStore = MemoryStore()
        verifications: StateStore = MemoryStore()
    else:
        js, replicas = transport.js, settings.replicas
        acked = transport.acked
        state = await KVStore.open(js, STATE_BUCKET, STATE_TTL, replicas, acked)
        verifications = await KVStore.open(js, VERIFY_BUCKET, STATE_TTL, replicas, acked)
    return Guards(
        store=state,
        verifications=verifications,
        publisher=transport,
        budget=budget,
        metrics=metrics,
        querier=querier,
    )
