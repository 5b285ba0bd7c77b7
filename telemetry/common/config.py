"""Every environment variable the product reads, named once.

Each setting is declared in `VARIABLES` with its default and meaning; the
table of docs/configuration.md lists the same rows (a test keeps them in step).
Code never calls `os.environ` for a product setting anywhere else. Each deploy
unit builds its own settings from these variables (e.g. telemetry.ingest.settings,
telemetry.analytics.job.AnalyticsSettings, telemetry.pipelines.options); this module
imports no domain code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None
    help: str


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        # Where things are.
        Variable("GCP_PROJECT", "local-telemetry", "Google Cloud project id."),
        Variable("TRACKING_BUCKET", "wp-telemetry-pings", "Bucket that receives one object per accepted ping."),
        Variable(
            "PINGS_TOPIC",
            "ping-objects",
            "Pub/Sub topic fed by the bucket's finalize notifications; "
            "one pull subscription per route is named `<topic>-<route>`.",
        ),
        Variable("BQ_DATASET", "telemetry", "BigQuery dataset of the history tables."),
        Variable(
            "BQ_STAGING_DATASET",
            "telemetry_staging",
            "BigQuery scratch dataset of the pipelines' per-run staging tables (`_staging_<table>_<run id>`, "
            "expiring after a day); kept apart so that the history dataset grants no table deletion.",
        ),
        Variable(
            "WORK_BUCKET",
            "wp-telemetry-work",
            "Bucket of the pipelines' working objects: the NDJSON files of their BigQuery load jobs "
            "(`loads/<run id>/`) and their run locks (`locks/`).",
        ),
        Variable("MONGODB_URI", "mongodb://127.0.0.1:27017", "MongoDB connection string."),
        Variable(
            "MONGODB_DB",
            "telemetry",
            "MongoDB database of `projects`, `sites`, `deactivations`, `analytics` and `mail_quota`.",
        ),
        Variable(
            "MAIL_API_URL",
            None,
            "Dashboard API endpoint the pipelines POST new sites' contacts to (mail integrations); "
            "unset: no mail is sent.",
        ),
        Variable("MAIL_API_TOKEN", None, "Bearer token for MAIL_API_URL, or a Secret Manager version name holding it."),
        Variable(
            "DASHBOARD_SESSION_SECRET",
            None,
            "HMAC key (at least 32 random characters) that signs the dashboard's sign-in cookies; from Secret Manager "
            "in production, made anew at each start of the local stack. Changing it signs everyone out.",
        ),
        Variable(
            "MAIL_CONTACTS_PER_PROJECT_HOUR",
            "500",
            "Most contacts the pipelines send to the mail API per project and UTC hour (retries included); "
            "the rest wait for a later hour. Bounds what forged pings can subscribe.",
        ),
        Variable(
            "INGEST_URL",
            None,
            "Base URL (ending in `/`) that serves `track`, `deactivate` and "
            "`tracking-skipped`; used by tests, the demo and the benchmark.",
        ),
        Variable(
            "DASHBOARD_URL",
            None,
            "Base URL of the dashboard function (no trailing `/`): its API is under `/v1`; used by tests, "
            "the benchmark and scripts.",
        ),
        # Emulators: the Google client libraries read these themselves; when one is set,
        # clients use anonymous credentials.
        Variable("STORAGE_EMULATOR_HOST", None, "fake-gcs-server URL, e.g. `http://127.0.0.1:4443`."),
        Variable("PUBSUB_EMULATOR_HOST", None, "Pub/Sub emulator `host:port`."),
        Variable("BIGQUERY_EMULATOR_HOST", None, "bqemulator URL, e.g. `http://127.0.0.1:9050`."),
        Variable(
            "MONGODB_EMULATOR",
            None,
            "Set by the local stack (to `secantusdb`): MONGODB_URI is the local stand-in, so the product's "
            "MongoDB clients also refuse what MongoDB refuses and it does not (nesting past 100 levels); "
            "unset in production.",
        ),
        # Ingest limits and behaviour.
        Variable("MAX_BODY_BYTES", "262144", "Largest accepted request body; larger gets 413."),
        Variable("MAX_NESTING_DEPTH", "6", "Deepest accepted nesting of keys (`a[b][c]` is depth 3)."),
        Variable("MAX_KEYS", "2000", "Most keys (all levels) accepted in one body."),
        Variable("MAX_VALUE_CHARS", "16384", "Longest accepted string value."),
        Variable("MAX_KEY_CHARS", "256", "Longest accepted key."),
        Variable("STORAGE_ATTEMPTS", "3", "Tries of one object write before answering 503."),
        Variable("STORAGE_TIMEOUT_SECONDS", "10", "Timeout of one object-write try."),
        Variable("RETRY_AFTER_SECONDS", "30", "`Retry-After` sent with a 503."),
        Variable(
            "TRUSTED_PROXY_HOPS",
            "1",
            "Proxies in front of ingest that each append the address they saw to `X-Forwarded-For`; the "
            "client address is the entry this far from the end (1: the last, which Google's front end "
            "appends). Entries before it are whatever the client wrote.",
        ),
        Variable("LOG_LEVEL", "INFO", "Python log level of the structured JSON logs."),
        Variable(
            "CI",
            None,
            "Set (to anything) by CI systems (`CI=true`): long steps report their progress as count lines "
            "in the log, not as a bar, even on a terminal (telemetry/common/progress.py).",
        ),
        # Personal data (telemetry/common/privacy.py; docs/privacy.md).
        Variable(
            "IP_PREFIX_V4",
            "24",
            "Bits of an IPv4 `ip_address` kept in MongoDB/BigQuery `sites` (and of the client address "
            "in ingest's log lines); 0 drops it, 32 keeps it whole.",
        ),
        Variable(
            "IP_PREFIX_V6",
            "48",
            "Bits of an IPv6 `ip_address` kept, likewise; 0 drops it, 128 keeps it whole.",
        ),
        Variable(
            "SITE_PERSONAL_FIELDS",
            "admin_email,first_name,last_name",
            "Which of `admin_email`, `first_name`, `last_name` MongoDB/BigQuery `sites` keep "
            "(comma-separated), or `none`; the mail integration sends only what is kept.",
        ),
        # Hosting country and network of a site (telemetry/pipelines/geo.py; docs/geo.md).
        Variable(
            "GEO_DATABASES",
            None,
            "MaxMind DB files (GeoLite2 or GeoIP2 Country, City, ASN, ISP or Enterprise `.mmdb`) or a newer "
            "geoip2fast `.dat.gz`, comma-separated local paths or `gs://bucket/object`, in which the pipelines "
            "look up a site's hosting `country` and `hosting`; a label none of them holds comes from the bundled "
            "data. Unset: the bundled offline data (geoip2fast's GeoLite2 file, see docs/geo.md).",
        ),
        # Bounds on the pipelines' calls to services that stop answering (a frozen or
        # unreachable server fails the run within a few of these instead of hanging it).
        Variable(
            "MONGODB_TIMEOUT_SECONDS",
            "30",
            "Bound of one MongoDB server selection, connection or socket read (a retried write may take two).",
        ),
        Variable(
            "BIGQUERY_TIMEOUT_SECONDS",
            "300",
            "Bound of one BigQuery call (its retries included), of the wait for a job (a load, a MERGE), "
            "and of one write or delete of a load job's file.",
        ),
        Variable(
            "PUBSUB_TIMEOUT_SECONDS",
            "60",
            "Bound of one Pub/Sub pull, lease extension or acknowledgement, its retries included.",
        ),
        # How much one pipeline run takes on (docs/reliability.md, "Catching up after an outage").
        Variable(
            "MAX_MESSAGES_PER_RUN",
            "30000",
            "Most notifications one notification-mode pipeline run pulls from each of its subscriptions; "
            "the rest stays for the next run, so a backlog drains over hourly runs that each end well "
            "within Dataflow's runtime bound.",
        ),
        # The analytics job (telemetry/analytics/job.py).
        Variable(
            "ACTIVE_WINDOW_DAYS",
            "14",
            "A site is active on a day if it sent a track ping within this many days up to it "
            "(sites ping weekly), and no deactivation since; 1 to 62.",
        ),
        Variable(
            "ANALYTICS_SETTLE_HOURS",
            "6",
            "Hours after a UTC day ends during which runs still recompute it, for pings the "
            "pipelines append late; after that its figures are final.",
        ),
        Variable(
            "ANALYTICS_MAX_BYTES_BILLED",
            "10737418240",
            "Each analytics query fails rather than bill more than this many bytes.",
        ),
        Variable(
            "ANALYTICS_MAX_LABELS",
            "50",
            "Labels kept per distribution and day; the rest are summed under `other`.",
        ),
        # The audit (telemetry/audit/job.py, `make audit`, the daily audit function).
        Variable(
            "AUDIT_DAYS",
            "7",
            "Days of hour folders the audit checks, back from now; must stay inside the raw pings' "
            "retention (Terraform's raw_ping_retention_days).",
        ),
        Variable(
            "AUDIT_SETTLE_HOURS",
            "3",
            "The audit leaves alone the hours that ended less than this long ago (the hourly runs "
            "are still draining their notifications).",
        ),
        Variable(
            "AUDIT_MAX_BYTES_BILLED",
            "10737418240",
            "Each audit query fails rather than bill more than this many bytes.",
        ),
        Variable(
            "AUDIT_MAX_REPROCESS_RUNS",
            "12",
            "Pipeline runs (each a contiguous range of unbalanced hours) one audit starts at most; "
            "0 only reports. The rest wait for the next audit.",
        ),
        Variable(
            "AUDIT_LAUNCH",
            None,
            "JSON of the Flex Template launches (project, region, and per pipeline containerSpecGcsPath, "
            "parameters, environment; terraform/audit.tf writes it): the audit reprocesses on Dataflow. "
            "Unset: `make audit` runs the pipelines here in hour mode.",
        ),
        # Notifications (telemetry/notify/, the hourly `telemetry-notify` function; docs/notify.md).
        Variable(
            "NOTIFY_OVERLAP_HOURS",
            "24",
            "Each notify run reads the facts committed since its previous run's end less this many hours, "
            "so a pipeline run (or an audit's reprocessing) that commits pings this late still alerts; later "
            "ones are in the history and the dashboard but send nothing.",
        ),
        Variable(
            "NOTIFY_MAX_BYTES_BILLED",
            "1073741824",
            "Each notify query fails rather than bill more than this many bytes.",
        ),
        Variable(
            "NOTIFY_RETRY_HOURS",
            "24",
            "A delivery (one event to one recipient or endpoint) is retried for this long after its first "
            "try, then set aside with its last error.",
        ),
        Variable(
            "NOTIFY_RETRY_FIRST_SECONDS",
            "60",
            "Wait after a delivery's first failed try; it doubles after each failure (with jitter), up to "
            "NOTIFY_RETRY_MAX_SECONDS. A retry is sent by the first run after it is due.",
        ),
        Variable("NOTIFY_RETRY_MAX_SECONDS", "14400", "Longest wait between two tries of one delivery."),
        Variable(
            "NOTIFY_CONNECT_TIMEOUT_SECONDS",
            "5",
            "Bound of one connection to a webhook endpoint or the SMTP relay (TLS handshake included).",
        ),
        Variable(
            "NOTIFY_READ_TIMEOUT_SECONDS",
            "15",
            "Bound of each wait for a webhook endpoint's or the SMTP relay's answer; a try that has not "
            "finished within twice this is abandoned.",
        ),
        Variable(
            "NOTIFY_PROJECT_CONCURRENCY",
            "2",
            "Most deliveries of one project in flight at once, so a slow receiver holds at most this many "
            "of the NOTIFY_WORKERS.",
        ),
        Variable("NOTIFY_WORKERS", "16", "Deliveries in flight at once across all projects (threads)."),
        Variable(
            "NOTIFY_RUN_BUDGET_SECONDS",
            "240",
            "A notify run starts no delivery after this many seconds; what is left is due at the next run. "
            "Well inside the function's timeout (540 s) with one try's bound added.",
        ),
        Variable(
            "NOTIFY_MAX_SITE_EVENTS_PER_DAY",
            "100",
            "Most `site.deactivated` events, and most `site.activated`, per project and UTC day: each is "
            "mailed and posted on its own up to this; past it, one summary event per project, day and type "
            "says how many more there were (forged pings cannot flood a vendor's inbox or spend the SMTP "
            "relay's quota). At least 1.",
        ),
        Variable(
            "NOTIFY_ALLOW_PRIVATE_WEBHOOKS",
            None,
            "Set (to 1) only by the local stack and tests: webhook URLs may be `http` and resolve to loopback "
            "or private addresses. Unset (always in production, Terraform never sets it), such an endpoint is "
            "refused at each delivery.",
        ),
        Variable(
            "SMTP_RELAY",
            None,
            "`host:port` of the SMTP relay that sends the alerts and digests (SendGrid, Mailgun, SES, "
            "Postmark, ...); unset: email deliveries fail, are retried, then set aside.",
        ),
        Variable(
            "SMTP_TLS",
            "starttls",
            "`starttls` (the relay's port 587: plain connection upgraded before AUTH) or `implicit` (port "
            "465: TLS from the first byte). Never plain text.",
        ),
        Variable("SMTP_USERNAME", None, "SMTP AUTH user name at the relay."),
        Variable(
            "SMTP_PASSWORD",
            None,
            "SMTP AUTH password (or API key) at the relay, or a Secret Manager version name holding it.",
        ),
        Variable("SMTP_FROM", "notify@localhost", "The alerts' and digests' `From:` address."),
        Variable(
            "SMTP_CA_FILE",
            None,
            "PEM file of the CA that signs the relay's certificate (the local stack's self-signed one); "
            "unset: the system's CAs.",
        ),
        # The spike alert and the digest (telemetry/notify/spike.py, digest.py; docs/notify.md).
        Variable(
            "NOTIFY_SPIKE_TRAILING_DAYS",
            "28",
            "Spike alert: days before a day whose deactivations make the project's trailing level "
            "(their mean and standard deviation; days without any count as 0).",
        ),
        Variable(
            "NOTIFY_SPIKE_MIN_DEACTIVATIONS",
            "10",
            "Spike alert: a day with fewer deactivations than this never alerts, however low the trailing level.",
        ),
        Variable(
            "NOTIFY_SPIKE_RATIO",
            "2.0",
            "Spike alert: a day alerts only above this many times the trailing mean (and above "
            "NOTIFY_SPIKE_STDEVS); at least 1.",
        ),
        Variable(
            "NOTIFY_SPIKE_STDEVS",
            "3.0",
            "Spike alert: a day alerts only above the trailing mean plus this many standard deviations "
            "(and above NOTIFY_SPIKE_RATIO times the mean).",
        ),
        Variable(
            "NOTIFY_SPIKE_DRIVER_SHARE",
            "0.25",
            "Spike alert: a version or reason is named when its excess over its own trailing daily mean is "
            "at least this share of the day's rise over the trailing mean (at most 3 are named; the largest "
            "if none reaches it); above 0, at most 1.",
        ),
        Variable(
            "NOTIFY_RECENT_DAYS",
            "3",
            "Days, back from the analytics job's last final day, that each notify run checks for spikes and "
            "`figures.ready`: a run missed for fewer days than this catches up; the event ids keep each once.",
        ),
        Variable(
            "NOTIFY_DIGEST_CATCH_UP_DAYS",
            "7",
            "Digest and `figures.ready`: a period (or day) not yet sent is still sent late if it ended at most "
            "this many days before the analytics job's last final day; older ones are not. At most the "
            "outbox's retention (30 days) less 3.",
        ),
        # Local stack (telemetry/local/stack.py); ports on 127.0.0.1.
        Variable("GCS_PORT", "4443", "Local Cloud Storage port (fake-gcs-server behind Google's limits)."),
        Variable("PUBSUB_PORT", "8085", "Local Pub/Sub emulator port."),
        Variable("BQ_PORT", "9050", "Local BigQuery REST port (bqemulator behind Google's limits)."),
        Variable("BQ_GRPC_PORT", "9060", "Local bqemulator gRPC port."),
        Variable(
            "GCS_EMULATOR_PORT",
            None,
            "Port of fake-gcs-server itself, behind the proxy on GCS_PORT that refuses what Cloud Storage "
            "refuses (telemetry/local/limits.py); unset: a free port at each start.",
        ),
        Variable(
            "BQ_EMULATOR_PORT",
            None,
            "Port of bqemulator's REST API itself, behind the proxy on BQ_PORT that refuses what BigQuery "
            "refuses; unset: a free port at each start.",
        ),
        Variable("MONGODB_PORT", "27018", "Local SecantusDB port."),
        Variable("INGEST_PORT", "8080", "Local port of the three ingest functions behind one base URL."),
        Variable(
            "DASHBOARD_PORT",
            "8081",
            "Local port of the dashboard function (its API and pages); `.local/env` names its base URL DASHBOARD_URL.",
        ),
        Variable(
            "SMTP_PORT",
            "2525",
            "Local SMTP server's port (aiosmtpd: STARTTLS and AUTH required, as a relay does); `.local/env` "
            "names it in SMTP_RELAY.",
        ),
        Variable(
            "NOTIFY_RECEIVER_PORT",
            "8090",
            "First port of the notify tests' local webhook receivers (tests/integration/test_notify.py uses it "
            "and the next three).",
        ),
        Variable(
            "LOCAL_STACK_DIR",
            None,
            "Folder of the local stack's state (data, logs, pid files, `env`); unset: `.local` in the checkout.",
        ),
        Variable("INGEST_WORKERS", "2", "Local ingest server: gunicorn worker processes."),
        Variable("INGEST_THREADS", "8", "Local ingest server: threads per worker."),
        # The soak (scripts/soak.py, `make soak`).
        Variable("SOAK_SECONDS", "600", "`make soak`: seconds of steady traffic (60 for a quick run)."),
        Variable("SOAK_RATE", "150", "`make soak`: requests a second, sent open loop."),
    )
}


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, or its declared default; unknown names are a bug."""
    var = VARIABLES[name]
    env = os.environ if environ is None else environ
    value = env.get(name)
    return value if value not in (None, "") else var.default


def get_int(name: str, environ: Mapping[str, str] | None = None, minimum: int = 1) -> int:
    raw = get(name, environ)
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from e
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def get_float(name: str, environ: Mapping[str, str] | None = None, minimum: float | None = None) -> float:
    raw = get(name, environ)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a number, got {raw!r}") from e
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise ValueError(
            f"{name} must be a finite number"
            + (f" of at least {minimum}" if minimum is not None else "")
            + f", got {raw!r}"
        )
    return value


def require(name: str, environ: Mapping[str, str] | None = None) -> str:
    value = get(name, environ)
    if not value:
        raise ValueError(f"{name} is not set")
    return value


def subscription_name(topic: str, route: str) -> str:
    """The pull subscription of one route's notifications; Terraform names it the same way."""
    return f"{topic}-{route}"
