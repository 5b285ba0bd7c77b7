"""The pipelines' settings: Beam pipeline options whose defaults are the
environment variables of telemetry/config.py, so the same names configure a
local run (environment) and a Dataflow job (template parameters).

`--mongodb_uri` and `--mail_api_token` take either the value itself or a
Secret Manager version (`projects/P/secrets/S/versions/V`), read on the worker.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import timedelta

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from telemetry.common import config, privacy, service_limits, stored_ping

SECRET_VERSION = re.compile(r"projects/[^/]+/secrets/[^/]+/versions/[^/]+")
MAX_HOURS = 24 * 31
# Pub/Sub's longest ack deadline, as the subscriptions are made, and the range a lease may take.
DEFAULT_LEASE_SECONDS = service_limits.PUBSUB_MAX_ACK_DEADLINE_SECONDS
LEASE_SECONDS_RANGE = (service_limits.PUBSUB_MIN_SUBSCRIPTION_ACK_DEADLINE_SECONDS, DEFAULT_LEASE_SECONDS)
# Hourly runs last minutes; the bound fails a stuck run (and stops it holding its
# notifications) while leaving a catch-up run after an outage room to finish.
DEFAULT_MAX_RUN_SECONDS = 6 * 3600
MAX_RUN_SECONDS_RANGE = (10, 24 * 3600)


class TelemetryOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--tracking_bucket", default=config.get("TRACKING_BUCKET"), help="Bucket of the pings.")
        parser.add_argument(
            "--pings_topic",
            default=config.get("PINGS_TOPIC"),
            help="Topic whose <topic>-<route> subscriptions announce new pings.",
        )
        parser.add_argument("--bq_dataset", default=config.get("BQ_DATASET"), help="BigQuery dataset of the history.")
        parser.add_argument(
            "--bq_staging_dataset",
            default=config.get("BQ_STAGING_DATASET"),
            help="BigQuery scratch dataset of the per-run staging tables.",
        )
        parser.add_argument(
            "--work_bucket",
            default=config.get("WORK_BUCKET"),
            help="Bucket of the pipelines' working objects (load-job files under loads/, run locks under locks/).",
        )
        parser.add_argument(
            "--mongodb_uri",
            default=config.get("MONGODB_URI"),
            help="MongoDB URI, or a Secret Manager version holding it.",
        )
        parser.add_argument("--mongodb_db", default=config.get("MONGODB_DB"), help="MongoDB database.")
        parser.add_argument(
            "--mail_api_url",
            default=config.get("MAIL_API_URL"),
            help="Dashboard API endpoint that subscribes new sites' contacts; unset: no mail.",
        )
        parser.add_argument(
            "--mail_api_token",
            default=config.get("MAIL_API_TOKEN"),
            help="Bearer token for the mail API, or a Secret Manager version holding it.",
        )
        parser.add_argument(
            "--mail_contacts_per_project_hour",
            type=int,
            default=config.get_int("MAIL_CONTACTS_PER_PROJECT_HOUR"),
            help="Most contacts sent to the mail API per project and UTC hour, retries included (at least 1); "
            "the rest wait for a later hour.",
        )
        parser.add_argument(
            "--ip_prefix_v4",
            type=int,
            default=config.get("IP_PREFIX_V4"),
            help="Bits of an IPv4 ip_address kept in sites (0-32; 0 drops it, 32 keeps it whole).",
        )
        parser.add_argument(
            "--ip_prefix_v6",
            type=int,
            default=config.get("IP_PREFIX_V6"),
            help="Bits of an IPv6 ip_address kept in sites (0-128; 0 drops it, 128 keeps it whole).",
        )
        parser.add_argument(
            "--site_personal_fields",
            default=config.get("SITE_PERSONAL_FIELDS"),
            help="Which of admin_email, first_name, last_name sites keep (comma-separated), or none.",
        )
        parser.add_argument(
            "--hour",
            default=None,
            help="Hour mode: process the objects received in this hour (YYYY-MM-DDTHH, UTC) "
            "instead of draining notifications.",
        )
        parser.add_argument("--hour_to", default=None, help="With --hour: last hour of a range, inclusive.")
        parser.add_argument(
            "--lease_seconds",
            type=int,
            default=DEFAULT_LEASE_SECONDS,
            help="Ack deadline of drained notifications (10-600), extended every third of it while "
            "the run works. The run acknowledges them when its sinks have committed; if it fails, they "
            "come back (at once where the runner sees the failure, otherwise after this).",
        )
        for name, service in (("mongodb", "MongoDB"), ("bigquery", "BigQuery"), ("pubsub", "Pub/Sub")):
            variable = f"{name.upper()}_TIMEOUT_SECONDS"
            parser.add_argument(
                f"--{name}_timeout_seconds",
                type=int,
                default=config.get_int(variable),
                help=f"Bound of one {service} call, so that a service that stops answering fails the run "
                f"instead of hanging it (default: {variable}).",
            )
        parser.add_argument(
            "--max_messages_per_run",
            type=int,
            default=config.get_int("MAX_MESSAGES_PER_RUN"),
            help="Notification mode: most notifications a run pulls from each of its subscriptions; the "
            "rest stays for the next run, so a backlog drains over successive runs (default: MAX_MESSAGES_PER_RUN).",
        )
        parser.add_argument(
            "--max_run_seconds",
            type=int,
            default=DEFAULT_MAX_RUN_SECONDS,
            help="Bound of a notification-mode run from its start (10-86400): past it, its leases are no "
            "longer extended and the run fails instead of acknowledging, so the next run gets them again.",
        )


def read_secret(name: str) -> str:
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    return secret_value(client.access_secret_version(request={"name": name}).payload.data)


def secret_value(payload: bytes) -> str:
    """A secret version's payload as the setting it holds: UTF-8, trailing whitespace removed.

    A value added with `echo ... | gcloud secrets versions add` ends in a newline,
    which would break a MongoDB URI or a bearer token; neither ever ends in whitespace.
    """
    return payload.decode("utf-8").rstrip()


def _resolve(value: str | None) -> str | None:
    if value and SECRET_VERSION.fullmatch(value):
        return read_secret(value)
    return value


def hour_paths(first: str, last: str | None = None) -> list[str]:
    """The `YYYY/MM/DD/HH` folders from `first` to `last` inclusive."""
    start = stored_ping.parse_hour(first)
    end = stored_ping.parse_hour(last) if last else start
    if end < start:
        raise ValueError(f"--hour_to {last} is before --hour {first}")
    count = int((end - start) / timedelta(hours=1)) + 1
    if count > MAX_HOURS:
        raise ValueError(f"at most {MAX_HOURS} hours per run, asked for {count}")
    return [stored_ping.hour_folder(start + timedelta(hours=i)) for i in range(count)]


@dataclass(frozen=True)
class PipelineSettings:
    """What the DoFns need; picklable, secrets resolved on the worker when used."""

    project: str
    bucket: str
    topic: str
    bq_dataset: str
    bq_staging_dataset: str
    work_bucket: str
    mongodb_uri_value: str
    mongodb_db: str
    mail_api_url: str | None
    mail_api_token_value: str | None
    hours: tuple[str, ...]  # empty: notification mode
    mail_contacts_per_project_hour: int = int(config.VARIABLES["MAIL_CONTACTS_PER_PROJECT_HOUR"].default)  # type: ignore[arg-type]
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    max_run_seconds: int = DEFAULT_MAX_RUN_SECONDS
    max_messages_per_run: int = int(config.VARIABLES["MAX_MESSAGES_PER_RUN"].default)  # type: ignore[arg-type]
    privacy: privacy.Policy = privacy.DEFAULT
    mongodb_timeout_seconds: int = int(config.VARIABLES["MONGODB_TIMEOUT_SECONDS"].default)  # type: ignore[arg-type]
    bigquery_timeout_seconds: int = int(config.VARIABLES["BIGQUERY_TIMEOUT_SECONDS"].default)  # type: ignore[arg-type]
    pubsub_timeout_seconds: int = int(config.VARIABLES["PUBSUB_TIMEOUT_SECONDS"].default)  # type: ignore[arg-type]
    started_at: float = field(default_factory=time.time)  # when the run was built (epoch seconds)

    @classmethod
    def from_options(cls, options: PipelineOptions) -> PipelineSettings:
        opts = options.view_as(TelemetryOptions)
        project = options.view_as(GoogleCloudOptions).project or config.require("GCP_PROJECT")
        missing = [
            name
            for name, value in (
                ("--tracking_bucket", opts.tracking_bucket),
                ("--bq_dataset", opts.bq_dataset),
                ("--bq_staging_dataset", opts.bq_staging_dataset),
                ("--work_bucket", opts.work_bucket),
                ("--mongodb_uri", opts.mongodb_uri),
                ("--mongodb_db", opts.mongodb_db),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"missing settings: {', '.join(missing)}")
        if opts.hour_to and not opts.hour:
            raise ValueError("--hour_to needs --hour")
        low, high = LEASE_SECONDS_RANGE
        if not low <= opts.lease_seconds <= high:
            raise ValueError(f"--lease_seconds must be {low} to {high}, got {opts.lease_seconds}")
        for name in ("mongodb", "bigquery", "pubsub"):
            if getattr(opts, f"{name}_timeout_seconds") < 1:
                raise ValueError(f"--{name}_timeout_seconds must be at least 1")
        if opts.mail_contacts_per_project_hour < 1:
            raise ValueError(
                f"--mail_contacts_per_project_hour must be at least 1, got {opts.mail_contacts_per_project_hour}"
            )
        if opts.max_messages_per_run < 1:
            raise ValueError(f"--max_messages_per_run must be at least 1, got {opts.max_messages_per_run}")
        low, high = MAX_RUN_SECONDS_RANGE
        if not low <= opts.max_run_seconds <= high:
            raise ValueError(f"--max_run_seconds must be {low} to {high}, got {opts.max_run_seconds}")
        return cls(
            project=project,
            bucket=opts.tracking_bucket,
            topic=opts.pings_topic,
            bq_dataset=opts.bq_dataset,
            bq_staging_dataset=opts.bq_staging_dataset,
            work_bucket=opts.work_bucket,
            mongodb_uri_value=opts.mongodb_uri,
            mongodb_db=opts.mongodb_db,
            mail_api_url=opts.mail_api_url or None,
            mail_api_token_value=opts.mail_api_token or None,
            hours=tuple(hour_paths(opts.hour, opts.hour_to)) if opts.hour else (),
            mail_contacts_per_project_hour=opts.mail_contacts_per_project_hour,
            lease_seconds=opts.lease_seconds,
            max_run_seconds=opts.max_run_seconds,
            max_messages_per_run=opts.max_messages_per_run,
            privacy=privacy.Policy.parse(opts.ip_prefix_v4, opts.ip_prefix_v6, opts.site_personal_fields),
            mongodb_timeout_seconds=opts.mongodb_timeout_seconds,
            bigquery_timeout_seconds=opts.bigquery_timeout_seconds,
            pubsub_timeout_seconds=opts.pubsub_timeout_seconds,
        )

    def mongodb_uri(self) -> str:
        return _resolve(self.mongodb_uri_value)  # type: ignore[return-value]

    def mail_api_token(self) -> str | None:
        return _resolve(self.mail_api_token_value)

    @property
    def run_deadline(self) -> float:
        """Epoch seconds past which the run no longer holds its notifications."""
        return self.started_at + self.max_run_seconds

    def subscription(self, route: str) -> str:
        return f"projects/{self.project}/subscriptions/{config.subscription_name(self.topic, route)}"
