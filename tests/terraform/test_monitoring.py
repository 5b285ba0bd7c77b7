"""monitoring.tf: an alert policy per signal, the log-based metric of unbalanced runs, the optional budget."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.hcl import ROOT, _block, _expr, _resource

PIPELINES_RECONCILIATION = ROOT / "telemetry" / "pipelines" / "reconciliation.py"
ANALYTICS_JOB = ROOT / "telemetry" / "analytics" / "job.py"


def _policies(tf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return tf["resource"]["google_monitoring_alert_policy"]


def _filters(policy: dict[str, Any]) -> list[str]:
    texts = []
    for condition in policy["conditions"]:
        for kind in ("condition_threshold", "condition_matched_log"):
            for body in condition.get(kind, []):
                texts.append(_plain(body["filter"]))
    return texts


def _plain(text: Any) -> str:
    """A filter's text with python-hcl2's left-over escaped quotes (inside ${...}) undone."""
    return str(text).replace('\\"', '"')


def _policy_with(tf: dict[str, Any], *needles: str) -> tuple[str, dict[str, Any]]:
    found = [(n, p) for n, p in _policies(tf).items() if any(all(x in f for x in needles) for f in _filters(p))]
    assert len(found) == 1, f"expected one alert policy filtering on {needles}, got {[n for n, _ in found]}"
    return found[0]


def _log_call(path: Path, function: str, method: str) -> ast.Call:
    """The one `log.<method>(...)` call in `function` of the module at path."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    (func,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
    calls = [
        n
        for n in ast.walk(func)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == method
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "log"
    ]
    assert len(calls) == 1, f"{path.name}:{function} has {len(calls)} log.{method} calls"
    return calls[0]


def _message(call: ast.Call) -> str:
    first = call.args[0]
    assert isinstance(first, ast.Constant) and isinstance(first.value, str)
    return first.value


# --- One policy per signal ------------------------------------------------------------


@pytest.mark.parametrize(
    "needles",
    [
        ("run.googleapis.com/request_count", 'response_code_class = "5xx"', "local.ingest_services_filter"),
        ("run.googleapis.com/request_latencies", "local.ingest_services_filter"),
        ("run.googleapis.com/container/instance_count", "local.ingest_services_filter"),
        ("dataflow.googleapis.com/job/is_failed", "local.pipeline_jobs_filter"),
        ("dataflow.googleapis.com/job/elapsed_time", "local.pipeline_jobs_filter"),
        ("pubsub.googleapis.com/subscription/oldest_unacked_message_age", "local.route_subscriptions_filter"),
        ("logging.googleapis.com/user/${google_logging_metric.unreconciled_runs.name}",),
        ('resource.type="cloud_scheduler_job"', "local.scheduler_job_ids", "severity>=ERROR"),
        ("local.analytics_failure_message", "google_cloudfunctions2_function.analytics.name", "severity>=ERROR"),
    ],
)
def test_a_policy_watches_each_signal(tf, needles):
    _policy_with(tf, *needles)


def test_every_policy_notifies_the_channels_and_says_what_to_do(tf):
    variable = tf["variable"]["alert_notification_channels"]
    assert variable["default"] == [], "no channel: the policies exist and notify nobody"
    for name, policy in _policies(tf).items():
        assert _expr(policy["notification_channels"]) == "var.alert_notification_channels", name
        assert _expr(policy["project"]) == "var.project_id", name
        assert "count" not in policy and "for_each" not in policy, f"{name} exists whatever the channels"
        assert _block(policy, "documentation")["content"], name
        assert policy["severity"] in ("ERROR", "WARNING"), name


def test_the_signals_cover_the_stack(tf):
    locals_ = tf["locals"]
    # The three ingest functions, both hourly jobs, every route subscription, every schedule.
    assert _expr(locals_["ingest_services"]) == "sort([for fn in google_cloudfunctions2_function.ingest : fn.name])"
    assert "values(local.pipeline_job_names)" in _plain(locals_["pipeline_jobs_filter"])
    assert "google_pubsub_subscription.pings" in _plain(locals_["route_subscriptions_filter"])
    scheduler_ids = _plain(locals_["scheduler_job_ids"])
    assert "google_cloud_scheduler_job.pipeline" in scheduler_ids
    assert "google_cloud_scheduler_job.analytics.name" in scheduler_ids
    # Saturation is measured against the functions' own ceiling.
    (_, saturation) = _policy_with(tf, "run.googleapis.com/container/instance_count")
    threshold = _block(saturation["conditions"][0], "condition_threshold")
    assert _expr(threshold["threshold_value"]) == "var.function_max_instances * var.alert_instance_saturation"
    # An overrun alerts before Dataflow's own bound cancels the run.
    variables = tf["variable"]
    assert variables["alert_pipeline_elapsed_seconds"]["default"] < variables["pipeline_max_runtime_seconds"]["default"]


# --- The log lines the code writes ----------------------------------------------------------


def test_unreconciled_metric_matches_the_line_the_pipelines_log(tf):
    error = _log_call(PIPELINES_RECONCILIATION, "log_reconciliation", "error")
    info = _log_call(PIPELINES_RECONCILIATION, "log_reconciliation", "info")
    message = tf["locals"]["unreconciled_message"]
    assert _message(error) == message  # what an unbalanced run logs, at ERROR
    assert _message(info) not in message  # a balanced run's line does not match
    # The report (with its `balanced` field) rides along as an extra, not in the message.
    assert [k.arg for k in error.keywords] == ["extra"]

    metric = _resource(tf, "google_logging_metric", "unreconciled_runs")
    text = _plain(metric["filter"])
    assert 'resource.type="dataflow_step"' in text
    assert "severity>=ERROR" in text
    # As the message field (Beam's worker log handler) or inside the JSON line (captured stdout).
    assert 'jsonPayload.message:"${local.unreconciled_message}"' in text
    assert 'textPayload:"${local.unreconciled_message}"' in text
    descriptor = _block(metric, "metric_descriptor")
    assert (descriptor["metric_kind"], descriptor["value_type"]) == ("DELTA", "INT64")


def test_analytics_alert_matches_the_line_the_function_logs(tf):
    call = _log_call(ANALYTICS_JOB, "handle", "exception")  # log.exception: severity ERROR
    assert _message(call) == tf["locals"]["analytics_failure_message"]
    (_, policy) = _policy_with(tf, "local.analytics_failure_message")
    (text,) = _filters(policy)
    assert 'jsonPayload.message="${local.analytics_failure_message}"' in text
    assert 'resource.type="cloud_run_revision"' in text
    # A log-match condition needs a notification rate limit.
    assert _block(_block(policy, "alert_strategy"), "notification_rate_limit")["period"]


# --- Budget ---------------------------------------------------------------------------------


def test_budget_only_with_a_billing_account(tf):
    budget = _resource(tf, "google_billing_budget", "project")
    assert _expr(budget["count"]) == 'var.billing_account == "" ? 0 : 1'
    assert tf["variable"]["billing_account"]["default"] == ""
    assert _expr(budget["billing_account"]) == "var.billing_account"
    (rules,) = budget["dynamic"]
    assert rules["threshold_rules"]["for_each"] == [0.5, 0.9, 1.0]
    updates = _block(budget, "all_updates_rule")
    assert _expr(updates["monitoring_notification_channels"]) == "var.alert_notification_channels"
    assert _block(budget, "budget_filter")["projects"] == ["projects/${data.google_project.this.number}"]
    assert _expr(_block(_block(budget, "amount"), "specified_amount")["units"]) == "tostring(var.budget_amount)"
