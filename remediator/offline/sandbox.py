"""Offline evaluation: the engine as `test`, `explain` and `replay` use it, with no outside world.

Nothing here connects anywhere. The engine renders every step instead of running
it (dry run), and every action kind is replaced by one that refuses to run, a
second lock should a step ever reach it. `secret(NAME)` takes a value given on
the command line (`--secret NAME=VALUE`), then the environment, and otherwise a
placeholder (`<secret NAME>`), so templates still render; whichever it is, it
is masked as `***` in what is shown, as in real result events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from remediator.actions.base import Action, StepContext
from remediator.actions.kubeclient import KubeAPI
from remediator.actions.kubernetes import KubernetesAction
from remediator.actions.promclient import PromClient, PromSettings
from remediator.actions.prometheus import PrometheusAction
from remediator.engine.engine import Engine, utcnow
from remediator.engine.guards import Guards
from remediator.engine.runner import StepRunner
from remediator.errors import StepError
from remediator.model import Rule
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex
from remediator.rules.schema import STEP_KINDS
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates

PLACEHOLDER = "<secret {name}>"


class SecretValues(Mapping[str, str]):
    """Values given on the command line, then the environment, else a placeholder."""

    def __init__(self, given: Mapping[str, str], environ: Mapping[str, str]) -> None:
        self._given = dict(given)
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        value = self._given.get(name)
        if value is None:
            value = self._environ.get(name)
        return PLACEHOLDER.format(name=name) if value is None else value

    def __iter__(self) -> Iterator[str]:
        return iter({**self._environ, **self._given})

    def __len__(self) -> int:
        return len({**self._environ, **self._given})


class RefusingAction:
    """Stands in for every action kind: offline evaluation never acts."""

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        raise StepError("offline evaluation never runs an action", permanent=True)

    async def close(self) -> None:
        return None


def _no_cluster() -> KubeAPI:
    raise StepError("offline evaluation never runs an action", permanent=True)


def offline_secrets(given: Mapping[str, str], environ: Mapping[str, str]) -> Secrets:
    return Secrets(SecretValues(given, environ))


def offline_rules(paths: Sequence[str | Path], secrets: Secrets) -> tuple[Rule, ...]:
    """The rules in `paths`; raises RuleErrors like `validate` would report them."""
    return load_rules(paths, Templates(secrets))


def offline_engine(
    rules: Sequence[Rule],
    secrets: Secrets,
    *,
    guards: Guards | None = None,
    simulate: bool = False,
    now: Callable[[], dt.datetime] = utcnow,
) -> Engine:
    """An engine that renders instead of acting.

    Without `simulate` every rule is a dry run (no throttles are spent either, as
    there are no guards). With `simulate` (replay) the guards see real runs, except
    for rules that are `dry_run: true` themselves, as in the daemon.
    """
    actions: dict[str, Action] = dict.fromkeys(STEP_KINDS, RefusingAction())
    # A kubernetes step previews the request it would send; its client refuses to exist.
    actions["kubernetes"] = KubernetesAction(_no_cluster, now=now)
    # A prometheus step previews the query it would ask; its client has nowhere to ask.
    actions["prometheus"] = PrometheusAction(PromClient(PromSettings()))
    return Engine(
        index=RuleIndex(rules),
        runner=StepRunner(actions=actions, secrets=secrets),
        secrets=secrets,
        guards=guards,
        dry_run=not simulate,
        simulate=simulate,
        now=now,
    )
