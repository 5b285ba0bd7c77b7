"""The figures behind the vendor's charts: their names, kinds and titles.

One source of truth for the analytics job (which computes them), the serving
copy in MongoDB `analytics` (one document per `hash`, `metric`, `day`) and the
report (which draws them).

A serving document is
    {"hash": str, "metric": str, "day": "YYYY-MM-DD", "value": number | None}   (SCALAR)
    {"hash": str, "metric": str, "day": "YYYY-MM-DD", "breakdown": {label: count}}   (BREAKDOWN)
    {"hash": str, "metric": str, "day": "YYYY-MM-DD", "rates": {label: number},
     "breakdown": {label: events}, "sites": {label: sites}}   (RATES: rates[l] = per * events / sites)
`value` is None when the figure is undefined that day (an opt-in rate with no
sites to divide by). A breakdown's labels are never empty: a missing value is
counted under UNKNOWN_LABEL.

Besides METRICS, a project has one BREAKDOWN `custom_field:<key>` per `extra` key
it whitelists that an active site holds (`custom_field`, `named`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

COLLECTION = "analytics"
DAY_FORMAT = "%Y-%m-%d"
UNKNOWN_LABEL = "unknown"
TOP_PLUGINS = 20
# Characters kept of a custom field's value as a label. The values are whatever a sender
# puts in `extra` (a project's hash is public), and each label becomes a MongoDB field name
# and a chart's axis label: this bounds a document at ANALYTICS_MAX_LABELS such labels.
# Values sharing their first MAX_LABEL_CHARS characters count as one.
MAX_LABEL_CHARS = 100
CUSTOM_FIELD_PREFIX = "custom_field:"
# Sites that must hold a custom field's value for it to be named; fewer, and it counts under
# `other`. The whitelisted keys can hold anything (erase treats them as personal data): a
# value of a single site, or of a handful, is never shown, nor kept in the figures.
MIN_LABEL_SITES = 5


class Kind(Enum):
    SCALAR = "value"
    BREAKDOWN = "breakdown"
    # Per label, events per `Metric.per` sites. BigQuery keeps the two counts of each label
    # as breakdown entries `events:<label>` and `sites:<label>`; the serving copy adds the rate.
    RATES = "rates"


RATE_PER = 1000
RATE_EVENTS, RATE_SITES = "events", "sites"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    title: str
    per: int = 1  # a RATES metric's rate is per this many sites (1: a share)


ACTIVE_SITES = Metric("active_sites", Kind.SCALAR, "Active sites")
NEW_SITES = Metric("new_sites", Kind.SCALAR, "New sites")
DEACTIVATIONS = Metric("deactivations", Kind.SCALAR, "Deactivations")
DEACTIVATION_REASONS = Metric("deactivation_reasons", Kind.BREAKDOWN, "Deactivation reasons")
OPT_IN_RATE = Metric("opt_in_rate", Kind.SCALAR, "Opt-in rate")
PROJECT_VERSION = Metric("project_version", Kind.BREAKDOWN, "Project version")
WP_VERSION = Metric("wp_version", Kind.BREAKDOWN, "WordPress version")
PHP_VERSION = Metric("php_version", Kind.BREAKDOWN, "PHP version")
MYSQL_VERSION = Metric("mysql_version", Kind.BREAKDOWN, "Database server")
SERVER_SOFTWARE = Metric("server_software", Kind.BREAKDOWN, "Web server")
LOCALE = Metric("locale", Kind.BREAKDOWN, "Locale")
MULTISITE = Metric("multisite", Kind.BREAKDOWN, "Multisite")
THEME = Metric("theme", Kind.BREAKDOWN, "Theme")
PLUGINS = Metric("plugins", Kind.BREAKDOWN, f"Top {TOP_PLUGINS} co-installed plugins")
COUNTRY = Metric("country", Kind.BREAKDOWN, "Hosting country")
HOSTING = Metric("hosting", Kind.BREAKDOWN, "Hosting network")
INSTALL_AGE_AT_DEACTIVATION = Metric("install_age_at_deactivation", Kind.BREAKDOWN, "Install age at deactivation")
DEACTIVATION_RATE_BY_VERSION = Metric(
    "deactivation_rate_by_version", Kind.RATES, f"Deactivations per {RATE_PER:,} sites, by version", per=RATE_PER
)
RETENTION_WEEKLY = Metric("retention_weekly", Kind.RATES, "Weekly cohorts still active")
REQUIREMENTS_IMPACT = Metric("requirements_impact", Kind.BREAKDOWN, "Sites a new minimum version would strand")

# install_age_at_deactivation's labels, youngest first: whole UTC days from the
# site's first track ping to the deactivate ping (the CASE in analytics_daily.sql).
# retention_weekly's labels: weeks after the cohort's week, "1" to this.
RETENTION_WEEKS = 8

# deactivation_rate_by_version's trailing window: the day and the 6 before it.
DEACTIVATION_RATE_DAYS = 7

INSTALL_AGE_BUCKETS = ("under 1 day", "1-7 days", "8-30 days", "31-90 days", "over 90 days")

# requirements_impact's candidate minimums, as major.minor, oldest first. PHP:
# the branches WordPress itself supports; WordPress: the releases of 2024-2026.
PHP_CANDIDATES = ("7.4", "8.0", "8.1", "8.2", "8.3", "8.4")
WP_CANDIDATES = ("6.4", "6.5", "6.6", "6.7", "6.8", "6.9", "7.0")
PHP, WORDPRESS = "PHP", "WordPress"


def requirement_label(software: str, version: str) -> str:
    """A requirements_impact label: `PHP 8.1`, `WordPress 6.9`, or `PHP unknown` for the unparsable."""
    return f"{software} {version}"


def requirement_labels() -> tuple[str, ...]:
    """Every requirements_impact label, in the order a chart shows them."""
    return tuple(
        requirement_label(software, version)
        for software, candidates in ((PHP, PHP_CANDIDATES), (WORDPRESS, WP_CANDIDATES))
        for version in (*candidates, UNKNOWN_LABEL)
    )


METRICS = (
    ACTIVE_SITES,
    NEW_SITES,
    DEACTIVATIONS,
    DEACTIVATION_REASONS,
    OPT_IN_RATE,
    PROJECT_VERSION,
    WP_VERSION,
    PHP_VERSION,
    MYSQL_VERSION,
    SERVER_SOFTWARE,
    LOCALE,
    MULTISITE,
    THEME,
    PLUGINS,
    COUNTRY,
    HOSTING,
    INSTALL_AGE_AT_DEACTIVATION,
    REQUIREMENTS_IMPACT,
    DEACTIVATION_RATE_BY_VERSION,
    RETENTION_WEEKLY,
)
BY_NAME = {metric.name: metric for metric in METRICS}


def custom_field(key: str) -> Metric:
    """The distribution of one whitelisted `extra` key's values among the active sites."""
    return Metric(f"{CUSTOM_FIELD_PREFIX}{key}", Kind.BREAKDOWN, f"Custom field: {key}")


def named(name: str) -> Metric:
    """The metric of a serving document's `metric`; KeyError for a name that is none."""
    if name.startswith(CUSTOM_FIELD_PREFIX) and len(name) > len(CUSTOM_FIELD_PREFIX):
        return custom_field(name.removeprefix(CUSTOM_FIELD_PREFIX))
    return BY_NAME[name]


# Every metric name, as a regular expression (the dashboard's OpenAPI).
NAME_PATTERN = "^(?:" + "|".join(re.escape(name) for name in BY_NAME) + f"|{re.escape(CUSTOM_FIELD_PREFIX)}.+)$"


def is_name(name: str) -> bool:
    try:
        named(name)
    except KeyError:
        return False
    return True


# Scalars that count something, served as integers.
COUNTS = (ACTIVE_SITES, NEW_SITES, DEACTIVATIONS)
# Distributions among the sites active that day, one label per site, drawn top first. (The other
# breakdowns are per-day events, or requirements_impact's per-candidate counts.)
DISTRIBUTIONS = (
    PROJECT_VERSION,
    WP_VERSION,
    PHP_VERSION,
    MYSQL_VERSION,
    SERVER_SOFTWARE,
    LOCALE,
    MULTISITE,
    THEME,
    PLUGINS,
    COUNTRY,
    HOSTING,
)
