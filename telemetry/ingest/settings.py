"""The ingest functions' settings, built from telemetry.common.config's variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from telemetry.common import privacy, wire
from telemetry.common.config import get, get_int, require


@dataclass(frozen=True)
class IngestSettings:
    """What an ingest function instance needs; read once per instance.

    The body limits are read here and nowhere else: ingest applies them, and the
    pipelines never apply them again (a stored ping passed them when it was accepted).
    """

    project: str
    bucket: str
    max_body_bytes: int
    limits: wire.Limits
    storage_attempts: int
    storage_timeout_seconds: float
    retry_after_seconds: int
    trusted_proxy_hops: int
    privacy: privacy.Policy = privacy.DEFAULT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngestSettings:
        return cls(
            project=require("GCP_PROJECT", environ),
            bucket=require("TRACKING_BUCKET", environ),
            max_body_bytes=get_int("MAX_BODY_BYTES", environ),
            limits=wire.Limits(
                max_depth=get_int("MAX_NESTING_DEPTH", environ),
                max_keys=get_int("MAX_KEYS", environ),
                max_value_chars=get_int("MAX_VALUE_CHARS", environ),
                max_key_chars=get_int("MAX_KEY_CHARS", environ),
            ),
            storage_attempts=get_int("STORAGE_ATTEMPTS", environ),
            storage_timeout_seconds=float(get_int("STORAGE_TIMEOUT_SECONDS", environ)),
            retry_after_seconds=get_int("RETRY_AFTER_SECONDS", environ),
            trusted_proxy_hops=get_int("TRUSTED_PROXY_HOPS", environ),
            privacy=privacy_policy(environ),
        )


def privacy_policy(environ: Mapping[str, str] | None = None) -> privacy.Policy:
    """The personal-data policy from IP_PREFIX_V4, IP_PREFIX_V6 and SITE_PERSONAL_FIELDS."""
    return privacy.Policy.parse(
        get("IP_PREFIX_V4", environ), get("IP_PREFIX_V6", environ), get("SITE_PERSONAL_FIELDS", environ)
    )
