"""The periodic digest: a project's figures of a day, an ISO week or a calendar
month, mailed once the analytics job has made the period's last day final.

Periods are in UTC days: `daily` is one day, `weekly` an ISO week (Monday to
Sunday), `monthly` a calendar month. A period is due once its last day is final
(`analytics_progress.final_through`) and stays due until its event is in the
outbox: each run sends the complete periods that ended at most
NOTIFY_DIGEST_CATCH_UP_DAYS before the last final day and after the last one
the outbox holds for the project and frequency (looked up over the days it
surely still keeps them, `figures_ready.lookup_days`); only the newest of them
when it holds none, so turning a digest on sends no back catalogue. The event id is
`project + frequency + period start`, so a re-run or an overlapping run finds
the same event, and the outbox keeps it once.

The figures come from the serving copy (MongoDB `analytics`, telemetry/analytics/
metrics.py), the same documents the dashboard charts:
- active sites at the period's end (`active_sites` of its last day);
- new sites and deactivations (the sums of the days' `new_sites`, `deactivations`);
- the top deactivation reasons (the days' `deactivation_reasons` summed);
- the top versions (`project_version` of the last day, with their share);
- each count against the previous period of the same frequency.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from telemetry.analytics import metrics
from telemetry.common import projects
from telemetry.notify import emails, events, figures_ready, outbox
from telemetry.notify.contract import CollectContext, EmailContent

# The project's `digest` setting (telemetry/common/projects.py).
FREQUENCIES = projects.DIGEST_FREQUENCIES
DAILY, WEEKLY, MONTHLY = FREQUENCIES
TOP = 5  # reasons and versions a digest lists
# The serving copy's figures a digest reads.
METRICS = (
    metrics.ACTIVE_SITES,
    metrics.NEW_SITES,
    metrics.DEACTIVATIONS,
    metrics.DEACTIVATION_REASONS,
    metrics.PROJECT_VERSION,
)
COUNTS = ("active_sites", "new_sites", "deactivations")
TITLES = {"active_sites": "Active sites at the end", "new_sites": "New sites", "deactivations": "Deactivations"}


# --- periods -----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Period:
    """A UTC day, an ISO week (Monday first) or a calendar month, from `start` to `end` inclusive."""

    frequency: str
    start: date

    def __post_init__(self) -> None:
        if self.frequency not in FREQUENCIES:
            raise ValueError(f"unknown digest frequency {self.frequency!r}; known: {', '.join(FREQUENCIES)}")
        if _start_of(self.frequency, self.start) != self.start:
            raise ValueError(f"{self.start} does not start a {self.frequency} period")

    @property
    def end(self) -> date:
        return self.following().start - timedelta(days=1)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def following(self) -> Period:
        if self.frequency == DAILY:
            return Period(DAILY, self.start + timedelta(days=1))
        if self.frequency == WEEKLY:
            return Period(WEEKLY, self.start + timedelta(days=7))
        year, month = divmod(self.start.year * 12 + self.start.month, 12)  # the month after, 0-based
        return Period(MONTHLY, date(year, month + 1, 1))

    def previous(self) -> Period:
        return period_of(self.frequency, self.start - timedelta(days=1))

    def label(self) -> str:
        """How a reader names it: `1 Dec 2026`, `week 49 of 2026 (30 Nov - 6 Dec)`, `November 2026`."""
        if self.frequency == DAILY:
            return _day(self.start)
        if self.frequency == WEEKLY:
            year, week, _ = self.start.isocalendar()
            return f"week {week} of {year} ({_day(self.start)} - {_day(self.end)})"
        return self.start.strftime("%B %Y")


def _day(day: date) -> str:
    return f"{day.day} {day.strftime('%b %Y')}"


def _start_of(frequency: str, day: date) -> date:
    if frequency == DAILY:
        return day
    if frequency == WEEKLY:
        return day - timedelta(days=day.weekday())
    if frequency == MONTHLY:
        return day.replace(day=1)
    raise ValueError(f"unknown digest frequency {frequency!r}; known: {', '.join(FREQUENCIES)}")


def period_of(frequency: str, day: date) -> Period:
    """The period of `frequency` that holds `day`."""
    return Period(frequency, _start_of(frequency, day))


def latest_complete(frequency: str, final_through: date) -> Period:
    """The latest period whose last day is at most `final_through`."""
    period = period_of(frequency, final_through)
    return period if period.end <= final_through else period.previous()


def candidate_periods(frequency: str, final_through: date, catch_up_days: int) -> list[Period]:
    """The complete periods that may still be sent, newest first: those that ended at most
    `catch_up_days` before `final_through` (none, when the latest complete one ended earlier)."""
    oldest_end = final_through - timedelta(days=catch_up_days)
    found = []
    period = latest_complete(frequency, final_through)
    while period.end >= oldest_end:
        found.append(period)
        period = period.previous()
    return found


def due_periods(frequency: str, final_through: date, last_sent: Period | None, catch_up_days: int) -> list[Period]:
    """The periods to send now, oldest first: the candidates (`candidate_periods`) after `last_sent`,
    the latest period sent (looked up over `figures_ready.lookup_days()`); with none sent, the newest
    candidate alone."""
    candidates = candidate_periods(frequency, final_through, catch_up_days)
    if last_sent is None:
        return candidates[:1]
    if last_sent.frequency != frequency:
        raise ValueError(f"last_sent is a {last_sent.frequency} period, not {frequency}")
    return [period for period in reversed(candidates) if period.start > last_sent.start]


# --- figures -----------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodFigures:
    period: Period
    active_sites: int  # at the period's end
    new_sites: int
    deactivations: int
    reasons: Mapping[str, int]  # deactivations by reason over the period
    versions: Mapping[str, int]  # active sites by project version at the period's end
    served_days: int = 0  # days of the period the serving copy has any figure of; 0: nothing to compare with


def period_figures(period: Period, documents: Iterable[Mapping[str, Any]]) -> PeriodFigures:
    """The period's figures from serving documents (others, e.g. of the previous period, are ignored).
    A day without documents had nothing to count: the analytics job serves a project only on days it has data."""
    first, last = period.start.strftime(metrics.DAY_FORMAT), period.end.strftime(metrics.DAY_FORMAT)
    sums: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    active, versions = 0, {}
    served_days: set[str] = set()
    for doc in documents:
        if not first <= doc["day"] <= last:
            continue
        served_days.add(doc["day"])
        metric = doc["metric"]
        if metric in (metrics.NEW_SITES.name, metrics.DEACTIVATIONS.name):
            sums[metric] += int(doc.get("value") or 0)
        elif metric == metrics.DEACTIVATION_REASONS.name:
            reasons.update(doc.get("breakdown") or {})
        elif doc["day"] == last and metric == metrics.ACTIVE_SITES.name:
            active = int(doc.get("value") or 0)
        elif doc["day"] == last and metric == metrics.PROJECT_VERSION.name:
            versions = dict(doc.get("breakdown") or {})
    return PeriodFigures(
        period=period,
        active_sites=active,
        new_sites=sums[metrics.NEW_SITES.name],
        deactivations=sums[metrics.DEACTIVATIONS.name],
        reasons=dict(reasons),
        versions=versions,
        served_days=len(served_days),
    )


def _top(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP]


def event_id(project: str, period: Period) -> str:
    return events.event_id(events.DIGEST, project, period.frequency, period.start.isoformat())


def digest_event(
    project: str, current: PeriodFigures, previous: PeriodFigures, reason_labels: Mapping[str, str]
) -> events.Event:
    """The digest of `current`, compared with `previous` (the period before it): `previous` and
    `change` are null when the serving copy has no figure of that period (a project's first
    period), rather than a change from zero; `reason_labels` are the project's own
    (telemetry.common.projects.project_reason_labels)."""
    period = current.period
    if previous.period != period.previous():
        raise ValueError(f"{previous.period} is not the period before {period}")
    active_total = sum(current.versions.values())
    compared = previous.served_days > 0
    return events.Event(
        id=event_id(project, period),
        project=project,
        type=events.DIGEST,
        occurred_at=datetime.combine(period.end + timedelta(days=1), time(), UTC),
        data={
            "project": project,
            "frequency": period.frequency,
            "period": {"start": period.start.isoformat(), "end": period.end.isoformat(), "label": period.label()},
            **{name: getattr(current, name) for name in COUNTS},
            "previous": {
                "start": previous.period.start.isoformat(),
                "end": previous.period.end.isoformat(),
                **{name: getattr(previous, name) for name in COUNTS},
            }
            if compared
            else None,
            "change": {name: getattr(current, name) - getattr(previous, name) for name in COUNTS} if compared else None,
            "top_reasons": [
                {"reason": reason, "label": reason_labels.get(reason, reason), "deactivations": count}
                for reason, count in _top(current.reasons)
            ],
            "top_versions": [
                {"version": version, "sites": count, "share": round(count / active_total, 4)}
                for version, count in _top(current.versions)
            ],
            "figures_path": (
                f"/v1/projects/{project}/figures?from={period.start.isoformat()}&to={period.end.isoformat()}"
            ),
        },
    )


# --- the email -----------------------------------------------------------------------


def _signed(number: int) -> str:
    return f"{number:+,}" if number else "no change"


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def render_email(event: events.Event, project: Mapping[str, Any]) -> EmailContent:
    """The digest email, stating every figure of `event.data`."""
    data = event.data
    project_name = projects.project_name(project)
    change = data["change"]
    previous = data["previous"]
    subject = (
        f"{project_name}: {data['frequency']} digest, {data['period']['label']}: {data['active_sites']:,} active sites"
    )
    if change is not None:
        subject += f" ({_signed(change['active_sites'])})"
    rows = [
        (TITLES[name], data[name], change[name] if change else None, previous[name] if previous else None)
        for name in COUNTS
    ]
    lines = [
        f"{project_name}, {data['period']['label']} ({data['period']['start']} to {data['period']['end']}, UTC)",
        "",
        *(
            f"{title}: {value:,} ({_signed(delta)} against {before:,} the {data['frequency']} period before)"
            if delta is not None
            else f"{title}: {value:,} (no figures of the {data['frequency']} period before)"
            for title, value, delta, before in rows
        ),
        "",
        "Top deactivation reasons:",
        *(f"  {r['label']}: {r['deactivations']:,}" for r in data["top_reasons"]),
        *([] if data["top_reasons"] else ["  no deactivations"]),
        "",
        "Top versions among the active sites at the end:",
        *(f"  {v['version']}: {v['sites']:,} sites ({_percent(v['share'])})" for v in data["top_versions"]),
        *([] if data["top_versions"] else ["  no active sites"]),
        "",
        f"Every figure: the dashboard, or GET {data['figures_path']}",
    ]
    text = "\n".join(lines) + "\n"

    e = html.escape
    table = "".join(
        f"<tr><th align='left'>{e(title)}</th><td align='right'>{value:,}</td>"
        f"<td align='right'>{e(_signed(delta)) if delta is not None else 'no figures'}</td></tr>"
        for title, value, delta, _before in rows
    )
    reasons = "".join(f"<li>{e(r['label'])}: {r['deactivations']:,}</li>" for r in data["top_reasons"])
    versions = "".join(
        f"<li>{e(v['version'])}: {v['sites']:,} sites ({_percent(v['share'])})</li>" for v in data["top_versions"]
    )
    body = (
        f"<h1>{e(project_name)}</h1><p>{e(data['frequency'].capitalize())} digest, {e(data['period']['label'])}</p>"
        f"<table><tr><th></th><th>this period</th><th>against the one before</th></tr>{table}</table>"
        f"<h2>Top deactivation reasons</h2><ul>{reasons or '<li>no deactivations</li>'}</ul>"
        f"<h2>Top versions</h2><ul>{versions or '<li>no active sites</li>'}</ul>"
        f"<p>Every figure: the dashboard, or <code>GET {e(data['figures_path'])}</code></p>"
    )
    return EmailContent(subject=emails.one_line(subject), text=text, html=body)


# --- the producer ------------------------------------------------------------------


def serving_documents(db, project: str, first: date, last: date) -> list[dict[str, Any]]:
    """The project's documents of the digest's METRICS from `first` to `last` (the (hash, metric, day) index)."""
    query = {
        "hash": project,
        "metric": {"$in": [m.name for m in METRICS]},
        "day": {"$gte": first.strftime(metrics.DAY_FORMAT), "$lte": last.strftime(metrics.DAY_FORMAT)},
    }
    return list(db[metrics.COLLECTION].find(query, {"_id": 0}))


def collect_with(context: CollectContext, in_outbox: Callable[[list[str]], set[str]]) -> list[events.Event]:
    """The digests due now, for every project with a digest frequency."""
    final = figures_ready.final_through(context)
    if final is None:
        return []
    catch_up = figures_ready.catch_up_days()
    wanted = {
        project_hash: frequency
        for project_hash, project in context.projects.items()
        if (frequency := projects.digest_frequency(project)) is not None
    }
    probed = {h: candidate_periods(f, final, figures_ready.lookup_days()) for h, f in wanted.items()}
    present = in_outbox(sorted(event_id(h, p) for h, periods in probed.items() for p in periods))
    found = []
    for project_hash, frequency in sorted(wanted.items()):
        sent = [p for p in probed[project_hash] if event_id(project_hash, p) in present]
        due = due_periods(frequency, final, max(sent) if sent else None, catch_up)
        if not due:
            continue
        documents = serving_documents(context.db, project_hash, due[0].previous().start, due[-1].end)
        labels = projects.project_reason_labels(context.projects[project_hash])
        for period in due:
            current, previous = period_figures(period, documents), period_figures(period.previous(), documents)
            found.append(digest_event(project_hash, current, previous, labels))
    return found


def collect(context: CollectContext) -> list[events.Event]:
    return collect_with(context, lambda ids: outbox.ids_stored(context.db, ids))
