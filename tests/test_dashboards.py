"""The Grafana dashboard and the example autoscaling alerts, checked with the tools that will read them.

PromQL is parsed by promtool, not by a copy of its grammar: every dashboard query becomes a recording
rule in a group named after its panel, so a query that does not parse fails naming the panel. Grafana's
interval variables are replaced by a duration first, as Grafana does before it sends a query.

Which metrics a query reads is not something promtool 2.x prints, so ``metric_names`` takes them from
the expression once strings, label matchers, ranges and grouping clauses are cut out: what is left
that is neither a function, a keyword nor a number is a metric name. Those names are compared with
what a real ``Metrics()`` registers, each family with the suffixes its type exposes, and the label
names a query matches or groups by with the labels of its metrics (plus ``le`` on buckets, ``job`` and
``instance`` from the scrape), so a renamed or dropped metric or label fails here rather than as an
empty panel.

The autoscaling example is checked end to end on paper: promtool checks the rules, amtool checks the
Alertmanager config and routes each alert by its own labels; the receiver it reaches names an example
receiver whose action is the alert's, and whose ``fireOn`` decides ``send_resolved``. The autoscaling
alerts watch the workload being scaled (cAdvisor, the web app), so their metric names are not the
service's and are not compared.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from controller.drivers import load_drivers
from controller.drivers.contract import config_of
from controller.metrics import Metrics
from controller.model import Receiver
from controller.receivers.loader import load_paths
from tests.test_manifests import required_binary

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "manifests" / "monitoring" / "grafana-dashboard.json"
SERVICE_RULES = ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"
AUTOSCALING_RULES = ROOT / "examples" / "prometheus" / "autoscaling-rules.yml"
ALERTMANAGER = ROOT / "examples" / "prometheus" / "alertmanager.yml"
RECEIVERS = ROOT / "examples" / "receivers"
TOOL_TIMEOUT = 60

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_KINDS = {"timeseries", "stat"}
GRID_COLUMNS = 24
# What Grafana puts in place of its interval variables before it sends a query.
GRAFANA_INTERVALS = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "6h"}

# The suffixes each metric family type exposes in the text format.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}
# The label a suffix adds, and the labels Prometheus attaches to every scraped series.
SUFFIX_LABELS = {"_bucket": frozenset({"le"})}
TARGET_LABELS = ("job", "instance")

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAMES = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_MATCHED_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_LABEL = re.compile(r"[A-Za-z_]\w*")


class Query(TypedDict):
    expr: str
    refId: str
    datasource: dict[str, str]
    legendFormat: NotRequired[str]


class Panel(TypedDict):
    id: int
    type: str
    title: str
    datasource: dict[str, str]
    gridPos: dict[str, int]
    targets: list[Query]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (by name, not by ``{__name__=...}``)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _NAMES.findall(text) if name.lower() not in _KEYWORDS}


def label_names(expr: str) -> set[str]:
    """The label names a PromQL expression matches on or groups by."""
    text = _STRINGS.sub('""', expr)
    matched = {name for body in _MATCHERS.findall(text) for name in _MATCHED_LABEL.findall(body)}
    grouped = {name for clause in _GROUPING.findall(text) for name in _LABEL.findall(clause.split("(", 1)[1])}
    return matched | grouped


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the service's registry can expose, with the label names it carries."""
    metrics = Metrics()
    # prometheus_client has no public accessor for a metric's label names; families of a fresh
    # registry carry no samples to read them from.
    labels = {
        next(iter(wrapper.describe())).name: frozenset(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    return {
        family.name + suffix: labels.get(family.name, frozenset()) | SUFFIX_LABELS.get(suffix, frozenset())
        for family in metrics.registry.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def exported_names() -> set[str]:
    return set(exported_series())


def unknown_labels(expr: str, series: dict[str, frozenset[str]]) -> set[str]:
    """Label names ``expr`` uses that none of its metrics carries, nor Prometheus adds at the scrape."""
    carried = set(TARGET_LABELS).union(*(series.get(name, frozenset()) for name in metric_names(expr)))
    return label_names(expr) - carried


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[Panel]:
    found: list[Panel] = dashboard()["panels"]
    return found


def queries() -> Iterator[tuple[Panel, Query]]:
    for panel in panels():
        for target in panel["targets"]:
            yield panel, target


def as_sent(expr: str) -> str:
    for variable, duration in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, duration)
    return expr


def rule_groups(path: Path) -> list[dict[str, Any]]:
    loaded = yaml.safe_load(path.read_text())
    groups: list[dict[str, Any]] = loaded["spec"]["groups"] if "spec" in loaded else loaded["groups"]
    return groups


def alerts(path: Path) -> list[dict[str, Any]]:
    return [rule for group in rule_groups(path) for rule in group["rules"] if "alert" in rule]


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    promtool = required_binary("promtool", "prometheus")
    return subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=TOOL_TIMEOUT
    )


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = required_binary("amtool", "prometheus-alertmanager")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)


def alertmanager_receivers() -> dict[str, list[dict[str, Any]]]:
    """Alertmanager receiver name -> its webhook_configs."""
    config = yaml.safe_load(ALERTMANAGER.read_text())
    return {r["name"]: r.get("webhook_configs", []) for r in config["receivers"]}


def service_receiver(url: str) -> Receiver:
    """The example receiver whose trigger URL a webhook_config's placeholder stands for."""
    match = re.search(r"<([\w-]+) token>", url)
    assert match is not None, f"{url} holds no <receiver token> placeholder"
    receivers, problems = load_paths([RECEIVERS], load_drivers())
    assert problems == []
    [receiver] = [r for r in receivers if r.name == match.group(1)]
    return receiver


# -- the scanner the metric checks rely on


def test_metric_names_are_the_selectors_not_functions_labels_keywords_or_numbers() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="x", le!="+Inf"}[5m] offset 1h)))'
        " / on (job) group_left (instance) b_total > bool 1e3 or vector(1) and c:rate5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:rate5m"}


def test_label_names_are_those_matched_and_grouped_by_not_values_or_functions() -> None:
    expr = 'sum by (receiver) (rate(a_total{outcome="by (x)", code!~"2.."}[5m])) / on (job) b'
    assert label_names(expr) == {"receiver", "outcome", "code", "job"}


def test_exported_names_carry_each_type_s_suffixes() -> None:
    names = exported_names()
    assert {"webhook_hits_total", "webhook_receivers", "webhook_hit_duration_seconds_bucket"} <= names
    assert "webhook_hits" not in names


# -- the dashboard


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    groups = [
        {
            "name": f"{panel['title']} (panel {panel['id']})",
            "rules": [
                {"record": f"panel_{panel['id']}_{target['refId']}", "expr": as_sent(target["expr"])}
                for target in panel["targets"]
            ],
        }
        for panel in panels()
    ]
    rules = tmp_path / "dashboard-queries.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    checked = check_rules(rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_queries_use_no_variable_but_grafana_s_intervals() -> None:
    left = {panel["title"]: as_sent(t["expr"]) for panel, t in queries() if "$" in as_sent(t["expr"])}
    assert left == {}


def test_the_dashboard_names_only_metrics_the_service_exports() -> None:
    exported = exported_names()
    unknown = {
        f"{panel['title']} {target['refId']}": sorted(metric_names(target["expr"]) - exported)
        for panel, target in queries()
    }
    assert {query: names for query, names in unknown.items() if names} == {}


def test_the_dashboard_matches_and_groups_only_by_labels_its_metrics_carry() -> None:
    series = exported_series()
    unknown = {
        f"{panel['title']} {target['refId']}": sorted(unknown_labels(target["expr"], series))
        for panel, target in queries()
    }
    assert {query: labels for query, labels in unknown.items() if labels} == {}


def test_every_dashboard_panel_queries_at_least_one_metric() -> None:
    empty = [panel["title"] for panel in panels() if not panel["targets"]]
    assert empty == []
    assert all(metric_names(target["expr"]) for _, target in queries())


def test_the_dashboard_reads_the_prometheus_its_datasource_variable_picks() -> None:
    [variable] = dashboard()["templating"]["list"]
    assert (variable["name"], variable["type"]) == ("datasource", "datasource")
    assert variable["query"] == "prometheus"
    assert all(panel["datasource"] == DATASOURCE for panel in panels())
    assert all(target["datasource"] == DATASOURCE for _, target in queries())


def test_the_dashboard_is_made_of_current_grafana_panels() -> None:
    assert dashboard()["schemaVersion"] == 39
    assert {panel["type"] for panel in panels()} <= PANEL_KINDS
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))


def test_dashboard_panels_fit_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


# -- the service's own alerts


def test_the_service_alerts_name_only_metrics_the_service_exports() -> None:
    exported = exported_names()
    unknown = {rule["alert"]: sorted(metric_names(rule["expr"]) - exported) for rule in alerts(SERVICE_RULES)}
    assert {alert: names for alert, names in unknown.items() if names} == {}


def test_the_service_alerts_match_and_group_only_by_labels_their_metrics_carry() -> None:
    series = exported_series()
    unknown = {rule["alert"]: sorted(unknown_labels(rule["expr"], series)) for rule in alerts(SERVICE_RULES)}
    assert {alert: labels for alert, labels in unknown.items() if labels} == {}


# -- the autoscaling example


def test_the_autoscaling_rules_pass_promtool() -> None:
    checked = check_rules(AUTOSCALING_RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alertmanager_example_passes_amtool() -> None:
    checked = amtool("check-config", str(ALERTMANAGER))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_autoscaling_alert_says_up_or_down() -> None:
    assert sorted(alert["labels"]["action"] for alert in alerts(AUTOSCALING_RULES)) == ["down", "up"]


@pytest.mark.parametrize("alert", alerts(AUTOSCALING_RULES), ids=lambda alert: str(alert["alert"]))
def test_an_autoscaling_alert_is_routed_to_a_receiver_of_its_action(alert: dict[str, Any]) -> None:
    labels = [f"{name}={value}" for name, value in {"alertname": alert["alert"], **alert["labels"]}.items()]
    routed = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert routed.returncode == 0, routed.stdout + routed.stderr
    [name] = routed.stdout.split()
    configs = alertmanager_receivers()[name]
    assert configs, f"{alert['alert']} reaches {name}, which notifies nobody"
    for config in configs:
        receiver = service_receiver(config["url"])
        assert config_of(receiver.spec, "scaleServiceConfig")["action"] == alert["labels"]["action"]


def test_an_alert_without_an_action_notifies_nobody() -> None:
    routed = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER}", "alertname=DiskFull")
    [name] = routed.stdout.split()
    assert alertmanager_receivers()[name] == []


def test_send_resolved_is_what_each_receiver_s_fire_on_needs() -> None:
    configs = [config for configs in alertmanager_receivers().values() for config in configs]
    assert configs
    for config in configs:
        wants_resolved = "resolved" in service_receiver(config["url"]).fire_on
        assert config["send_resolved"] is wants_resolved, config["url"]
