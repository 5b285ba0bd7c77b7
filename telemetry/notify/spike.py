"""The deactivation spike alert: a day whose deactivations are well above the
project's trailing level, with the versions and reasons that drive the rise.

The rule (docs/notify.md, "Spike alert"; its parameters are settings in
telemetry/common/config.py):
- `total` is the day's deactivations, `mean` and `stdev` those of the
  NOTIFY_SPIKE_TRAILING_DAYS days before it (days without any count as 0,
  population standard deviation).
- The day is a spike when `total >= NOTIFY_SPIKE_MIN_DEACTIVATIONS` and
  `total > max(NOTIFY_SPIKE_RATIO * mean, mean + NOTIFY_SPIKE_STDEVS * stdev)`.
- The rise is `total - mean`. A version's (or a reason's) excess is its count
  on the day less its own trailing daily mean; the excesses of all versions add
  up to the rise. The alert names the versions whose excess is at least
  NOTIFY_SPIKE_DRIVER_SHARE of the rise, largest first, at most MAX_DRIVERS of
  them; when none reaches that share, the one with the largest excess. Reasons
  likewise.

Computed from committed data only: the days the analytics job has made final,
read from the BigQuery deactivations history with one partition-pruned query
per run (`counts_sql`). One alert per project and day, id `project + day`, so a
re-run or a late run finds the same alert and the outbox keeps it once.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from telemetry.analytics import metrics
from telemetry.common import config, projects
from telemetry.notify import emails, events, figures_ready
from telemetry.notify.contract import CollectContext, EmailContent

MAX_DRIVERS = 3
VERSION, REASON = "version", "reason"


@dataclass(frozen=True)
class SpikeRule:
    trailing_days: int
    min_deactivations: int
    ratio: float
    stdevs: float
    driver_share: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SpikeRule:
        driver_share = config.get_float("NOTIFY_SPIKE_DRIVER_SHARE", environ)
        if not 0 < driver_share <= 1:
            raise ValueError(f"NOTIFY_SPIKE_DRIVER_SHARE must be above 0 and at most 1, got {driver_share}")
        return cls(
            trailing_days=config.get_int("NOTIFY_SPIKE_TRAILING_DAYS", environ, minimum=2),
            min_deactivations=config.get_int("NOTIFY_SPIKE_MIN_DEACTIVATIONS", environ),
            ratio=config.get_float("NOTIFY_SPIKE_RATIO", environ, minimum=1.0),
            stdevs=config.get_float("NOTIFY_SPIKE_STDEVS", environ, minimum=0.0),
            driver_share=driver_share,
        )

    def threshold(self, mean: float, stdev: float) -> float:
        """The count a day must exceed (and reach `min_deactivations`) to be a spike."""
        return max(self.ratio * mean, mean + self.stdevs * stdev)


@dataclass(frozen=True)
class DayCounts:
    """One project's deactivations of one day, by version and by reason (each sums to the day's total)."""

    by_version: Mapping[str, int]
    by_reason: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_version.values())


NO_DEACTIVATIONS = DayCounts({}, {})


@dataclass(frozen=True)
class Driver:
    label: str
    count: int  # on the day
    trailing_mean: float  # per day over the trailing window
    excess: float  # count - trailing_mean

    def as_data(self) -> dict[str, Any]:
        return {
            "deactivations": self.count,
            "trailing_mean": round(self.trailing_mean, 3),
            "excess": round(self.excess, 3),
        }


@dataclass(frozen=True)
class Spike:
    day: date
    deactivations: int
    trailing_mean: float
    trailing_stdev: float
    threshold: float
    versions: tuple[Driver, ...]
    reasons: tuple[Driver, ...]


def mean_and_stdev(values: Sequence[int]) -> tuple[float, float]:
    """Mean and population standard deviation."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def drivers(
    rule: SpikeRule, day: Mapping[str, int], trailing: Sequence[Mapping[str, int]], rise: float
) -> list[Driver]:
    """The labels (versions or reasons) that drive `rise`, named as the rule says."""
    totals: Counter[str] = Counter()
    for counts in trailing:
        totals.update(counts)
    candidates = [
        Driver(
            label, day.get(label, 0), totals[label] / len(trailing), day.get(label, 0) - totals[label] / len(trailing)
        )
        for label in set(day) | set(totals)
    ]
    candidates = sorted((d for d in candidates if d.excess > 0), key=lambda d: (-d.excess, d.label))
    named = [d for d in candidates if d.excess >= rule.driver_share * rise][:MAX_DRIVERS]
    return named or candidates[:1]


def detect(rule: SpikeRule, day: date, counts: DayCounts, trailing: Sequence[DayCounts]) -> Spike | None:
    """The spike of `day`, or None. `trailing` holds exactly the rule's trailing days before it."""
    if len(trailing) != rule.trailing_days:
        raise ValueError(f"the trailing window holds {len(trailing)} days, the rule {rule.trailing_days}")
    total = counts.total
    mean, stdev = mean_and_stdev([c.total for c in trailing])
    threshold = rule.threshold(mean, stdev)
    if total < rule.min_deactivations or total <= threshold:
        return None
    rise = total - mean
    return Spike(
        day=day,
        deactivations=total,
        trailing_mean=mean,
        trailing_stdev=stdev,
        threshold=threshold,
        versions=tuple(drivers(rule, counts.by_version, [c.by_version for c in trailing], rise)),
        reasons=tuple(drivers(rule, counts.by_reason, [c.by_reason for c in trailing], rise)),
    )


def event_id(project: str, day: date) -> str:
    return events.event_id(events.DEACTIVATION_SPIKE, project, day.isoformat())


def spike_event(project: str, spike: Spike, reason_labels: Mapping[str, str]) -> events.Event:
    """The alert; `reason_labels` are the project's own (telemetry.common.projects.project_reason_labels)."""
    return events.Event(
        id=event_id(project, spike.day),
        project=project,
        type=events.DEACTIVATION_SPIKE,
        # When the day's figures were complete: the end of the day.
        occurred_at=datetime.combine(spike.day + timedelta(days=1), time(), UTC),
        data={
            "project": project,
            "day": spike.day.isoformat(),
            "deactivations": spike.deactivations,
            "trailing_mean": round(spike.trailing_mean, 3),
            "trailing_stdev": round(spike.trailing_stdev, 3),
            "threshold": round(spike.threshold, 3),
            "versions": [{"version": d.label, **d.as_data()} for d in spike.versions],
            "reasons": [
                {"reason": d.label, "label": reason_labels.get(d.label, d.label), **d.as_data()} for d in spike.reasons
            ],
            "deactivations_path": f"/v1/projects/{project}/deactivations",
        },
    )


def _driver_line(name: str, d: Mapping[str, Any]) -> str:
    return (
        f"{name}: {d['deactivations']:,} deactivations, {d['excess']:+,.1f} over its trailing "
        f"{d['trailing_mean']:,.1f} a day"
    )


def render_email(event: events.Event, project: Mapping[str, Any]) -> EmailContent:
    """The alert's mail: the day's count against the trailing level, the versions and reasons behind it."""
    data = event.data
    name = projects.project_name(project)
    versions = [v["version"] for v in data["versions"]]
    reasons = [r["label"] for r in data["reasons"]]
    subject = emails.one_line(
        f"{name}: {data['deactivations']:,} deactivations on {data['day']}, against {data['trailing_mean']:,.1f} "
        f"a day; driven by version {', '.join(versions)} ({', '.join(reasons)})"
    )
    level = (
        f"{data['deactivations']:,} deactivations on {data['day']} (UTC), above the alert level of "
        f"{data['threshold']:,.1f}: the trailing daily mean is {data['trailing_mean']:,.1f}, "
        f"its standard deviation {data['trailing_stdev']:,.1f}."
    )
    version_lines = [_driver_line(v["version"], v) for v in data["versions"]]
    reason_lines = [_driver_line(r["label"], r) for r in data["reasons"]]
    text = "\n".join(
        [
            f"{name}: a deactivation spike.",
            "",
            level,
            "",
            "Versions behind the rise:",
            *(f"  {line}" for line in version_lines),
            "",
            "Reasons behind the rise:",
            *(f"  {line}" for line in reason_lines),
            "",
            f"The deactivations: the dashboard, or GET {data['deactivations_path']}",
        ]
    )
    e = html.escape
    body = (
        f"<p><b>{e(name)}</b>: a deactivation spike.</p><p>{e(level)}</p>"
        f"<h2>Versions behind the rise</h2><ul>{''.join(f'<li>{e(line)}</li>' for line in version_lines)}</ul>"
        f"<h2>Reasons behind the rise</h2><ul>{''.join(f'<li>{e(line)}</li>' for line in reason_lines)}</ul>"
        f"<p>The deactivations: the dashboard, or <code>GET {e(data['deactivations_path'])}</code></p>"
    )
    return EmailContent(subject=subject, text=text + "\n", html=body)


# --- reading the history -----------------------------------------------------------


def counts_sql() -> str:
    """Deactivations per project, day, and version or reason, between @first and @last (inclusive).

    Reads only those days' partitions of `deactivations` (the filter is on its
    partitioning column). A version or reason outside a project's @max_labels
    largest over the range is counted as `other`, so forged labels cannot grow
    the answer; NULL and empty labels count as `unknown`, as in the analytics job.
    """
    return """
WITH rows AS (
  SELECT
    hash,
    DATE(received_at) AS day,
    IFNULL(NULLIF(TRIM(project_version), ''), @unknown_label) AS version,
    IFNULL(NULLIF(reason_id, ''), @unknown_label) AS reason
  FROM `{dataset}.deactivations`
  WHERE received_at >= TIMESTAMP(@first) AND received_at < TIMESTAMP(DATE_ADD(@last, INTERVAL 1 DAY))
    AND hash IN UNNEST(@projects)
),
labelled AS (
  SELECT hash, day, 'version' AS dimension, version AS label FROM rows
  UNION ALL SELECT hash, day, 'reason', reason FROM rows
),
ranked AS (
  SELECT hash, dimension, label,
    ROW_NUMBER() OVER (PARTITION BY hash, dimension ORDER BY COUNT(*) DESC, label) AS rank
  FROM labelled
  GROUP BY hash, dimension, label
)
SELECT hash, day, dimension, label, COUNT(*) AS deactivations
FROM (
  SELECT l.hash, l.day, l.dimension, IF(r.rank <= @max_labels, l.label, 'other') AS label
  FROM labelled AS l
  JOIN ranked AS r ON r.hash = l.hash AND r.dimension = l.dimension AND r.label = l.label
)
GROUP BY hash, day, dimension, label
"""


def day_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[date, DayCounts]]:
    """`counts_sql`'s rows as DayCounts by project and day."""
    by_key: dict[tuple[str, date], tuple[Counter[str], Counter[str]]] = {}
    for row in rows:
        versions, reasons = by_key.setdefault((row["hash"], row["day"]), (Counter(), Counter()))
        if row["dimension"] == VERSION:
            versions[row["label"]] += row["deactivations"]
        elif row["dimension"] == REASON:
            reasons[row["label"]] += row["deactivations"]
        else:
            raise ValueError(f"unexpected dimension {row['dimension']!r}")
    result: dict[str, dict[date, DayCounts]] = {}
    for (project, day), (versions, reasons) in by_key.items():
        result.setdefault(project, {})[day] = DayCounts(dict(versions), dict(reasons))
    return result


def spikes(rule: SpikeRule, days: Iterable[date], history: Mapping[date, DayCounts]) -> list[Spike]:
    """The spikes among `days` of one project's history (days it lacks had no deactivations)."""
    found = []
    for day in days:
        trailing = [history.get(day - timedelta(days=n), NO_DEACTIVATIONS) for n in range(rule.trailing_days, 0, -1)]
        spike = detect(rule, day, history.get(day, NO_DEACTIVATIONS), trailing)
        if spike is not None:
            found.append(spike)
    return found


def recent_days(final_through: date, environ: Mapping[str, str] | None = None) -> list[date]:
    """The days each run checks: the NOTIFY_RECENT_DAYS days through the analytics job's last final day."""
    n = config.get_int("NOTIFY_RECENT_DAYS", environ)
    return [final_through - timedelta(days=k) for k in range(n - 1, -1, -1)]


def alerts(context: CollectContext, days: list[date]) -> list[events.Event]:
    """The spike alerts of `days` (final days, oldest first), every project at once: one query over
    the deactivations of those days and their trailing window."""
    from google.cloud import bigquery

    if not days or not context.projects:
        return []
    rule = SpikeRule.from_env()
    rows = context.query(
        counts_sql(),
        [
            bigquery.ScalarQueryParameter("first", "DATE", days[0] - timedelta(days=rule.trailing_days)),
            bigquery.ScalarQueryParameter("last", "DATE", days[-1]),
            bigquery.ArrayQueryParameter("projects", "STRING", sorted(context.projects)),
            bigquery.ScalarQueryParameter("unknown_label", "STRING", metrics.UNKNOWN_LABEL),
            bigquery.ScalarQueryParameter("max_labels", "INT64", config.get_int("ANALYTICS_MAX_LABELS")),
        ],
    )
    found = []
    for project, history in sorted(day_counts(rows).items()):
        labels = projects.project_reason_labels(context.projects[project])
        found += [spike_event(project, spike, labels) for spike in spikes(rule, days, history)]
    return found


def collect(context: CollectContext) -> list[events.Event]:
    """The spike alerts of the NOTIFY_RECENT_DAYS days through the analytics job's last final day."""
    final = figures_ready.final_through(context)
    return alerts(context, recent_days(final)) if final is not None else []
