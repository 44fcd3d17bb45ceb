"""deploy/observability: the alert rules and the Grafana dashboard, validated offline.

Always: the files parse, every rule has what an operator needs (``alert``, ``expr``, ``for``,
``labels.severity``, ``annotations.summary``), expressions are well formed, and every metric they
name is one the code defines (or RabbitMQ's or Prometheus's own). With ``promtool`` installed
(Debian package ``prometheus``): ``promtool check rules`` and, for each alert, a promtool unit
test that feeds it series and checks that it stays quiet, then fires with the right labels and
summary.
"""

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
ALERTS = OBSERVABILITY / "alerts.yaml"
DASHBOARD = OBSERVABILITY / "dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")

#: Series the RabbitMQ prometheus plugin exports per queue (endpoint /metrics/per-object).
RABBITMQ_METRICS = {"rabbitmq_queue_messages", "rabbitmq_queue_consumers"}
#: Series Prometheus adds to every target itself.
PROMETHEUS_METRICS = {"up"}
#: A metric prefix and the service that defines it, for checkouts where it is not present yet.
SERVICE_PREFIXES = {"notifier_": "notifier", "media_": "media", "backup_": "backup"}
SEVERITIES = {"warning", "critical"}
DURATION = re.compile(r"^(0|([0-9]+(ms|[smhdwy]))+)$")
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "inf", "nan",
}  # fmt: skip
METRIC_DEFINITION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"", re.S
)


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]


@cache
def defined_metrics() -> frozenset[str]:
    """Every series name the code exports: prometheus_client's names with their suffixes."""
    names: set[str] = set()
    for source in [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]:
        for kind, name in METRIC_DEFINITION.findall(source.read_text()):
            if kind == "Counter":
                base = name.removesuffix("_total")
                names |= {f"{base}_total", f"{base}_created"}
            elif kind in ("Histogram", "Summary"):
                names |= {name, *(f"{name}_{s}" for s in ("bucket", "sum", "count", "created"))}
            else:
                names.add(name)
    return frozenset(names)


def without_strings(expr: str) -> str:
    return re.sub(r'"(\\.|[^"\\])*"|`[^`]*`', '""', expr)


def metric_names(expr: str) -> set[str]:
    """The series an expression reads (not functions, keywords, labels or durations)."""
    text = without_strings(expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
        name = match.group(1)
        if name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def is_balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in without_strings(expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack and expr.count('"') % 2 == 0


def unknown_metrics(exprs: list[str]) -> set[str]:
    known = defined_metrics() | RABBITMQ_METRICS | PROMETHEUS_METRICS
    not_yet_built = tuple(
        prefix
        for prefix, service in SERVICE_PREFIXES.items()
        if not (ROOT / "services" / service).is_dir()
    )
    used = set().union(*(metric_names(expr) for expr in exprs))
    return {name for name in used - known if not name.startswith(not_yet_built)}


def test_the_metric_name_reader_itself() -> None:
    expr = (
        'sum by (job) (rate(http_requests_total{status=~"5.."}[5m])) / on () group_left '
        "max(up offset 1h) > 0.02 and on () hour() == 6"
    )
    assert metric_names(expr) == {"http_requests_total", "up"}
    assert is_balanced(expr)
    assert not is_balanced("sum(rate(x[5m])")
    assert not is_balanced('x{a="b}')
    assert "events_published_total" in defined_metrics()
    assert "http_request_duration_seconds_bucket" in defined_metrics()


def test_every_rule_is_complete_and_well_formed() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))
    alerts = [rule["alert"] for rule in rules()]
    assert len(alerts) == len(set(alerts))
    for rule in rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
        assert DURATION.match(str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert is_balanced(rule["expr"]), rule["alert"]
        assert metric_names(rule["expr"]), rule["alert"]


def test_the_alerts_the_platform_promised_exist() -> None:
    promised = {
        "DeadLetterQueueNotEmpty",
        "OutboxBacklogStale",
        "QueueWithoutConsumers",
        "DigestNotCompleteBy0630",
        "BackupMissing",
        "HighErrorRate",
    }
    assert promised <= {rule["alert"] for rule in rules()}


def test_rules_and_dashboard_read_only_metrics_that_exist() -> None:
    assert unknown_metrics([rule["expr"] for rule in rules()]) == set()
    assert unknown_metrics(dashboard_exprs()) == set()


def test_dashboard_shows_every_metric_an_alert_watches() -> None:
    on_dashboard = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    alerted = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    assert alerted - on_dashboard == set()


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["title"] and panel["datasource"]["type"] == "prometheus"
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert is_balanced(target["expr"]), panel["title"]


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class AlertCase:
    """Series fed to promtool; the alert is quiet at ``quiet_at`` and firing at ``fires_at``."""

    alert: str
    series: dict[str, str]
    quiet_at: str
    fires_at: str
    labels: list[dict[str, str]]
    summary: str
    description: dict[str, str] = field(default_factory=dict)


CASES = [
    AlertCase(
        "DeadLetterQueueNotEmpty",
        {
            'rabbitmq_queue_messages{vhost="/",queue="recipes.events.dlq"}': "0 0 2x10",
            'rabbitmq_queue_messages{vhost="/",queue="recipes.events"}': "5x12",
        },
        quiet_at="5m",
        fires_at="8m",
        labels=[{"vhost": "/", "queue": "recipes.events.dlq"}],
        summary="Dead-letter queue recipes.events.dlq holds 2 message(s)",
        description={'{{ $labels.queue | reReplaceAll "\\\\.dlq$" "" }}': "recipes.events"},
    ),
    AlertCase(
        "EventsDeadLettered",
        {'events_dead_lettered_total{job="media",queue="media.events"}': "0 0 0 1x10"},
        quiet_at="2m",
        fires_at="5m",
        labels=[{"job": "media", "queue": "media.events"}],
        summary="media dead-lettered events from media.events",
    ),
    AlertCase(
        "OutboxBacklogStale",
        {'outbox_oldest_age_seconds{job="recipes",instance="recipes-1"}': "0 30 70 130 190 250"},
        quiet_at="2m",
        fires_at="4m",
        labels=[{"job": "recipes"}],
        summary="recipes: oldest unpublished outbox row is 3m 10s old",
    ),
    AlertCase(
        "OutboxQuarantineNotEmpty",
        {'outbox_quarantined{job="auth",instance="auth-1"}': "0 0 0 1x5"},
        quiet_at="2m",
        fires_at="3m",
        labels=[{"job": "auth"}],
        summary="auth: 1 outbox event(s) quarantined as unpublishable",
    ),
    AlertCase(
        "ConsumerNotAttached",
        {
            'consumers_attached{job="notifier",instance="notifier-1",queue="notifier.events"}': (
                "1 1 0x8"
            )
        },
        quiet_at="3m",
        fires_at="5m",
        labels=[{"job": "notifier", "instance": "notifier-1", "queue": "notifier.events"}],
        summary="notifier is not consuming notifier.events",
    ),
    AlertCase(
        "QueueWithoutConsumers",
        {
            'rabbitmq_queue_consumers{vhost="/",queue="media.events"}': "1 0x10",
            'rabbitmq_queue_consumers{vhost="/",queue="media.events.dlq"}': "0x11",
            'rabbitmq_queue_consumers{vhost="/",queue="media.events.retry.0"}': "0x11",
        },
        quiet_at="5m",
        fires_at="7m",
        labels=[{"vhost": "/", "queue": "media.events"}],
        summary="No consumer on queue media.events",
    ),
    AlertCase(
        "DigestsOverdue",
        {'notifier_digests_due{job="notifier",instance="notifier-1"}': "0 3x40"},
        quiet_at="20m",
        fires_at="35m",
        labels=[{"job": "notifier"}],
        summary="3 digest(s) due for more than 30 minutes are still unsent",
    ),
    AlertCase(
        # The test clock starts at 1970-01-01 00:00 UTC: due from 06:10, still due at 06:40.
        "DigestNotCompleteBy0630",
        {'notifier_digests_due{job="notifier",instance="notifier-1"}': "0x370 4x60"},
        quiet_at="6h20m",
        fires_at="6h40m",
        labels=[{"job": "notifier"}],
        summary="The 6 AM digest is not complete at 06:30 (4 still due)",
    ),
    AlertCase(
        # A backup succeeded at the start of the test clock, then never again.
        "BackupMissing",
        {'backup_last_success_timestamp_seconds{job="backup",instance="backup-1"}': "0x11600"},
        quiet_at="7d",
        fires_at="8d20m",
        labels=[{"job": "backup"}],
        summary="No successful user-data backup for 8d 0h 20m 0s",
    ),
    AlertCase(
        # recipes: 1 error in 101 requests; auth: 5 in 105.
        "HighErrorRate",
        {
            'http_requests_total{job="recipes",method="GET",route="/r",status="200"}': "0+100x20",
            'http_requests_total{job="recipes",method="GET",route="/r",status="500"}': "0+1x20",
            'http_requests_total{job="auth",method="POST",route="/a",status="200"}': "0+100x20",
            'http_requests_total{job="auth",method="POST",route="/a",status="503"}': "0+5x20",
        },
        quiet_at="3m",
        fires_at="10m",
        labels=[{"job": "auth"}],
        summary="auth: 4.762% of requests fail with 5xx",
    ),
    AlertCase(
        "ServiceDown",
        {'up{job="media",instance="media-1"}': "1 1 0x6"},
        quiet_at="3m",
        fires_at="5m",
        labels=[{"job": "media", "instance": "media-1"}],
        summary="media (media-1) cannot be scraped",
    ),
]


def test_every_alert_has_a_promtool_case() -> None:
    assert {case.alert for case in CASES} == {rule["alert"] for rule in rules()}


@needs_promtool
@pytest.mark.parametrize("case", CASES, ids=[case.alert for case in CASES])
def test_alert_stays_quiet_then_fires(case: AlertCase, tmp_path: Path) -> None:
    assert PROMTOOL is not None
    [rule] = [rule for rule in rules() if rule["alert"] == case.alert]
    description = rule["annotations"]["description"]
    for template, rendered in case.description.items():
        description = description.replace(template, rendered)
    expected = [
        {
            "exp_labels": {**labels, "severity": rule["labels"]["severity"]},
            "exp_annotations": {"summary": case.summary, "description": description},
        }
        for labels in case.labels
    ]
    evaluations = [
        {"eval_time": case.quiet_at, "alertname": case.alert, "exp_alerts": []},
        {"eval_time": case.fires_at, "alertname": case.alert, "exp_alerts": expected},
    ]
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(ALERTS)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {"series": series, "values": values}
                            for series, values in case.series.items()
                        ],
                        "alert_rule_test": evaluations,
                    }
                ],
            }
        )
    )
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
