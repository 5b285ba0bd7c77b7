"""`NotifySettings`: every setting of the notify run, built once from config.VARIABLES."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from telemetry.common import config, secrets

SMTP_TLS_MODES = ("starttls", "implicit")
OUTBOX_KEEP_SECONDS = 30 * 86400  # outbox.KEEP, in seconds (a test keeps them equal; outbox imports pymongo)


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None  # None: no relay configured, every email delivery fails with that reason
    port: int
    tls: str  # one of SMTP_TLS_MODES
    username: str | None
    password: str | None
    sender: str
    ca_file: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings:
        relay = config.get("SMTP_RELAY", environ)
        host, port = None, 0
        if relay:
            host, sep, port_text = relay.rpartition(":")
            if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"SMTP_RELAY must be host:port, got {relay!r}")
            port = int(port_text)
        tls = config.get("SMTP_TLS", environ)
        if tls not in SMTP_TLS_MODES:
            raise ValueError(f"SMTP_TLS must be one of {', '.join(SMTP_TLS_MODES)}, got {tls!r}")
        return cls(
            host=host,
            port=port,
            tls=tls,  # type: ignore[arg-type]
            username=config.get("SMTP_USERNAME", environ),
            # Mounted from Secret Manager in production (telemetry.common.secrets).
            password=secrets.resolve(config.get("SMTP_PASSWORD", environ)),
            sender=config.require("SMTP_FROM", environ),
            ca_file=config.get("SMTP_CA_FILE", environ),
        )


@dataclass(frozen=True)
class NotifySettings:
    project: str
    dataset: str
    mongodb_uri: str
    mongodb_db: str
    overlap: timedelta
    max_bytes_billed: int
    retry_window: timedelta
    retry_first: timedelta
    retry_max: timedelta
    connect_timeout: float
    read_timeout: float
    project_concurrency: int
    workers: int
    run_budget: timedelta
    allow_private_webhooks: bool
    max_site_events_per_day: int
    bigquery_timeout_seconds: int
    mongodb_timeout_seconds: int
    smtp: SmtpSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifySettings:
        retry_first = config.get_int("NOTIFY_RETRY_FIRST_SECONDS", environ)
        retry_max = config.get_int("NOTIFY_RETRY_MAX_SECONDS", environ)
        if retry_max < retry_first:
            raise ValueError("NOTIFY_RETRY_MAX_SECONDS must be at least NOTIFY_RETRY_FIRST_SECONDS")
        if config.get_int("NOTIFY_MAX_SITE_EVENTS_PER_DAY", environ) < 1:
            raise ValueError("NOTIFY_MAX_SITE_EVENTS_PER_DAY must be at least 1")
        overlap_and_retries = config.get_int("NOTIFY_OVERLAP_HOURS", environ) + config.get_int(
            "NOTIFY_RETRY_HOURS", environ
        )
        if overlap_and_retries * 3600 >= OUTBOX_KEEP_SECONDS:
            raise ValueError(
                "NOTIFY_OVERLAP_HOURS + NOTIFY_RETRY_HOURS must stay under the outbox's "
                f"{OUTBOX_KEEP_SECONDS // 86400} days (outbox.KEEP): an event could be found again after it expired"
            )
        return cls(
            project=config.require("GCP_PROJECT", environ),
            dataset=config.require("BQ_DATASET", environ),
            mongodb_uri=secrets.resolve(config.require("MONGODB_URI", environ)),  # type: ignore[arg-type]
            mongodb_db=config.require("MONGODB_DB", environ),
            overlap=timedelta(hours=config.get_int("NOTIFY_OVERLAP_HOURS", environ)),
            max_bytes_billed=config.get_int("NOTIFY_MAX_BYTES_BILLED", environ),
            retry_window=timedelta(hours=config.get_int("NOTIFY_RETRY_HOURS", environ)),
            retry_first=timedelta(seconds=retry_first),
            retry_max=timedelta(seconds=retry_max),
            connect_timeout=float(config.get_int("NOTIFY_CONNECT_TIMEOUT_SECONDS", environ)),
            read_timeout=float(config.get_int("NOTIFY_READ_TIMEOUT_SECONDS", environ)),
            project_concurrency=config.get_int("NOTIFY_PROJECT_CONCURRENCY", environ),
            workers=config.get_int("NOTIFY_WORKERS", environ),
            run_budget=timedelta(seconds=config.get_int("NOTIFY_RUN_BUDGET_SECONDS", environ)),
            allow_private_webhooks=bool(config.get("NOTIFY_ALLOW_PRIVATE_WEBHOOKS", environ)),
            max_site_events_per_day=config.get_int("NOTIFY_MAX_SITE_EVENTS_PER_DAY", environ),
            bigquery_timeout_seconds=config.get_int("BIGQUERY_TIMEOUT_SECONDS", environ),
            mongodb_timeout_seconds=config.get_int("MONGODB_TIMEOUT_SECONDS", environ),
            smtp=SmtpSettings.from_env(environ),
        )
