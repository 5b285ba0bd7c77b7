"""The pipelines' DoFns that talk to services: Pub/Sub, Cloud Storage, MongoDB,
BigQuery and the mail API. Clients are created once per DoFn instance, in `setup`.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from telemetry.common import cloud, mongo, progress, service_limits, stored_ping, tables
from telemetry.common.projects import enabled_mail_integrations, load_projects, mail_double_opt_in, mail_flag
from telemetry.pipelines import leases, records, run_lock, site_state, warehouse
from telemetry.pipelines.counters import NAMESPACE
from telemetry.pipelines.options import PipelineSettings

log = logging.getLogger("telemetry.pipelines")

ACKS = "acks"
PULL_BATCH = service_limits.PUBSUB_MAX_MESSAGES_PER_PULL
# An empty answer to a pull that returns immediately can hide messages on the real
# service; a few in a row mean drained. What a run misses stays for the next one.
EMPTY_PULLS_TO_STOP = 3
READ_THREADS = 16
MAIL_CONTACTS_PER_CALL = 100


def progress_keys(run_id: str) -> tuple[str, str]:
    """The keys of a run's two steps, hours listed and objects fetched, which the launcher
    opens on the local runner (build.run) and the DoFns below advance (progress.py)."""
    return f"{run_id}/hours", f"{run_id}/objects"


class DrainSubscription(beam.DoFn):
    """Subscription path -> the names of the newly finalized ping objects it announces.

    Pulls until the subscription is empty, or until a pull brings a message published
    after the run started: under steady traffic a pull is never empty, and a run that
    drained until a lull would not end while the traffic lasts (scripts/soak.py found
    it); or until it has pulled --max_messages_per_run, so that a backlog (after an
    outage) drains over successive runs, each within Dataflow's runtime bound, instead
    of every run being cancelled with nothing acknowledged (no pull asks for more than
    what is left of the bound). What is left is the next run's. Every pulled message's
    ack id goes to the `acks` output, to be acknowledged only after the sinks commit, and
    is kept leased meanwhile by this process's lease keeper (leases.py). Messages
    about other buckets, other prefixes (the emulator does not apply subscription
    filters) or other events are acknowledged as well, and counted as ignored.
    """

    def __init__(self, settings: PipelineSettings, route: str, run_id: str):
        self._settings = settings
        self._route = route
        self._run_id = run_id
        _, self._progress_objects = progress_keys(run_id)

    def setup(self):
        self._subscriber = cloud.pubsub_subscriber()

    def teardown(self):
        self._subscriber.close()

    def process(self, subscription: str):
        bound = self._settings.pubsub_timeout_seconds
        keeper = leases.keeper(self._run_id, self._settings.lease_seconds, self._settings.run_deadline, bound)
        ignored = Metrics.counter(NAMESPACE, f"notifications_ignored_{self._route}")
        left = self._settings.max_messages_per_run
        empty_pulls = 0
        while empty_pulls < EMPTY_PULLS_TO_STOP:
            if left <= 0:
                Metrics.counter(NAMESPACE, f"drains_stopped_at_bound_{self._route}").inc()
                log.info(
                    "drain stopped at its bound: the rest is the next run's",
                    extra={"route": self._route, "max_messages_per_run": self._settings.max_messages_per_run},
                )
                return
            response = self._subscriber.pull(
                request={
                    "subscription": subscription,
                    "max_messages": min(PULL_BATCH, left),
                    "return_immediately": True,
                },
                **cloud.pubsub_call_bounds(bound),
            )
            if not response.received_messages:
                empty_pulls += 1
                time.sleep(0.2)
                continue
            empty_pulls = 0
            left -= len(response.received_messages)
            ack_ids = [m.ack_id for m in response.received_messages]
            self._subscriber.modify_ack_deadline(
                request={
                    "subscription": subscription,
                    "ack_ids": ack_ids,
                    "ack_deadline_seconds": self._settings.lease_seconds,
                },
                **cloud.pubsub_call_bounds(bound),
            )
            keeper.hold(subscription, ack_ids)
            caught_up = False
            for received in response.received_messages:
                caught_up |= received.message.publish_time.timestamp() >= self._settings.started_at
                attributes = received.message.attributes
                name = attributes.get("objectId", "")
                if (
                    attributes.get("eventType") == "OBJECT_FINALIZE"
                    and attributes.get("bucketId") == self._settings.bucket
                    and stored_ping.is_object_of(name, self._route)
                ):
                    progress.add_to_total(self._progress_objects)
                    yield name
                else:
                    ignored.inc()
                yield pvalue.TaggedOutput(ACKS, (subscription, received.ack_id))
            if caught_up:
                return


class ListHourObjects(beam.DoFn):
    """An hour (`YYYY/MM/DD/HH`) -> the names of the route's objects received in it."""

    def __init__(self, settings: PipelineSettings, route: str, run_id: str):
        self._settings = settings
        self._route = route
        self._progress_hours, self._progress_objects = progress_keys(run_id)

    def setup(self):
        self._bucket = cloud.storage_client(self._settings.project).bucket(self._settings.bucket)

    def process(self, hour_path: str):
        blobs = self._bucket.list_blobs(
            prefix=stored_ping.hour_prefix(self._route, hour_path),
            page_size=stored_ping.LIST_PAGE_SIZE,
            fields="items(name),nextPageToken",
        )
        for blob in blobs:
            if stored_ping.is_object_of(blob.name, self._route):
                progress.add_to_total(self._progress_objects)
                yield blob.name
        progress.advance(self._progress_hours)


class ReadObjects(beam.DoFn):
    """A batch of object names -> (name, bytes), or (name, None) for an object that is gone.

    Objects are small and many, so a batch is fetched by a pool of threads:
    the cost is round trips, not bytes. Any other read failure fails the
    bundle, so nothing is acknowledged and a re-run reads it again.
    """

    def __init__(self, settings: PipelineSettings, run_id: str):
        self._settings = settings
        _, self._progress_objects = progress_keys(run_id)

    def setup(self):
        self._bucket = cloud.storage_client(self._settings.project, READ_THREADS).bucket(self._settings.bucket)
        self._pool = ThreadPoolExecutor(max_workers=READ_THREADS)

    def teardown(self):
        self._pool.shutdown(wait=False)

    def _read(self, name: str) -> tuple[str, bytes | None]:
        from google.api_core.exceptions import NotFound

        try:
            return name, self._bucket.blob(name).download_as_bytes()
        except NotFound:
            return name, None

    def process(self, names: list[str]):
        read = Metrics.counter(NAMESPACE, "objects_read")
        for result in self._pool.map(self._read, names):
            read.inc()
            yield result
        progress.advance(self._progress_objects, len(names))


class MongoUnavailable(RuntimeError):
    """MongoDB could not be reached or refused a write: the run fails, nothing is acknowledged."""


@contextmanager
def mongo_errors(step: str):
    from pymongo.errors import BulkWriteError, PyMongoError

    try:
        yield
    except BulkWriteError as e:
        # Its text quotes the failed operations, documents and their personal fields included:
        # keep only each write error's code and message (which quote the (hash, url) key at most).
        errors = "; ".join(
            f"{w.get('code')}: {str(w.get('errmsg'))[:200]}" for w in e.details.get("writeErrors", [])[:3]
        )
        raise MongoUnavailable(f"MongoDB failed during {step}: BulkWriteError: {errors}") from None
    except PyMongoError as e:
        raise MongoUnavailable(f"MongoDB failed during {step}: {e.__class__.__name__}: {str(e)[:300]}") from e


class LoadProjects(beam.DoFn):
    """Emits (hash, project) for every project in MongoDB `projects`."""

    def __init__(self, settings: PipelineSettings):
        self._settings = settings

    def process(self, _):
        db = mongo.database(
            self._settings.mongodb_uri(), self._settings.mongodb_db, self._settings.mongodb_timeout_seconds
        )
        try:
            with mongo_errors("loading projects"):
                site_state.ensure_indexes(db)
                projects = load_projects(db)
        finally:
            db.client.close()
        yield from projects.items()


class _MongoFn(beam.DoFn):
    def __init__(self, settings: PipelineSettings):
        self._settings = settings

    def setup(self):
        self._db = mongo.database(
            self._settings.mongodb_uri(), self._settings.mongodb_db, self._settings.mongodb_timeout_seconds
        )

    def teardown(self):
        self._db.client.close()


class UpsertSites(_MongoFn):
    """A batch of (record, first seen, last seen) -> folded into MongoDB `sites`.

    Emits, as one list, the batch's records of projects with a mail integration,
    for the mail step.
    """

    def process(self, batch: list[site_state.SiteState], projects: dict[str, dict]):
        updates, mailable = [], []
        for record, first_seen, last_seen in batch:
            mail = mail_flag(record, projects)
            updates.append(site_state.site_update(record, first_seen, last_seen, mail))
            if mail:
                mailable.append(record)
        with mongo_errors("the sites upsert"):
            result = site_state.apply(self._db[site_state.SITES], updates)
        if result is not None:
            Metrics.counter(NAMESPACE, "sites_inserted").inc(len(result.upserted_ids))
            Metrics.counter(NAMESPACE, "site_updates_applied").inc(result.modified_count)
        if mailable:
            yield mailable


class UpsertDeactivations(_MongoFn):
    """A batch of deactivation records -> the latest per site in MongoDB `deactivations`."""

    def process(self, batch: list[dict[str, Any]]):
        updates = [site_state.deactivation_update(record) for record in batch]
        with mongo_errors("the deactivations upsert"):
            site_state.apply(self._db[site_state.DEACTIVATIONS], updates)
        yield len(batch)


class SendMail(_MongoFn):
    """Site records of projects with a mail integration -> the due contacts among them sent, once per attempt.

    Per project and chunk of MAIL_CONTACTS_PER_CALL sites: the sites whose mail
    is due (new and pending, failed and past their backoff, or `sending` under a
    lost claim) take a share of the project's hourly bound (the rest are deferred
    to the next hour, counted), are claimed atomically (site_state.claim_mail) and
    sent in one call with the contacts as MongoDB holds them. A failed call is
    logged and counted and its sites become `failed` (due again after a backoff)
    or `abandoned`; it never fails the job. Each transition has a counter:
    `mail_claimed_<state it left>`, `mail_sent`, `mail_failed`, `mail_abandoned`,
    `mail_deferred_over_bound`.
    """

    def setup(self):
        super().setup()
        from telemetry.pipelines.mail import MailApi

        url = self._settings.mail_api_url
        self._api = MailApi(url, self._settings.mail_api_token()) if url else None

    def process(self, site_records: list[dict[str, Any]], projects: dict[str, dict]):
        if self._api is None:  # the sites stay pending until a run has a mail API
            Metrics.counter(NAMESPACE, "mail_skipped_not_configured").inc(len(site_records))
            return
        by_project: dict[str, set[str]] = {}
        for record in site_records:
            by_project.setdefault(record["hash"], set()).add(record["url"])
        for project_hash, urls in by_project.items():
            ordered = sorted(urls)
            for start in range(0, len(ordered), MAIL_CONTACTS_PER_CALL):
                chunk = ordered[start : start + MAIL_CONTACTS_PER_CALL]
                with mongo_errors("finding due mail"):
                    due = site_state.due_mail(self._db[site_state.SITES], project_hash, _now(), len(chunk), chunk)
                sent = self._send(project_hash, due, projects[project_hash])
                if sent:
                    yield sent

    def _send(self, project_hash: str, due: list[str], project: dict[str, Any]) -> int:
        """Send the due sites' contacts within the project's hourly bound; returns how many were accepted."""
        from telemetry.pipelines.mail import MailApiError, contact

        if not due:
            return 0
        sites, quota = self._db[site_state.SITES], self._db[site_state.MAIL_QUOTA]
        now = _now()
        hour = now.replace(minute=0, second=0, microsecond=0)
        bound = self._settings.mail_contacts_per_project_hour
        with mongo_errors("reserving mail contacts"):
            granted = site_state.reserve_mail_contacts(quota, project_hash, hour, len(due), bound)
            if granted < len(due):
                Metrics.counter(NAMESPACE, "mail_deferred_over_bound").inc(len(due) - granted)
                site_state.defer_mail(sites, project_hash, due[granted:], hour + timedelta(hours=1))
            if not granted:
                return 0
            claim = uuid.uuid4().hex
            taken, claimed = site_state.claim_mail(sites, project_hash, due[:granted], claim, now)
            site_state.release_mail_contacts(quota, project_hash, hour, granted - len(claimed))
        for state, count in taken.items():
            Metrics.counter(NAMESPACE, f"mail_claimed_{state}").inc(count)
        if not claimed:
            return 0
        contacts = [contact(doc) for doc in claimed]
        try:
            self._api.subscribe(
                project_hash,
                enabled_mail_integrations(project),
                contacts,
                double_opt_in=mail_double_opt_in(project),
            )
        except MailApiError as e:
            log.error(
                "mail integration failed", extra={"project": project_hash, "sites": len(contacts), "error": e.summary}
            )
            with mongo_errors("marking mail failed"):
                finished = site_state.finish_mail(sites, project_hash, claimed, claim, False, _now(), e.summary)
            for state, count in finished.items():
                Metrics.counter(NAMESPACE, f"mail_{state}").inc(count)
            return 0
        with mongo_errors("marking mail sent"):
            finished = site_state.finish_mail(sites, project_hash, claimed, claim, True, _now())
        Metrics.counter(NAMESPACE, "mail_sent").inc(finished[site_state.MAIL_SENT])
        return len(contacts)


class SweepMail(SendMail):
    """Runs once per run: the due mail of sites that did not ping in it.

    A run sees only the sites that pinged in it, and a site pings about weekly:
    a contact that failed, was deferred over the hourly bound or was left
    `sending` by a crash would wait that long. So every run also asks, per project
    with an enabled integration, for the sites whose mail is due (an index range
    per state, site_state.due_mail), at most the hourly bound of them, and sends
    them as SendMail does.
    """

    def process(self, _, projects: dict[str, dict]):
        if self._api is None:
            return
        bound = self._settings.mail_contacts_per_project_hour
        for project_hash, project in sorted(projects.items()):
            if not enabled_mail_integrations(project):
                continue
            with mongo_errors("finding due mail"):
                due = site_state.due_mail(self._db[site_state.SITES], project_hash, _now(), bound)
            Metrics.counter(NAMESPACE, "mail_swept").inc(len(due))
            for start in range(0, len(due), MAIL_CONTACTS_PER_CALL):
                sent = self._send(project_hash, due[start : start + MAIL_CONTACTS_PER_CALL], project)
                if sent:
                    yield sent


def _now() -> datetime:
    return datetime.now(UTC)


def history_writer(
    settings: PipelineSettings, table: tables.TableLayout, run_id: str, bigquery_client=None, work_bucket=None
) -> warehouse.HistoryWriter:
    """The run's writer of one history table, on the settings' datasets and work bucket."""
    return warehouse.HistoryWriter(
        bigquery_client or cloud.bigquery_client(settings.project),
        work_bucket or cloud.storage_client(settings.project).bucket(settings.work_bucket),
        settings.bq_dataset,
        settings.bq_staging_dataset,
        table,
        run_id,
        settings.bigquery_timeout_seconds,
    )


class StageHistory(beam.DoFn):
    """A batch of records -> one part (NDJSON object) of this run's rows of `table` in the
    work bucket; emits the row count. History rows were checked against
    warehouse.MAX_ROW_BYTES (transforms.check_fits); `rejected` rows are bounded by
    construction (records.rejected_row), and checked here."""

    def __init__(self, settings: PipelineSettings, table: tables.TableLayout, run_id: str):
        self._settings = settings
        self._table = table
        self._run_id = run_id

    def setup(self):
        self._writer = history_writer(self._settings, self._table, self._run_id)
        self._columns = warehouse.columns(self._table.name)

    def process(self, batch: list[dict[str, Any]]):
        rows = [records.bigquery_row(r, self._columns) for r in batch]
        if self._table.name == warehouse.REJECTED.name:
            rows = [self._fit_rejected(row) for row in rows]
        self._writer.stage(rows)
        yield len(rows)

    @staticmethod
    def _fit_rejected(row: dict[str, Any]) -> dict[str, Any]:
        """A `rejected` row over warehouse.MAX_ROW_BYTES keeps its reason and detail, not its payload.
        (Its payload is capped far below the bound: this holds only if the bound is set lower.)"""
        try:
            warehouse.check_row(warehouse.REJECTED.name, row)
            return row
        except warehouse.RowTooLarge:
            Metrics.counter(NAMESPACE, "rejected_payload_dropped_row_too_large").inc()
            return {**row, "payload": None, "payload_truncated": True}


class MergeHistory(beam.DoFn):
    """Runs once, after every StageHistory bundle (its side inputs): load each table's
    parts into its staging table (one load job), MERGE each staging table into its
    history table, per route where asked, then drop it and its parts.

    Rows a load job refused (warehouse.Refusal) are set aside: as `rejected` rows of
    their pings, staged with `rejected`'s parts before its load, which is why that
    table loads last; a refused `rejected` row is loaded again without its payload.

    The loads fill this run's own staging tables and need no lock. The MERGEs run
    under the pipeline's run lock (run_lock.py): acquired before the first MERGE
    (a run that finds it held waits, bounded, and counts `run_lock_waits`),
    renewed before each statement by the fenced client, released after the last."""

    def __init__(
        self,
        settings: PipelineSettings,
        run_id: str,
        merges: list[tuple[tables.TableLayout, str | None]],
        pipeline: str,
    ):
        self._settings = settings
        self._run_id = run_id
        self._merges = merges
        self._pipeline = pipeline

    def process(self, _, *staged_counts):
        work_bucket = cloud.storage_client(self._settings.project).bucket(self._settings.work_bucket)
        tables = {table.name: table for table, _ in self._merges}
        client = cloud.bigquery_client(self._settings.project)
        self._load(
            {name: history_writer(self._settings, t, self._run_id, client, work_bucket) for name, t in tables.items()}
        )
        fenced = self._acquire_run_lock(client)
        writers = {
            name: history_writer(self._settings, t, self._run_id, fenced, work_bucket) for name, t in tables.items()
        }
        for table, route in self._merges:
            writer = writers[table.name]
            result = writer.merge(route)
            name = f"{table.name}_{route or 'all'}"
            Metrics.counter(NAMESPACE, f"staged_{name}").inc(result.staged)
            Metrics.counter(NAMESPACE, f"inserted_{name}").inc(result.inserted)
            yield result
        for writer in writers.values():
            writer.drop_staging()
        fenced.lock.release()

    def _acquire_run_lock(self, client) -> run_lock.FencedBigQuery:
        """The pipeline's run lock, and the BigQuery client fenced by it. If the step fails, the
        lock is left to expire: a job of ours may still run on the server, and the TTL outlives it."""
        timeout = self._settings.bigquery_timeout_seconds
        ttl = run_lock.ttl_seconds(timeout)
        lock = run_lock.RunLock(
            cloud.storage_client(self._settings.project).bucket(self._settings.work_bucket),
            self._pipeline,
            self._run_id,
            ttl=ttl,
            wait=run_lock.wait_seconds(ttl),
            call_timeout_seconds=min(timeout, 60),
        )
        try:
            acquired = lock.acquire()
        except run_lock.RunLockTimeout:
            Metrics.counter(NAMESPACE, "run_lock_wait_timeouts").inc()
            raise
        if acquired.waited_seconds:
            Metrics.counter(NAMESPACE, "run_lock_waits").inc()
        if acquired.took_over_from:
            Metrics.counter(NAMESPACE, "run_lock_takeovers").inc()
        return run_lock.FencedBigQuery(client, lock, timeout)

    def _load(self, writers: dict[str, warehouse.HistoryWriter]) -> None:
        rejected_columns = warehouse.columns(warehouse.REJECTED.name)
        set_aside: list[dict[str, Any]] = []
        for name in sorted(writers, key=lambda n: n == warehouse.REJECTED.name):  # `rejected` last
            writer = writers[name]
            if name == warehouse.REJECTED.name and set_aside:
                writer.stage(set_aside)
            refusal = writer.load()
            if refusal is None:
                continue
            self._count_refused(name, refusal)
            if name != warehouse.REJECTED.name:
                set_aside += [
                    records.bigquery_row(records.refused_row(name, row, refusal.errors), rejected_columns)
                    for row in refusal.rows
                ]
                continue
            # Refused `rejected` rows, again without their payloads: what is left is ours alone.
            again = [
                records.bigquery_row(records.refused_row(name, row, refusal.errors), rejected_columns)
                for row in refusal.rows
            ]
            second = writer.load(writer.stage(again))
            if second is not None:
                raise RuntimeError(
                    f"BigQuery refused {len(second.rows)} rejected rows even without their payloads: {second.errors}"
                )
        if set_aside and warehouse.REJECTED.name not in writers:
            raise RuntimeError("rows were refused but this run merges no `rejected` table")

    @staticmethod
    def _count_refused(table: str, refusal: warehouse.Refusal) -> None:
        Metrics.counter(NAMESPACE, f"bigquery_refused_{table}").inc(len(refusal.rows))
        log.error(
            "BigQuery refused staged rows; set aside in rejected",
            extra={"table": table, "rows": len(refusal.rows), "errors": refusal.errors},
        )


class RunTooLong(RuntimeError):
    """The run passed --max_run_seconds: it fails instead of acknowledging, and its
    notifications (no longer leased) come back for the next run."""


class AckNotifications(beam.DoFn):
    """Runs once, after every sink (its side inputs): acknowledge the drained notifications.

    Past the run's bound the leases have not been extended and may have lapsed:
    the run fails loudly instead, and the next run gets the notifications again
    (and skips what this run wrote)."""

    def __init__(self, settings: PipelineSettings, run_id: str):
        self._settings = settings
        self._run_id = run_id

    def process(self, _, acks: list[tuple[str, str]], *sinks_done):
        by_subscription: dict[str, list[str]] = {}
        for subscription, ack_id in acks:
            by_subscription.setdefault(subscription, []).append(ack_id)
        if not by_subscription:
            return
        if time.time() >= self._settings.run_deadline:
            Metrics.counter(NAMESPACE, "runs_past_bound").inc()
            raise RunTooLong(
                f"the run lasted longer than --max_run_seconds={self._settings.max_run_seconds}: its "
                f"{len(acks)} notifications are not acknowledged and come back for the next run"
            )
        keeper = leases.existing(self._run_id)  # None where the drain ran in another process
        subscriber = cloud.pubsub_subscriber()
        try:
            for subscription, ack_ids in by_subscription.items():
                for start in range(0, len(ack_ids), leases.ACK_IDS_PER_REQUEST):
                    chunk = ack_ids[start : start + leases.ACK_IDS_PER_REQUEST]
                    subscriber.acknowledge(
                        request={"subscription": subscription, "ack_ids": chunk},
                        **cloud.pubsub_call_bounds(self._settings.pubsub_timeout_seconds),
                    )
                    if keeper is not None:
                        keeper.acknowledged(subscription, chunk)
                Metrics.counter(NAMESPACE, "notifications_acked").inc(len(ack_ids))
        finally:
            subscriber.close()
        yield len(acks)
