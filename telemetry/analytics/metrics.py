"""The figures behind the vendor's charts: their names, kinds and titles.

One source of truth for the analytics job (which computes them), the serving
copy in MongoDB `analytics` (one document per `hash`, `metric`, `day`) and the
report (which draws them).

A serving document is
    {"hash": str, "metric": str, "day": "YYYY-MM-DD", "value": number | None}   (SCALAR)
    {"hash": str, "metric": str, "day": "YYYY-MM-DD", "breakdown": {label: count}}   (BREAKDOWN)
`value` is None when the figure is undefined that day (an opt-in rate with no
sites to divide by). A breakdown's labels are never empty: a missing value is
counted under UNKNOWN_LABEL.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

COLLECTION = "analytics"
DAY_FORMAT = "%Y-%m-%d"
UNKNOWN_LABEL = "unknown"
TOP_PLUGINS = 20


class Kind(Enum):
    SCALAR = "value"
    BREAKDOWN = "breakdown"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    title: str


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
)
BY_NAME = {metric.name: metric for metric in METRICS}
# Scalars that count something, served as integers.
COUNTS = (ACTIVE_SITES, NEW_SITES, DEACTIVATIONS)
# Distributions among the sites active that day (the rest are per-day events).
DISTRIBUTIONS = tuple(m for m in METRICS if m.kind is Kind.BREAKDOWN and m is not DEACTIVATION_REASONS)
