"""routes.tf: Terraform's routes are the Python routes, and their prefixes are where ingest writes."""

from __future__ import annotations

from datetime import UTC, datetime

from telemetry.common import wire
from tests.terraform.hcl import _expr

# --- Routes: Terraform and Python agree -----------------------------------------------


def test_routes_are_the_python_routes(routes):
    assert set(routes) == set(wire.ROUTES)
    for route, spec in routes.items():
        assert spec["prefix"] == f"{route}/"
        assert spec["source_dir"] == route.replace("-", "_")
        assert spec["entry_point"] == route.replace("-", "_")


def test_notification_prefixes_cover_where_ingest_writes(routes):
    from telemetry.common.stored_ping import object_name

    when = datetime(2026, 11, 23, 11, 47, tzinfo=UTC)
    for route, spec in routes.items():
        name = object_name(route, when, "abc")
        assert name.startswith(spec["prefix"]), (name, spec["prefix"])
        # ... and no other route's prefix catches it.
        others = [s["prefix"] for r, s in routes.items() if r != route]
        assert not any(name.startswith(p) for p in others), name


def test_route_prefixes_local(tf):
    assert _expr(tf["locals"]["route_prefixes"]) == "[for route in local.routes : route.prefix]"
