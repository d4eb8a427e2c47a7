"""The Grafana dashboard: importable as is, and every query names a metric the daemon exports.

The PromQL of each target (and of the template variables) is tokenized here:
brackets must balance, and every `remediator_*` series it selects must be one
a `Metrics` registry exports, counting the `_total`, `_bucket`, `_sum` and
`_count` series Prometheus derives from counters and histograms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry

from remediator.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "remediator.json"
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*|\$\{?\w+\}?|[(){}\[\],]|[^\sA-Za-z_(){}\[\],]+")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "atan2"} | {
    # aggregation operators, which may be followed by `by (...)` instead of `(`
    *(
        [
            "sum",
            "min",
            "max",
            "avg",
            "group",
            "stddev",
            "stdvar",
            "count",
            "count_values",
            "bottomk",
            "topk",
            "quantile",
        ]
    ),
}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def load() -> dict[str, object]:
    document = json.loads(DASHBOARD.read_text())
    assert isinstance(document, dict)
    return document


def exported() -> set[str]:
    """Every series name the daemon's registry exports."""
    names = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
    return names


def expressions(document: dict[str, object]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable."""
    panels = document["panels"]
    assert isinstance(panels, list)
    for panel in panels:
        for target in panel["targets"]:
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in document["templating"]["list"]:  # type: ignore[index]
        if variable["type"] == "query":  # Grafana's label_values(SELECTOR, LABEL)
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert found, f"variable {variable['name']}: {variable['definition']}"
            yield f"variable {variable['name']}", found.group(1)


def series(expr: str) -> list[str]:
    """The metric names a PromQL expression selects (function names and labels left out)."""
    tokens = _TOKEN.findall(_RANGE.sub("", _STRING.sub('""', expr)))
    names, depth_braces, grouping = [], 0, False
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token == "{":
            depth_braces += 1
        elif token == "}":
            depth_braces -= 1
        elif token in _GROUPING:
            grouping = True
        elif token == ")" and grouping:
            grouping = False
        elif re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", token):
            if depth_braces or grouping or following == "(" or token in _KEYWORDS:
                continue  # a label, a function, an aggregation or an operator
            names.append(token)
    return names


def balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in _STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_the_dashboard_is_importable_as_is() -> None:
    document = load()
    assert isinstance(document["schemaVersion"], int) and document["title"] == "remediator"
    variables = {v["name"]: v for v in document["templating"]["list"]}  # type: ignore[index]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = document["panels"]
    assert isinstance(panels, list) and len(panels) >= 10
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_every_query_names_a_metric_the_daemon_exports() -> None:
    known = exported()
    used = set()
    for where, expr in expressions(load()):
        assert balanced(expr), f"{where}: unbalanced brackets in {expr}"
        names = series(expr)
        assert names, f"{where}: selects no metric: {expr}"
        unknown = [n for n in names if n not in known]
        assert not unknown, f"{where}: not exported by the daemon: {unknown}"
        used.update(names)
    # The families the README documents are all on the dashboard, under some series name.
    families = {f.name for f in Metrics(CollectorRegistry()).registry.collect()}
    shown = {f for f in families if any(u == f or u.startswith(f + "_") for u in used)}
    assert shown == families, f"no panel for {sorted(families - shown)}"


def test_the_checker_catches_a_wrong_name() -> None:
    expr = 'sum by (rule) (rate(remediator_rule_result_total{job=~"$job"}[5m]))'
    assert series(expr) == ["remediator_rule_result_total"]
    assert "remediator_rule_result_total" not in exported()
    assert not balanced("sum(rate(remediator_steps_total[5m])")
