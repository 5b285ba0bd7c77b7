"""The pipelines' settings: Beam pipeline options whose defaults are the
environment variables of telemetry/common/config.py, so the same names configure a
local run (environment) and a Dataflow job (template parameters).

`--mongodb_uri` and `--mail_api_token` take either the value itself or a
Secret Manager version (`projects/P/secrets/S/versions/V`), read on the worker
(telemetry.common.secrets).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from telemetry.common import config, privacy, secrets, service_limits, stored_ping
from telemetry.pipelines import geo

MAX_HOURS = 24 * 31
# Pub/Sub's longest ack deadline, as the subscriptions are made, and the range a lease may take.
DEFAULT_LEASE_SECONDS = service_limits.PUBSUB_MAX_ACK_DEADLINE_SECONDS
LEASE_SECONDS_RANGE = (service_limits.PUBSUB_MIN_SUBSCRIPTION_ACK_DEADLINE_SECONDS, DEFAULT_LEASE_SECONDS)
# Hourly runs last minutes; the bound fails a stuck run (and stops it holding its
# notifications) while leaving a catch-up run after an outage room to finish.
DEFAULT_MAX_RUN_SECONDS = 6 * 3600
MAX_RUN_SECONDS_RANGE = (10, 24 * 3600)


def _default(variable: str) -> str:
    return config.VARIABLES[variable].default  # type: ignore[return-value]


BUCKET_REGEX = "^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"
DATASET_REGEX = "^[A-Za-z0-9_]{1,1024}$"
HOUR_REGEX = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}$"
SECRET_VERSION_REGEX = f"^{secrets.VERSION_NAME.pattern}$"
_FIELD = f"({'|'.join(privacy.CONTACT_FIELDS)})"


@dataclass(frozen=True)
class Option:
    """One pipeline option, declared once: its command-line argument (a local run; the
    default is its environment variable's) and its Flex Template parameter (`label`,
    `help`, `regexes`, `optional`; telemetry.pipelines.template_metadata writes them
    into each template's metadata.json)."""

    name: str
    label: str
    help: str
    regexes: tuple[str, ...]
    optional: bool = False
    variable: str | None = None  # its environment variable, whose value is the default
    default: int | str | None = None  # the default where it has no variable
    type: type = str

    def add_to(self, parser) -> None:
        default = self.default
        if self.variable:
            # An integer's range is checked with the other settings (PipelineSettings.from_options).
            default = config.get_int(self.variable, minimum=0) if self.type is int else config.get(self.variable)
        parser.add_argument(f"--{self.name}", type=self.type, default=default, help=self.help)

    def parameter(self) -> dict:
        """The Flex Template parameter (metadata.json)."""
        described = {"name": self.name, "label": self.label, "helpText": self.help}
        if self.optional:
            described["isOptional"] = True
        return {**described, "regexes": list(self.regexes)}


def _bound(name: str, service: str) -> Option:
    variable = f"{name.upper()}_TIMEOUT_SECONDS"
    return Option(
        f"{name}_timeout_seconds",
        f"{service} call bound (seconds)",
        f"Bound of one {service} call, so that a service that stops answering fails the run instead of "
        f"hanging it. 1 to 99999, default {_default(variable)}.",
        ("^[1-9][0-9]{0,4}$",),
        optional=True,
        variable=variable,
        type=int,
    )


# In the order of the templates' parameters.
OPTIONS: tuple[Option, ...] = (
    Option(
        "tracking_bucket",
        "Pings bucket",
        "Bucket the ingest functions write pings to (TRACKING_BUCKET).",
        (BUCKET_REGEX,),
        variable="TRACKING_BUCKET",
    ),
    Option(
        "pings_topic",
        "Notifications topic",
        "Topic of the bucket's finalize notifications; the run drains the subscriptions <topic>-<route> (PINGS_TOPIC).",
        ("^[A-Za-z][-A-Za-z0-9._~%+]{2,254}$",),
        variable="PINGS_TOPIC",
    ),
    Option(
        "bq_dataset",
        "BigQuery dataset",
        "Dataset of the history tables (BQ_DATASET).",
        (DATASET_REGEX,),
        variable="BQ_DATASET",
    ),
    Option(
        "bq_staging_dataset",
        "BigQuery staging dataset",
        "Scratch dataset of the per-run staging tables (BQ_STAGING_DATASET).",
        (DATASET_REGEX,),
        variable="BQ_STAGING_DATASET",
    ),
    Option(
        "work_bucket",
        "Work bucket",
        "Bucket of the pipelines' working objects: load-job files under loads/, run locks under locks/ (WORK_BUCKET).",
        (BUCKET_REGEX,),
        variable="WORK_BUCKET",
    ),
    Option(
        "mongodb_uri",
        "MongoDB URI",
        "Secret Manager version holding the MongoDB connection string, e.g. "
        "projects/P/secrets/mongodb-uri/versions/latest (or the URI itself).",
        (f"^(mongodb(\\+srv)?://.+|{secrets.VERSION_NAME.pattern})$",),
        variable="MONGODB_URI",
    ),
    Option(
        "mongodb_db",
        "MongoDB database",
        "Database of projects, sites and deactivations (MONGODB_DB).",
        ('^[^/\\\\. \\"$*<>:|?]{1,63}$',),
        variable="MONGODB_DB",
    ),
    Option(
        "mail_api_url",
        "Mail API URL",
        "Dashboard API endpoint that subscribes new sites' contacts (MAIL_API_URL); leave empty to send no mail.",
        ("^https?://[^\\s]+$",),
        optional=True,
        variable="MAIL_API_URL",
    ),
    Option(
        "mail_api_token",
        "Mail API token",
        "Secret Manager version holding the mail API's bearer token (MAIL_API_TOKEN).",
        (SECRET_VERSION_REGEX,),
        optional=True,
        variable="MAIL_API_TOKEN",
    ),
    Option(
        "mail_contacts_per_project_hour",
        "Mail contacts per project and hour",
        "Most contacts sent to the mail API per project and UTC hour, retries included; the rest wait for a "
        f"later hour (MAIL_CONTACTS_PER_PROJECT_HOUR, default {_default('MAIL_CONTACTS_PER_PROJECT_HOUR')}).",
        ("^[1-9][0-9]{0,6}$",),
        optional=True,
        variable="MAIL_CONTACTS_PER_PROJECT_HOUR",
        type=int,
    ),
    Option(
        "ip_prefix_v4",
        "IPv4 prefix kept",
        "Bits of an IPv4 ip_address kept in MongoDB/BigQuery sites: 0 drops it, 32 keeps it whole "
        f"(IP_PREFIX_V4, default {_default('IP_PREFIX_V4')}).",
        ("^(3[0-2]|[12]?[0-9])$",),
        optional=True,
        variable="IP_PREFIX_V4",
        type=int,
    ),
    Option(
        "ip_prefix_v6",
        "IPv6 prefix kept",
        "Bits of an IPv6 ip_address kept in MongoDB/BigQuery sites: 0 drops it, 128 keeps it whole "
        f"(IP_PREFIX_V6, default {_default('IP_PREFIX_V6')}).",
        ("^(12[0-8]|1[01][0-9]|[1-9]?[0-9])$",),
        optional=True,
        variable="IP_PREFIX_V6",
        type=int,
    ),
    Option(
        "site_personal_fields",
        "Personal fields kept",
        f"Which of {', '.join(privacy.CONTACT_FIELDS)} MongoDB/BigQuery sites keep, comma-separated, or none "
        "(SITE_PERSONAL_FIELDS, default all three).",
        (f"^(none|{_FIELD}(,{_FIELD})*)$",),
        optional=True,
        variable="SITE_PERSONAL_FIELDS",
    ),
    Option(
        "geo_databases",
        "Geo databases",
        "MaxMind .mmdb files (GeoLite2/GeoIP2 Country, City, ASN, ISP, Enterprise) or a geoip2fast .dat.gz, "
        "comma-separated paths or gs://bucket/object, for the sites' hosting country and network; empty: the "
        "bundled offline data (GEO_DATABASES).",
        ("^[^,\\s]+\\.(mmdb|dat\\.gz)(,[^,\\s]+\\.(mmdb|dat\\.gz))*$",),
        optional=True,
        variable="GEO_DATABASES",
    ),
    Option(
        "hour",
        "Hour (reprocessing)",
        "Hour mode: process the pings received in this UTC hour, YYYY-MM-DDTHH, instead of draining notifications.",
        (HOUR_REGEX,),
        optional=True,
    ),
    Option(
        "hour_to",
        "Last hour (backfill)",
        "With hour: the last hour of a range, inclusive.",
        (HOUR_REGEX,),
        optional=True,
    ),
    Option(
        "lease_seconds",
        "Notification lease (seconds)",
        "Ack deadline of the drained notifications, extended every third of it while the run works; a failed "
        "run's notifications come back after this at the latest. "
        f"{LEASE_SECONDS_RANGE[0]} to {LEASE_SECONDS_RANGE[1]}, default {DEFAULT_LEASE_SECONDS}.",
        ("^([1-9][0-9]|[1-5][0-9]{2}|600)$",),
        optional=True,
        default=DEFAULT_LEASE_SECONDS,
        type=int,
    ),
    Option(
        "max_messages_per_run",
        "Notifications per run",
        "Notification mode: most notifications a run pulls from each of its subscriptions; the rest stays for "
        "the next run, so that a backlog drains over hourly runs that each end within Dataflow's runtime bound "
        "(MAX_MESSAGES_PER_RUN). 1 to 999999999.",
        ("^[1-9][0-9]{0,8}$",),
        optional=True,
        variable="MAX_MESSAGES_PER_RUN",
        type=int,
    ),
    Option(
        "max_run_seconds",
        "Run bound (seconds)",
        "Bound of a run from its launch: past it, its notifications are no longer kept leased and the run "
        "fails instead of acknowledging them, so the next run gets them again. "
        f"{MAX_RUN_SECONDS_RANGE[0]} to {MAX_RUN_SECONDS_RANGE[1]}, default {DEFAULT_MAX_RUN_SECONDS} "
        f"({DEFAULT_MAX_RUN_SECONDS // 3600} h).",
        ("^([1-9][0-9]|[1-9][0-9]{2,3}|[1-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)$",),
        optional=True,
        default=DEFAULT_MAX_RUN_SECONDS,
        type=int,
    ),
    _bound("mongodb", "MongoDB"),
    _bound("bigquery", "BigQuery"),
    _bound("pubsub", "Pub/Sub"),
)


class TelemetryOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        for option in OPTIONS:
            option.add_to(parser)


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
    geo: geo.Locator = geo.BUNDLED
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
            geo=geo.Locator(geo.parse_databases(opts.geo_databases), project),
            mongodb_timeout_seconds=opts.mongodb_timeout_seconds,
            bigquery_timeout_seconds=opts.bigquery_timeout_seconds,
            pubsub_timeout_seconds=opts.pubsub_timeout_seconds,
        )

    def mongodb_uri(self) -> str:
        return secrets.resolve(self.mongodb_uri_value)  # type: ignore[return-value]

    def mail_api_token(self) -> str | None:
        return secrets.resolve(self.mail_api_token_value)

    @property
    def run_deadline(self) -> float:
        """Epoch seconds past which the run no longer holds its notifications."""
        return self.started_at + self.max_run_seconds

    def subscription(self, route: str) -> str:
        return f"projects/{self.project}/subscriptions/{config.subscription_name(self.topic, route)}"
