"""What the pipelines do with each route's pings, described once as data.

The graph (graph.py), the per-route transform (transforms.ProcessRoute), the
MERGEs and the reconciliation all loop over these descriptions; none of them
branches on a route's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telemetry.common import sites, tables, wire
from telemetry.common.stored_ping import StoredPing
from telemetry.pipelines import records, warehouse


@dataclass(frozen=True)
class Route:
    name: str
    # The BigQuery table that keeps every accepted ping of the route.
    history: tables.TableLayout
    # The row of `history` for one ping (may raise records.Rejected); None when
    # the site record is the route's history row.
    record: Callable[[StoredPing, dict[str, Any]], dict[str, Any]] | None
    # The status a ping of the route gives its site in `sites`; None when the
    # route's pings describe no site.
    site_status: str | None
    # Whether the latest `history` record per site is also kept in MongoDB
    # `deactivations`.
    keeps_latest_deactivation: bool = False

    @property
    def label(self) -> str:
        """The route's name as a Beam label prefix: `tracking-skipped` -> `TrackingSkipped`."""
        return self.name.title().replace("-", "")

    @property
    def stages_site_history(self) -> bool:
        """Whether its site records go to BigQuery `sites` besides its own history."""
        return self.site_status is not None and self.history is not warehouse.SITES


def _tracking_skipped_row(ping: StoredPing, _project: dict[str, Any]) -> dict[str, Any]:
    return records.tracking_skipped_row(ping)


# Each route of the wire format (wire.ROUTES, the names) described, by name.
ROUTE_BY_NAME: dict[str, Route] = {
    route.name: route
    for route in (
        Route(wire.TRACK, warehouse.SITES, record=None, site_status=sites.ACTIVE),
        Route(wire.TRACKING_SKIPPED, warehouse.TRACKING_SKIPPED, record=_tracking_skipped_row, site_status=None),
        Route(
            wire.DEACTIVATE,
            warehouse.DEACTIVATIONS,
            record=records.deactivation_record,
            site_status=sites.DEACTIVATED,
            keeps_latest_deactivation=True,
        ),
    )
}
assert set(ROUTE_BY_NAME) == set(wire.ROUTES), "every route of the wire format is described"


@dataclass(frozen=True)
class Pipeline:
    name: str
    routes: tuple[Route, ...]


PIPELINES = {
    "tracking": Pipeline("tracking", (ROUTE_BY_NAME[wire.TRACK], ROUTE_BY_NAME[wire.TRACKING_SKIPPED])),
    "deactivation": Pipeline("deactivation", (ROUTE_BY_NAME[wire.DEACTIVATE],)),
}


def merges(pipeline: Pipeline) -> list[tuple[tables.TableLayout, str | None]]:
    """What a run MERGEs: each route's history table, the site history where a route
    stages sites besides its own history, and `rejected` once per route (to count by route)."""
    histories = [route.history for route in pipeline.routes]
    if any(route.stages_site_history for route in pipeline.routes) and warehouse.SITES not in histories:
        histories.append(warehouse.SITES)
    return [(table, None) for table in histories] + [(warehouse.REJECTED, route.name) for route in pipeline.routes]
