"""Hand-made serving documents (MongoDB `analytics`, shape in telemetry/analytics/metrics.py) for the report's tests."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from telemetry.analytics import metrics

LOCALES = ["en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "ja", "ru_RU", "pl_PL", "sv_SE", "tr_TR"]
LOCALES += ["da_DK", "fi", "nb_NO", "cs_CZ", "en_GB", "ko_KR"]
THEMES = [f"theme-{i}" for i in range(25)] + ["twentytwentyfour", "astra", "generatepress"]
# The custom field the documents carry (a project whitelisting it gets its chart).
CUSTOM_FIELD = "license_type"


def documents(project_hash: str, end: date, days: int = 90, seed: int = 1) -> list[dict[str, Any]]:
    """`days` days of every metric up to `end`, with a gap in the opt-in rate and its own reason slug."""
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []

    def scalar(metric: metrics.Metric, day: str, value: Any) -> None:
        docs.append({"hash": project_hash, "metric": metric.name, "day": day, "value": value})

    def breakdown(metric: metrics.Metric, day: str, counts: dict[str, int]) -> None:
        docs.append({"hash": project_hash, "metric": metric.name, "day": day, "breakdown": counts})

    active = 400
    for offset in range(days - 1, -1, -1):
        day = (end - timedelta(days=offset)).strftime(metrics.DAY_FORMAT)
        new, gone = rng.randint(5, 25), rng.randint(0, 12)
        active += new - gone
        scalar(metrics.ACTIVE_SITES, day, active)
        scalar(metrics.NEW_SITES, day, new)
        scalar(metrics.DEACTIVATIONS, day, gone)
        scalar(metrics.OPT_IN_RATE, day, None if offset == 10 else round(0.55 + rng.random() * 0.2, 4))
        reasons = {"too-expensive": rng.randint(0, 3), "is-not-working": rng.randint(0, 4), "none": 1}
        breakdown(metrics.DEACTIVATION_REASONS, day, {k: v for k, v in reasons.items() if v})
        cohorts = {str(k): (rng.randint(40, 60), 60) for k in range(1, metrics.RETENTION_WEEKS + 1)}
        docs.append(
            {
                "hash": project_hash,
                "metric": metrics.RETENTION_WEEKLY.name,
                "day": day,
                "rates": {k: n / sites for k, (n, sites) in cohorts.items()},
                "breakdown": {k: n for k, (n, _sites) in cohorts.items()},
                "sites": {k: sites for k, (_n, sites) in cohorts.items()},
            }
        )
        ages = dict(zip(metrics.INSTALL_AGE_BUCKETS, (rng.randint(0, 4), 3, rng.randint(0, 3), 2, 1), strict=True))
        breakdown(metrics.INSTALL_AGE_AT_DEACTIVATION, day, {k: v for k, v in ages.items() if v})
    last = end.strftime(metrics.DAY_FORMAT)
    breakdown(metrics.PROJECT_VERSION, last, {"2.1.0": active // 2, "2.0.3": active // 3, "1.9.9": active // 6})
    breakdown(metrics.WP_VERSION, last, {"6.5.2": active // 2, "6.4.3": active // 3, "6.3": active // 6})
    breakdown(metrics.PHP_VERSION, last, {"8.2": active // 2, "8.1": active // 4, "7.4": active // 4})
    breakdown(metrics.MYSQL_VERSION, last, {"8.0.36": active // 2, "10.6.16-MariaDB": active // 2})
    breakdown(metrics.SERVER_SOFTWARE, last, {"Apache": active // 2, "nginx/1.24.0": active // 3, "LiteSpeed": 40})
    breakdown(metrics.LOCALE, last, {loc: max(1, active // (i + 2)) for i, loc in enumerate(LOCALES)})
    breakdown(metrics.MULTISITE, last, {"no": active - 20, "yes": 20})
    breakdown(metrics.THEME, last, {theme: 1 + (i * 7) % 30 for i, theme in enumerate(THEMES)})
    stranded = {"PHP 8.0": active // 4, "PHP 8.1": active // 4, "PHP 8.2": active // 2, "PHP 8.3": active - 5}
    stranded |= {"PHP 8.4": active - 5, "PHP unknown": 5, "WordPress 6.4": active // 6, "WordPress 6.5": active // 2}
    stranded |= {f"WordPress {v}": active for v in ("6.6", "6.7", "6.8", "6.9", "7.0")}
    breakdown(metrics.REQUIREMENTS_IMPACT, last, {**dict.fromkeys(metrics.requirement_labels(), 0), **stranded})
    release = {"2.1.0": (9, active // 2), "2.0.3": (2, active // 3), "1.9.9": (1, active // 6)}
    docs.append(
        {
            "hash": project_hash,
            "metric": metrics.DEACTIVATION_RATE_BY_VERSION.name,
            "day": last,
            "rates": {v: metrics.RATE_PER * n / sites for v, (n, sites) in release.items()},
            "breakdown": {v: n for v, (n, _sites) in release.items()},
            "sites": {v: sites for v, (_n, sites) in release.items()},
        }
    )
    breakdown(metrics.PLUGINS, last, {f"plugin-{i}": max(1, active // (i + 1)) for i in range(30)})
    breakdown(metrics.COUNTRY, last, {"US": active // 3, "DE": active // 4, "FR": active // 8, "unknown": 9})
    breakdown(
        metrics.HOSTING, last, {"Hetzner": active // 4, "OVH": active // 5, "SiteGround": active // 6, "other": 7}
    )
    licenses = {"free": active // 2, "pro": active // 4, "agency": active // 8, "other": 12, "unknown": 30}
    breakdown(metrics.custom_field(CUSTOM_FIELD), last, licenses)
    return docs
