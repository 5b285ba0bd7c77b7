"""storage.tf and pubsub.tf: the pings bucket, its notifications, the topic and the per-route subscriptions."""

from __future__ import annotations

from telemetry.common import config, wire
from tests.terraform.hcl import _block, _expr, _render, _resource

# --- Bucket, topic, notifications, subscriptions --------------------------------------


def test_pings_bucket_is_private_and_expires_raw_pings(tf):
    bucket = _resource(tf, "google_storage_bucket", "pings")
    assert _expr(bucket["name"]) == "var.tracking_bucket"
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["force_destroy"] is False
    rule = _block(bucket, "lifecycle_rule")
    assert _block(rule, "action")["type"] == "Delete"
    condition = _block(rule, "condition")
    assert _expr(condition["age"]) == "var.raw_ping_retention_days"
    assert _expr(condition["matches_prefix"]) == "local.route_prefixes"
    assert tf["variable"]["raw_ping_retention_days"]["default"] == 400

    source = _resource(tf, "google_storage_bucket", "function_source")
    assert source["uniform_bucket_level_access"] is True
    assert source["public_access_prevention"] == "enforced"


def test_notifications_per_prefix_after_publisher_grant(tf, routes):
    note = _resource(tf, "google_storage_notification", "pings")
    assert _expr(note["for_each"]) == "local.routes"
    assert _expr(note["bucket"]) == "google_storage_bucket.pings.name"
    assert _expr(note["topic"]) == "google_pubsub_topic.pings.id"
    assert note["payload_format"] == "JSON_API_V1"
    assert note["event_types"] == ["OBJECT_FINALIZE"]
    assert {_render(note["object_name_prefix"], tf, r, s) for r, s in routes.items()} == {
        f"{r}/" for r in wire.ROUTES
    }

    for name, body in tf["resource"]["google_storage_notification"].items():
        deps = [_expr(d) for d in body.get("depends_on", [])]
        grants = [d for d in deps if d.startswith("google_pubsub_topic_iam_member.")]
        assert grants, f"notification {name} does not depend on the publisher grant"
        for dep in grants:
            grant = _resource(tf, *dep.split("."))
            assert grant["role"] == "roles/pubsub.publisher"
            assert _expr(grant["topic"]) == "google_pubsub_topic.pings.name"
            assert "data.google_storage_project_service_account." in grant["member"]

    topic = _resource(tf, "google_pubsub_topic", "pings")
    assert _expr(topic["name"]) == "var.pings_topic"


def test_subscriptions_named_and_filtered_per_route(tf, routes):
    sub = _resource(tf, "google_pubsub_subscription", "pings")
    assert _expr(sub["for_each"]) == "local.routes"
    assert _expr(sub["topic"]) == "google_pubsub_topic.pings.id"
    topic = tf["variable"]["pings_topic"]["default"]
    for route, spec in routes.items():
        assert _render(sub["name"], tf, route, spec) == config.subscription_name(topic, route)
        assert _render(sub["filter"], tf, route, spec) == f'hasPrefix(attributes.objectId, "{route}/")'
    assert sub["ack_deadline_seconds"] == 600
    assert sub["message_retention_duration"] == "604800s"
    assert _block(sub, "expiration_policy")["ttl"] == ""
    assert "push_config" not in sub


def test_pings_bucket_cannot_be_destroyed_by_a_plan(tf):
    bucket = _resource(tf, "google_storage_bucket", "pings")
    assert bucket["force_destroy"] is False
    assert bucket["lifecycle"] == [{"prevent_destroy": True}]


def test_build_bucket_is_private_and_expires(tf):
    bucket = _resource(tf, "google_storage_bucket", "build")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    (rule,) = bucket["lifecycle_rule"]
    assert _expr(rule["condition"][0]["age"]) == "var.build_bucket_retention_days"
