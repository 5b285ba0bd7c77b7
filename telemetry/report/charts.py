"""The charts of a project's figures: ONE definition for the offline report and the dashboard.

`project_charts` turns one project's serving-copy documents (MongoDB `analytics`,
see `metrics`) into Vega-Lite specs made with Altair, data inline; `kpis` gives
the figures above them. `telemetry/report/page.py` embeds them in its offline
page; the dashboard (telemetry/dashboard/pages.py) serves them as JSON to its
page, which draws them with the Vega, Vega-Lite and vega-embed it vendors.

This module goes into the dashboard function's zip (terraform/dashboard.tf):
it imports Altair, `metrics` and `projects` only, never pipeline code or vl-convert.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import altair as alt

from telemetry.analytics import metrics
from telemetry.common.projects import custom_field_keys, project_reason_labels

DEFAULT_DAYS = 90
SHORT_DAYS = 30
# Bars of one distribution before the rest fold into one "other" bar (plugins: metrics.TOP_PLUGINS, no fold).
TOP_N = 10
# The Vega-Lite version Altair writes; vl-convert compiles with the same one.
VL_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])

WIDTH = 430
LINE_HEIGHT = 180
BAR_STEP = 17
BLUE, GREEN, RED, GREY = "#4c78a8", "#54a24b", "#e45756", "#b0b0b0"


@dataclass(frozen=True)
class Chart:
    """One chart of a project's section; `spec` is its Vega-Lite spec, or None when there is no data."""

    key: str  # unique within the project: the container's data-chart
    metrics: tuple[str, ...]
    title: str
    note: str
    spec: dict[str, Any] | None  # Vega-Lite


# Every chart of a project with data, in page order (two per row).
CHART_KEYS = (
    "active_sites_30d",
    "active_sites_90d",
    "new_sites_deactivations",
    "opt_in_rate",
    "deactivation_reasons",
    *(m.name for m in metrics.DISTRIBUTIONS),
    metrics.INSTALL_AGE_AT_DEACTIVATION.name,
    metrics.REQUIREMENTS_IMPACT.name,
    metrics.DEACTIVATION_RATE_BY_VERSION.name,
    metrics.RETENTION_WEEKLY.name,
)


def chart_keys(project: Mapping[str, Any]) -> tuple[str, ...]:
    """Every chart of the project with data, in page order: CHART_KEYS, then one per whitelisted custom field."""
    return (*CHART_KEYS, *(metrics.custom_field(key).name for key in custom_field_keys(project)))


def day_str(day: date) -> str:
    return day.strftime(metrics.DAY_FORMAT)


def parse_day(text: str) -> date:
    return datetime.strptime(text, metrics.DAY_FORMAT).replace(tzinfo=UTC).date()


def serving_documents(db: Any, days: int, hashes: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The serving copy's documents of the last `days` days up to the latest day with data (of `hashes`; None: all)."""
    only = {"hash": {"$in": sorted(set(hashes))}} if hashes is not None else {}
    analytics = db[metrics.COLLECTION]
    latest = analytics.find_one(only, {"_id": 0, "day": 1}, sort=[("day", -1)])
    if latest is None:
        return []
    start = day_str(parse_day(latest["day"]) - timedelta(days=days - 1))
    return list(analytics.find({**only, "day": {"$gte": start, "$lte": latest["day"]}}, {"_id": 0}))


# --- charts --------------------------------------------------------------------------------------


def _date(day: date) -> alt.DateTime:
    return alt.DateTime(year=day.year, month=day.month, date=day.day, utc=True)


def _x_days(start: date, end: date) -> alt.X:
    return alt.X(
        "day:T",
        timeUnit="utcyearmonthdate",
        title="Day (UTC)",
        scale=alt.Scale(domain=[_date(start), _date(end)]),
        axis=alt.Axis(format="%b %d", labelAngle=0, tickCount=6, grid=False),
    )


def _day_tooltip() -> alt.Tooltip:
    return alt.Tooltip("day:T", timeUnit="utcyearmonthdate", title="day", format="%Y-%m-%d")


def _finish(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """Altair chart -> Vega-Lite spec (validated by Altair), styled like every other chart of the page."""
    styled = (
        chart.configure_view(stroke=None)
        .configure_axis(labelFontSize=11, titleFontSize=11, titleColor="#555", labelColor="#333", domainColor="#999")
        .configure_legend(orient="top", title=None, labelFontSize=11)
    )
    spec = styled.to_dict()
    spec.pop("$schema", None)  # a URL nothing needs: the page embeds with mode "vega-lite"
    return spec


def line_chart(rows: list[dict[str, Any]], start: date, end: date, y_title: str, percent: bool = False) -> dict:
    """`rows` of {"day", "value"} (None: no point); one line, a point per day."""
    y_axis = alt.Axis(format=".0%" if percent else ",d", tickCount=5)
    y_scale = alt.Scale(domain=[0, 1]) if percent else alt.Scale(zero=True)
    chart = (
        alt.Chart(alt.InlineData(values=rows))
        .mark_line(point=alt.OverlayMarkDef(size=18), color=BLUE, strokeWidth=2)
        .encode(
            x=_x_days(start, end),
            y=alt.Y("value:Q", title=y_title, axis=y_axis, scale=y_scale),
            tooltip=[_day_tooltip(), alt.Tooltip("value:Q", title=y_title, format=".1%" if percent else ",")],
        )
        .properties(width=WIDTH, height=LINE_HEIGHT)
    )
    return _finish(chart)


def series_chart(rows: list[dict[str, Any]], start: date, end: date, colors: dict[str, str]) -> dict:
    """`rows` of {"day", "series", "value"}: one line per series, colored by `colors`."""
    chart = (
        alt.Chart(alt.InlineData(values=rows))
        .mark_line(point=alt.OverlayMarkDef(size=18), strokeWidth=2)
        .encode(
            x=_x_days(start, end),
            y=alt.Y("value:Q", title="Sites per day", axis=alt.Axis(format=",d", tickCount=5)),
            color=alt.Color("series:N", scale=alt.Scale(domain=list(colors), range=list(colors.values()))),
            tooltip=[_day_tooltip(), alt.Tooltip("series:N", title="figure"), alt.Tooltip("value:Q", format=",")],
        )
        .properties(width=WIDTH, height=LINE_HEIGHT)
    )
    return _finish(chart)


def bar_chart(rows: list[dict[str, Any]], x_title: str, share_title: str) -> dict:
    """`rows` of {"label", "count", "share", "order", "rest"}: horizontal bars in `order`, counts at their ends."""
    return _horizontal_bars(
        rows,
        x=alt.X("count:Q", title=x_title, axis=alt.Axis(format=",d", tickCount=4)),
        tooltip=[
            alt.Tooltip("label:N", title="value"),
            alt.Tooltip("count:Q", title="sites", format=","),
            alt.Tooltip("share:Q", title=share_title, format=".1%"),
        ],
        color=alt.Color("rest:N", scale=alt.Scale(domain=["top", "rest"], range=[BLUE, GREY]), legend=None),
        text=alt.Text("count:Q", format=","),
    )


def _horizontal_bars(
    rows: list[dict[str, Any]], x: alt.X, tooltip: list[alt.Tooltip], color: alt.Color, text: alt.Text
) -> dict:
    """One horizontal bar per row's `label`, in the rows' `order`, colored by `color`, with `text` at its end:
    the shape of every bar chart of the page."""
    base = alt.Chart(alt.InlineData(values=rows)).encode(
        y=alt.Y(
            "label:N",
            sort=alt.EncodingSortField(field="order", op="min", order="ascending"),
            title=None,
            axis=alt.Axis(labelLimit=170, ticks=False, domain=False),
        ),
        x=x,
        tooltip=tooltip,
    )
    bars = base.mark_bar(cornerRadiusEnd=2).encode(color=color)
    labels = base.mark_text(align="left", dx=3, fontSize=10, color="#333").encode(text=text)
    return _finish(alt.layer(bars, labels).properties(width=WIDTH - 90, height=alt.Step(BAR_STEP)))


def bar_rows(
    counts: Mapping[str, float], top: int, fold: bool, noun: str, share_of: float | None = None
) -> list[dict[str, Any]]:
    """Bars by count (ties by label); past `top`, the rest fold into one last bar, or are dropped."""
    ranked = sorted(((label, n) for label, n in counts.items() if n), key=lambda item: (-item[1], item[0]))
    total = share_of if share_of is not None else sum(n for _, n in ranked)
    shown, rest = ranked[:top], ranked[top:]
    rows = [
        {"label": label, "count": n, "share": n / total if total else None, "order": i, "rest": "top"}
        for i, (label, n) in enumerate(shown)
    ]
    if fold and rest:
        n = sum(count for _, count in rest)
        rows.append(
            {
                "label": f"other: {len(rest)} more {noun}",
                "count": n,
                "share": n / total if total else None,
                "order": len(rows),
                "rest": "rest",
            }
        )
    return rows


def share_chart(rows: list[dict[str, Any]], x_title: str, colors: Mapping[str, str]) -> dict:
    """`rows` of {"label", "count", "share", "order", "group", "text"}: horizontal bars of `share` (0 to 1) in
    `order`, colored by `group` as `colors` says, each with its `text` at its end."""
    present = {row["group"] for row in rows}
    groups = [group for group in colors if group in present]
    palette = [colors[group] for group in groups]
    return _horizontal_bars(
        rows,
        x=alt.X("share:Q", title=x_title, axis=alt.Axis(format=".0%", tickCount=5), scale=alt.Scale(domain=[0, 1])),
        tooltip=[
            alt.Tooltip("label:N", title="value"),
            alt.Tooltip("count:Q", title="sites", format=","),
            alt.Tooltip("share:Q", title=x_title, format=".1%"),
        ],
        color=alt.Color("group:N", scale=alt.Scale(domain=groups, range=palette), legend=None),
        text=alt.Text("text:N"),
    )


def install_age_rows(counts: Mapping[str, float]) -> list[dict[str, Any]]:
    """Bars of install_age_at_deactivation, youngest first, every bucket shown; `unknown` last when there is any."""
    labels = [*metrics.INSTALL_AGE_BUCKETS, *([metrics.UNKNOWN_LABEL] if counts.get(metrics.UNKNOWN_LABEL) else [])]
    total = sum(counts.get(label, 0) for label in labels)
    return [
        {
            "label": label,
            "count": counts.get(label, 0),
            "share": counts.get(label, 0) / total if total else None,
            "order": i,
            "rest": "rest" if label == metrics.UNKNOWN_LABEL else "top",
        }
        for i, label in enumerate(labels)
    ]


def requirement_rows(counts: Mapping[str, float], active: float) -> list[dict[str, Any]]:
    """Bars of requirements_impact: each candidate in metrics' order, its share of the day's `active` sites."""
    rows = []
    for i, label in enumerate(metrics.requirement_labels()):
        n = counts.get(label, 0)
        if label.endswith(f" {metrics.UNKNOWN_LABEL}") and not n:
            continue
        share = n / active
        group = metrics.UNKNOWN_LABEL if label.endswith(f" {metrics.UNKNOWN_LABEL}") else label.split(" ")[0]
        rows.append(
            {"label": label, "count": n, "share": share, "order": i, "group": group, "text": f"{share:.1%} ({n:,})"}
        )
    return rows


def rate_chart(rows: list[dict[str, Any]], x_title: str) -> dict:
    """`rows` of {"label", "rate", "events", "sites", "order", "rest"}: horizontal bars of `rate` in `order`."""
    return _horizontal_bars(
        rows,
        x=alt.X("rate:Q", title=x_title, axis=alt.Axis(format=",.0f", tickCount=4), scale=alt.Scale(zero=True)),
        tooltip=[
            alt.Tooltip("label:N", title="version"),
            alt.Tooltip("rate:Q", title=x_title, format=",.1f"),
            alt.Tooltip("events:Q", title="sites deactivated", format=","),
            alt.Tooltip("sites:Q", title="sites on it", format=","),
        ],
        color=alt.Color("rest:N", scale=alt.Scale(domain=["top", "rest"], range=[RED, GREY]), legend=None),
        text=alt.Text("rate:Q", format=",.1f"),
    )


def rate_rows(doc: Mapping[str, Any], top: int) -> list[dict[str, Any]]:
    """Bars of a RATES document: the `top` labels with the most sites (ties by label), `other` last if present."""
    sites = doc.get("sites") or {}
    ranked = sorted((label for label in sites if label != "other"), key=lambda label: (-sites[label], label))[:top]
    if "other" in sites:
        ranked.append("other")
    return [
        {
            "label": label,
            "rate": doc["rates"].get(label, 0.0),
            "events": (doc.get("breakdown") or {}).get(label, 0),
            "sites": sites[label],
            "order": i,
            "rest": "rest" if label == "other" else "top",
        }
        for i, label in enumerate(ranked)
    ]


def retention_rows(docs: Mapping[str, Mapping[str, Any]], latest: date) -> list[dict[str, Any]]:
    """The cohort triangle as of `latest`, from retention_weekly's documents by day: the cohort of the week
    ending 7m days before `latest` (m = 1 to RETENTION_WEEKS), k weeks later (k <= m), is label k of the
    document of the day 7(m - k) days before `latest`. Cells whose document is missing are left out."""
    rows = []
    for m in range(1, metrics.RETENTION_WEEKS + 1):
        cohort_end = latest - timedelta(days=7 * m)
        for k in range(1, m + 1):
            doc = docs.get(day_str(latest - timedelta(days=7 * (m - k))), {})
            sites = (doc.get("sites") or {}).get(str(k))
            if not sites:
                continue
            rows.append(
                {
                    "cohort": f"new {day_str(cohort_end - timedelta(days=6))} to {day_str(cohort_end)}",
                    "order": m,
                    "week": k,
                    "share": doc["rates"][str(k)],
                    "retained": doc["breakdown"].get(str(k), 0),
                    "sites": sites,
                }
            )
    return rows


def retention_chart(rows: list[dict[str, Any]]) -> dict:
    """`rows` of retention_rows: one cell per cohort and week, colored by the share still active."""
    base = alt.Chart(alt.InlineData(values=rows)).encode(
        x=alt.X(
            "week:O",
            title="Weeks later",
            scale=alt.Scale(domain=list(range(1, metrics.RETENTION_WEEKS + 1))),
            axis=alt.Axis(labelAngle=0),
        ),
        y=alt.Y(
            "cohort:N",
            sort=alt.EncodingSortField(field="order", op="min", order="ascending"),
            title=None,
            axis=alt.Axis(labelLimit=200, ticks=False, domain=False),
        ),
        tooltip=[
            alt.Tooltip("cohort:N", title="cohort"),
            alt.Tooltip("week:O", title="weeks later"),
            alt.Tooltip("share:Q", title="still active", format=".1%"),
            alt.Tooltip("retained:Q", title="sites still active", format=","),
            alt.Tooltip("sites:Q", title="sites in the cohort", format=","),
        ],
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color("share:Q", scale=alt.Scale(domain=[0, 1], range=["#f2f6fa", BLUE]), legend=None)
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("share:Q", format=".0%"),
        color=alt.condition("datum.share > 0.6", alt.value("white"), alt.value("#333")),
    )
    return _finish(alt.layer(cells, text).properties(width=WIDTH - 90, height=alt.Step(BAR_STEP + 3)))


class Series:
    """One project's documents: metric -> day -> document."""

    def __init__(self, documents: Iterable[Mapping[str, Any]]):
        self.by_metric: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
        for doc in documents:
            self.by_metric[doc["metric"]][doc["day"]] = doc

    def values(self, metric: metrics.Metric, start: date, end: date) -> list[dict[str, Any]]:
        """{"day", "value"} for the days in [start, end] that have a document, in day order."""
        docs = self.by_metric.get(metric.name, {})
        first, last = day_str(start), day_str(end)
        return [{"day": day, "value": docs[day].get("value")} for day in sorted(docs) if first <= day <= last]

    def latest_day(self, metric: metrics.Metric, end: date, field: str) -> str | None:
        """The last day up to `end` whose document of `metric` has a non-empty `field`; None: no such day."""
        docs = self.by_metric.get(metric.name, {})
        return max((day for day, doc in docs.items() if day <= day_str(end) and doc.get(field)), default=None)

    def value_on(self, metric: metrics.Metric, day: str) -> Any:
        """The scalar `value` of `metric` on `day`; None when that day has no document or no value."""
        return self.by_metric.get(metric.name, {}).get(day, {}).get("value")

    def latest_breakdown(self, metric: metrics.Metric, end: date) -> tuple[str, dict[str, float]] | None:
        day = self.latest_day(metric, end, "breakdown")
        if day is None:
            return None
        return day, dict(self.by_metric[metric.name][day]["breakdown"])

    def summed_breakdown(self, metric: metrics.Metric, start: date, end: date) -> dict[str, float]:
        total: dict[str, float] = defaultdict(float)
        first, last = day_str(start), day_str(end)
        for day, doc in self.by_metric.get(metric.name, {}).items():
            if first <= day <= last:
                for label, n in (doc.get("breakdown") or {}).items():
                    total[label] += n
        return {label: (int(n) if float(n).is_integer() else n) for label, n in total.items()}


def _window(end: date, days: int) -> tuple[date, str]:
    return end - timedelta(days=days - 1), f"last {days} days, to {day_str(end)}"


def project_charts(project: Mapping[str, Any], series: Series, end: date, days: int) -> tuple[Chart, ...]:
    short = min(SHORT_DAYS, days)
    short_start, short_note = _window(end, short)
    long_start, long_note = _window(end, days)
    charts: list[Chart] = []

    def scalar(key: str, metric: metrics.Metric, start: date, note: str, y_title: str, percent: bool = False):
        rows = series.values(metric, start, end)
        has_data = any(row["value"] is not None for row in rows)
        spec = line_chart(rows, start, end, y_title, percent) if has_data else None
        charts.append(Chart(key, (metric.name,), metric.title, note, spec))

    scalar("active_sites_30d", metrics.ACTIVE_SITES, short_start, short_note, "Sites")
    scalar("active_sites_90d", metrics.ACTIVE_SITES, long_start, long_note, "Sites")

    colors = {metrics.NEW_SITES.title: GREEN, metrics.DEACTIVATIONS.title: RED}
    rows = [
        {**row, "series": metric.title}
        for metric in (metrics.NEW_SITES, metrics.DEACTIVATIONS)
        for row in series.values(metric, short_start, end)
        if row["value"] is not None
    ]
    charts.append(
        Chart(
            "new_sites_deactivations",
            (metrics.NEW_SITES.name, metrics.DEACTIVATIONS.name),
            f"{metrics.NEW_SITES.title} and {metrics.DEACTIVATIONS.title.lower()}",
            short_note,
            series_chart(rows, short_start, end, colors) if rows else None,
        )
    )
    scalar("opt_in_rate", metrics.OPT_IN_RATE, long_start, long_note, "Sites opted in", percent=True)

    labels = project_reason_labels(project)
    reasons: dict[str, float] = defaultdict(float)
    for slug, n in series.summed_breakdown(metrics.DEACTIVATION_REASONS, short_start, end).items():
        reasons[labels.get(slug, slug)] += n
    rows = bar_rows(reasons, TOP_N, fold=True, noun="reasons")
    charts.append(
        Chart(
            "deactivation_reasons",
            (metrics.DEACTIVATION_REASONS.name,),
            metrics.DEACTIVATION_REASONS.title,
            f"summed over the {short_note}",
            bar_chart(rows, "Deactivations", "share of deactivations") if rows else None,
        )
    )

    def distribution(metric: metrics.Metric) -> None:
        latest = series.latest_breakdown(metric, end)
        spec, note = None, "latest day with data"
        if latest is not None:
            day, counts = latest
            note = f"sites active on {day}"
            if metric is metrics.PLUGINS:
                active = series.value_on(metrics.ACTIVE_SITES, day)
                rows = bar_rows(counts, metrics.TOP_PLUGINS, fold=False, noun="plugins", share_of=active or None)
                share_title = "share of active sites" if active else "share of these counts"
            else:
                rows = bar_rows(counts, TOP_N, fold=True, noun=_plural(metric))
                share_title = "share of active sites"
            spec = bar_chart(rows, "Sites", share_title) if rows else None
        charts.append(Chart(metric.name, (metric.name,), metric.title, note, spec))

    for metric in metrics.DISTRIBUTIONS:
        distribution(metric)

    metric = metrics.INSTALL_AGE_AT_DEACTIVATION
    rows = install_age_rows(series.summed_breakdown(metric, short_start, end))
    has_data = any(row["count"] for row in rows)
    spec = bar_chart(rows, "Deactivations", "share of deactivations") if has_data else None
    charts.append(
        Chart(metric.name, (metric.name,), metric.title, f"deactivations, summed over the {short_note}", spec)
    )

    metric = metrics.REQUIREMENTS_IMPACT
    latest = series.latest_breakdown(metric, end)
    spec, note = None, "latest day with data"
    if latest is not None:
        day, counts = latest
        active = series.value_on(metrics.ACTIVE_SITES, day)
        if active:
            note = f"share of the {active:,} sites active on {day} below each candidate minimum"
            colors = {metrics.PHP: BLUE, metrics.WORDPRESS: GREEN, metrics.UNKNOWN_LABEL: GREY}
            spec = share_chart(requirement_rows(counts, active), "share of active sites stranded", colors)
    charts.append(Chart(metric.name, (metric.name,), metric.title, note, spec))

    metric = metrics.DEACTIVATION_RATE_BY_VERSION
    day = series.latest_day(metric, end, "sites")
    spec, note = None, "latest day with data"
    if day is not None:
        note = f"{metrics.DEACTIVATION_RATE_DAYS} days to {day}, the {TOP_N} versions with the most sites"
        spec = rate_chart(rate_rows(series.by_metric[metric.name][day], TOP_N), f"per {metrics.RATE_PER:,} sites")
    charts.append(Chart(metric.name, (metric.name,), metric.title, note, spec))

    metric = metrics.RETENTION_WEEKLY
    latest_day = series.latest_day(metric, end, "sites")
    spec, note = None, "latest day with data"
    if latest_day is not None:
        rows = retention_rows(series.by_metric[metric.name], parse_day(latest_day))
        note = f"share of each week's new sites active 1 to {metrics.RETENTION_WEEKS} weeks later, as of {latest_day}"
        spec = retention_chart(rows) if rows else None
    charts.append(Chart(metric.name, (metric.name,), metric.title, note, spec))

    for key in custom_field_keys(project):
        distribution(metrics.custom_field(key))
    return tuple(charts)


def _plural(metric: metrics.Metric) -> str:
    if metric.name.startswith(metrics.CUSTOM_FIELD_PREFIX):
        return "values"
    nouns = {
        metrics.LOCALE: "locales",
        metrics.THEME: "themes",
        metrics.MULTISITE: "values",
        metrics.COUNTRY: "countries",
        metrics.HOSTING: "networks",
    }
    return nouns.get(metric, "versions")


def kpis(series: Series, end: date) -> tuple[tuple[str, str], ...]:
    def latest(metric: metrics.Metric) -> tuple[str, Any] | None:
        docs = series.by_metric.get(metric.name, {})
        days = [day for day in sorted(docs) if day <= day_str(end) and docs[day].get("value") is not None]
        return (days[-1], docs[days[-1]]["value"]) if days else None

    def summed(metric: metrics.Metric) -> Any:
        start = day_str(end - timedelta(days=SHORT_DAYS - 1))
        docs = series.by_metric.get(metric.name, {})
        values = [doc.get("value") for day, doc in docs.items() if start <= day <= day_str(end)]
        values = [v for v in values if v is not None]
        return sum(values) if values else None

    kpis = []
    active, rate = latest(metrics.ACTIVE_SITES), latest(metrics.OPT_IN_RATE)
    kpis.append((f"Active sites on {active[0]}" if active else "Active sites", f"{active[1]:,}" if active else "–"))
    for metric in (metrics.NEW_SITES, metrics.DEACTIVATIONS):
        total = summed(metric)
        kpis.append((f"{metric.title}, last {SHORT_DAYS} days", f"{total:,}" if total is not None else "–"))
    kpis.append(
        (
            f"{metrics.OPT_IN_RATE.title} on {rate[0]}" if rate else metrics.OPT_IN_RATE.title,
            f"{rate[1]:.1%}" if rate else "–",
        )
    )
    return tuple(kpis)
