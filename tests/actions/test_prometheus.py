"""The `prometheus` step against a real Prometheus scraping an exporter the test controls
(tests/support/prometheus.py): answers, a rule deciding on them, errors, config, metrics."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from remediator.actions.base import StepContext
from remediator.actions.http import HTTPAction
from remediator.actions.promclient import PromClient, PromSettings
from remediator.actions.prometheus import PrometheusAction
from remediator.engine.engine import Engine
from remediator.errors import ConfigError, StepError
from remediator.metrics import Metrics
from remediator.model import Event, RetryPolicy, Rule, Source, Step
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from tests.support.http_target import HttpTarget, serve
from tests.support.prometheus import Prometheus, free_port, running_prometheus

CONTEXT = StepContext(event_id="ev-1", trace_id="tr-1", rule="r", step="errors", timeout=10)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with running_prometheus(tmp_path_factory.mktemp("prometheus")) as server:
        server.exporter.set("errors_ratio", 0.07, service="web")
        server.exporter.set("errors_ratio", 0.002, service="api")
        server.exporter.set("queue_depth", 3, queue="a")
        server.exporter.set("queue_depth", 5, queue="b")
        yield server


@pytest.fixture
async def scraped(prometheus: Prometheus) -> Prometheus:
    """The module's samples are in Prometheus (the first test waits for the scrape)."""
    await prometheus.sees('errors_ratio{service="web"}', 0.07)
    await prometheus.sees('queue_depth{queue="b"}', 5)
    return prometheus


@pytest.fixture
async def client(scraped: Prometheus) -> AsyncIterator[PromClient]:
    metrics = Metrics(CollectorRegistry())
    promclient = PromClient(PromSettings(url=scraped.url), metrics)
    yield promclient
    await promclient.close()


async def ask(client: PromClient, query: str, **extra: object) -> dict[str, object]:
    return await PrometheusAction(client).run({"query": query, **extra}, CONTEXT)


async def test_a_vector_answer_lists_every_sample_with_its_labels(client: PromClient) -> None:
    output = await ask(client, "sort(queue_depth)")
    assert output["query"] == "sort(queue_depth)"
    assert output["value"] == 3.0
    values = output["values"]
    assert isinstance(values, list)
    assert [(v["labels"]["queue"], v["value"]) for v in values] == [("a", 3.0), ("b", 5.0)]
    assert values[0]["labels"]["__name__"] == "queue_depth"


async def test_a_scalar_answer_is_one_unlabelled_value(client: PromClient) -> None:
    output = await ask(client, "scalar(sum(queue_depth)) * 2")
    assert output["value"] == 16.0
    assert output["values"] == [{"labels": {}, "value": 16.0}]


async def test_an_empty_answer_is_null_and_no_values(client: PromClient) -> None:
    output = await ask(client, 'errors_ratio{service="nowhere"}')
    assert output == {"value": None, "values": [], "query": 'errors_ratio{service="nowhere"}'}


async def test_a_nan_answer_is_a_float(client: PromClient) -> None:
    output = await ask(client, "scalar(vector(0) / 0)")
    assert isinstance(output["value"], float) and math.isnan(output["value"])


async def test_queries_are_counted_by_result_and_timed(client: PromClient) -> None:
    metrics = client._metrics
    assert metrics is not None
    await ask(client, "queue_depth")
    await ask(client, "absent_metric_nobody_exports")
    with pytest.raises(StepError):
        await ask(client, "sum(")
    sample = metrics.registry.get_sample_value
    assert sample("remediator_prometheus_queries_total", {"result": "ok"}) == 1
    assert sample("remediator_prometheus_queries_total", {"result": "empty"}) == 1
    assert sample("remediator_prometheus_queries_total", {"result": "error"}) == 1
    assert sample("remediator_prometheus_query_duration_seconds_count") == 3


# --- a rule deciding on the answer ------------------------------------------------------

RULE = """
rules:
  - name: check-then-restart
    on: [alerts.HighErrors]
    actions:
      - name: errors
        prometheus:
          query: 'sum(errors_ratio{service="{{ event.labels.service }}"})'
      - name: restart
        when: "results.errors.value is not none and results.errors.value > 0.05"
        http: {method: POST, url: "%s/restart/{{ event.labels.service }}"}
"""


async def decide(tmp_path: Path, client: PromClient, service: str) -> tuple[object, HttpTarget]:
    target = await HttpTarget().start()
    try:
        (tmp_path / "r.yaml").write_text(RULE % target.url)
        secrets = Secrets({})
        rules = load_rules([tmp_path / "r.yaml"], Templates(secrets))
        actions = {"prometheus": PrometheusAction(client), "http": HTTPAction()}
        engine = Engine.build(RuleIndex(rules), actions, secrets)
        payload = {"labels": {"service": service}}
        event = Event(
            subject="alerts.HighErrors", headers={}, payload=payload, event_id="e", trace_id="t"
        )
        (result,) = await engine.process(event)
        await actions["http"].close()
    finally:
        await target.stop()
    return result, target


async def test_above_the_threshold_the_next_step_runs(tmp_path: Path, client: PromClient) -> None:
    result, target = await decide(tmp_path, client, "web")
    assert result.status == "succeeded"  # type: ignore[attr-defined]
    errors, restart = result.steps  # type: ignore[attr-defined]
    assert errors.output["value"] == pytest.approx(0.07)
    assert errors.output["query"] == 'sum(errors_ratio{service="web"})'
    assert restart.status == "succeeded"
    assert [r.path for r in target.received] == ["/restart/web"]


async def test_below_the_threshold_the_step_is_skipped_and_so_is_the_rule(
    tmp_path: Path, client: PromClient
) -> None:
    result, target = await decide(tmp_path, client, "api")
    errors, restart = result.steps  # type: ignore[attr-defined]
    assert errors.status == "succeeded" and errors.output["value"] == pytest.approx(0.002)
    assert restart.status == "skipped"
    assert target.received == []
    # The query is not an action step's work: a rule whose acting steps were all
    # skipped did nothing, and says so.
    assert result.status == "skipped"  # type: ignore[attr-defined]


async def test_an_empty_answer_skips_a_step_guarded_against_none(
    tmp_path: Path, client: PromClient
) -> None:
    result, target = await decide(tmp_path, client, "nowhere")
    errors, restart = result.steps  # type: ignore[attr-defined]
    assert errors.output == {"value": None, "values": [], "query": errors.output["query"]}
    assert restart.status == "skipped" and target.received == []


# --- errors -----------------------------------------------------------------------------


async def test_a_rejected_query_is_permanent_and_carries_prometheus_s_message(
    client: PromClient,
) -> None:
    with pytest.raises(StepError) as caught:
        await ask(client, "sum(rate(queue_depth[5m])")
    error = caught.value
    assert error.permanent
    assert "HTTP 400" in error.message and "bad_data" in error.message
    assert "unclosed left parenthesis" in error.message  # Prometheus's own words


def step(kind: str, request: Mapping[str, object], *, attempts: int, timeout: float) -> Rule:
    templates = Templates(Secrets({}))
    source = Source(file="t.yaml", line=1)
    only = Step(
        name="errors",
        kind=kind,
        request=templates.compile(dict(request)),
        timeout=timeout,
        retry=RetryPolicy(attempts=attempts, backoff=0.01, max_backoff=0.01),
        source=source,
    )
    return Rule(name="r", subjects=("x",), steps=(only,), source=source)


async def run_one(client: PromClient, rule: Rule) -> object:
    engine = Engine.build(RuleIndex((rule,)), {"prometheus": PrometheusAction(client)}, Secrets({}))
    event = Event(subject="x", headers={}, payload={}, event_id="e", trace_id="t")
    (result,) = await engine.process(event)
    return result.steps[0]


async def test_a_rejected_query_is_tried_once(client: PromClient) -> None:
    rule = step("prometheus", {"query": "sum("}, attempts=3, timeout=10)
    outcome = await run_one(client, rule)
    assert outcome.status == "failed" and outcome.attempts == 1  # type: ignore[attr-defined]


async def test_an_unreachable_prometheus_is_retried_then_fails_naming_it() -> None:
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = PromClient(PromSettings(url=address))
    rule = step("prometheus", {"query": "up"}, attempts=3, timeout=10)
    try:
        outcome = await run_one(client, rule)
    finally:
        await client.close()
    assert outcome.status == "failed" and outcome.attempts == 3  # type: ignore[attr-defined]
    assert f"Prometheus at {address} unreachable" in outcome.error  # type: ignore[attr-defined]


async def test_a_slow_answer_is_bound_by_the_step_timeout() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": []}}
        )

    app = web.Application()
    app.router.add_post("/api/v1/query", slow)
    runner, port = await serve(app)
    client = PromClient(PromSettings(url=f"http://127.0.0.1:{port}"))
    try:
        outcome = await run_one(
            client, step("prometheus", {"query": "up"}, attempts=1, timeout=0.5)
        )
    finally:
        release.set()
        await client.close()
        await runner.cleanup()
    assert outcome.status == "failed"  # type: ignore[attr-defined]
    assert outcome.error == "timed out after 0.5s"  # type: ignore[attr-defined]


async def test_a_step_s_own_url_overrides_the_config(scraped: Prometheus) -> None:
    client = PromClient(PromSettings(url=f"http://127.0.0.1:{free_port()}"))
    try:
        output = await ask(client, "sum(queue_depth)", url=scraped.url)
    finally:
        await client.close()
    assert output["value"] == 8.0


# --- the config section -----------------------------------------------------------------


async def test_the_token_and_headers_are_sent_and_the_token_is_masked() -> None:
    target = await HttpTarget().start()
    target.default.body = {
        "status": "success",
        "data": {"resultType": "scalar", "result": [1, "2"]},
    }
    secrets = Secrets({"PROM_TOKEN": "s3cret-token"})
    section = {
        "url": target.url,
        "token": "secret(PROM_TOKEN)",
        "headers": {"X-Scope-OrgID": "tenant-1"},
    }
    client = PromClient(PromSettings.from_config(section, secrets))
    try:
        output = await ask(client, "up")
    finally:
        await client.close()
        await target.stop()
    (received,) = target.received
    assert received.headers["Authorization"] == "Bearer s3cret-token"
    assert received.headers["X-Scope-OrgID"] == "tenant-1"
    assert output["value"] == 2.0
    assert secrets.mask("header Bearer s3cret-token") == "header Bearer ***"
    assert secrets.mask("tenant-1") == "tenant-1"  # a plain header is not a secret


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"url": "prometheus:9090"}, "prometheus.url: not an http"),
        ({"url": "http://p", "tls": {"verify": "no"}}, "prometheus.tls.verify"),
        ({"url": "http://p", "timeout": 5}, "unknown key(s) timeout"),
        ({"url": "http://p", "token": "secret(UNSET_TOKEN)"}, "UNSET_TOKEN"),
    ],
)
def test_a_bad_config_section_names_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PromSettings.from_config(section, Secrets({}))


def test_tls_verify_false_and_a_ca_file(tmp_path: Path) -> None:
    assert PromSettings.from_config({"tls": {"verify": False}}, Secrets({})).ssl() is False
    assert PromSettings.from_config({}, Secrets({})).ssl() is True
