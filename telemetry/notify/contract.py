"""What plugs into the notify run: a producer of events and an email renderer.

A producer reads what the pipelines and the analytics job committed and returns
the events it finds in the run's window:

    def collect(context: CollectContext) -> list[Event]

A renderer turns one event of its type into the mail sent to a project's alert
recipients:

    def render_email(event: Event, project: Mapping[str, Any]) -> EmailContent

Both are listed in telemetry/notify/registry.py, one line each.

Invariants a producer keeps:
- It is pure reading: it writes nothing; the run inserts what it returns into the
  outbox keyed by `Event.id`, so returning an event again (the overlap, a re-run)
  adds nothing.
- It finds every fact committed with `since <= time < until` (its own time field:
  `received_at` of a ping, the end of a digest's period, ...) and may return facts
  from before `since`; `since` is already widened by the overlap for late runs.
- An event's `id` comes from `events.event_id(type, natural key...)`, never from the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telemetry.notify.events import Event


@dataclass(frozen=True)
class CollectContext:
    """What one run gives every producer."""

    bigquery: Any  # google.cloud.bigquery.Client (telemetry.common.cloud.bigquery_client)
    db: Any  # pymongo Database (telemetry.common.mongo.database)
    dataset: str  # the history dataset (config BQ_DATASET)
    projects: Mapping[str, Mapping[str, Any]]  # every project document by hash (projects.load_projects)
    since: datetime  # inclusive, UTC: the watermark minus NOTIFY_OVERLAP_HOURS
    until: datetime  # exclusive, UTC: the run's `now`
    max_bytes_billed: int  # each query fails rather than bill more (config NOTIFY_MAX_BYTES_BILLED)
    bigquery_timeout_seconds: int  # bound of each query with its retries (config BIGQUERY_TIMEOUT_SECONDS)
    max_site_events_per_day: int  # site events of each type per project and UTC day (NOTIFY_MAX_SITE_EVENTS_PER_DAY)

    @property
    def now(self) -> datetime:
        return self.until

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query, bounded in time (with its retries) and in bytes billed.
        Tables are written `{dataset}.table`; `parameters` are google.cloud.bigquery
        query parameters (ScalarQueryParameter, ArrayQueryParameter)."""
        from google.cloud import bigquery

        from telemetry.common import cloud

        job_config = bigquery.QueryJobConfig(
            query_parameters=list(parameters), maximum_bytes_billed=self.max_bytes_billed
        )
        bounds = cloud.bigquery_query_bounds(self.bigquery_timeout_seconds)
        qualified = f"{self.bigquery.project}.{self.dataset}"
        job = self.bigquery.query(sql.replace("{dataset}", qualified), job_config=job_config, **bounds)
        return list(job.result(**bounds))


@dataclass(frozen=True)
class EmailContent:
    """One mail's subject and bodies; `html` None sends text only."""

    subject: str
    text: str
    html: str | None = None

    def __post_init__(self) -> None:
        if not self.subject or "\n" in self.subject or "\r" in self.subject:
            raise ValueError(f"an email subject is one non-empty line, got {self.subject!r}")


Producer = Callable[[CollectContext], list[Event]]
Renderer = Callable[[Event, Mapping[str, Any]], EmailContent]
