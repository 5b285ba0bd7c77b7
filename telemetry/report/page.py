"""The vendor's offline report: one self-contained HTML page from the serving copy.

`python -m telemetry.report.page [--out out/report.html] [--png out/report.png]
[--days 90] [--project HASH ...]` reads MongoDB `analytics` (the per-day figures
the analytics job serves, see `metrics`) and `projects`, and writes one page
that works offline: the charts are Vega-Lite specs made with Altair, drawn in
the page by vega-embed; vl-convert's bundle of Vega, Vega-Lite and vega-embed
is inlined once, gzipped. Nothing is fetched when the page opens (its
Content-Security-Policy forbids it; `browser.check_and_screenshot` checks it).

Reading (`load`) is separate from drawing (`render`, a pure function of the
projects, the documents and the generation time), so the page is unit tested
without MongoDB.

The window ends on the latest day any shown project has data for, not today:
a report of stale data says how stale in its header instead of going blank.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import html
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import altair as alt
import vl_convert

from telemetry.analytics import metrics
from telemetry.common import config, mongo
from telemetry.common.projects import load_projects, project_reason_labels

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
)


def day_str(day: date) -> str:
    return day.strftime(metrics.DAY_FORMAT)


def parse_day(text: str) -> date:
    return datetime.strptime(text, metrics.DAY_FORMAT).replace(tzinfo=UTC).date()


# --- reading -------------------------------------------------------------------------------------


def load(
    db: Any, days: int = DEFAULT_DAYS, hashes: Iterable[str] | None = None
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """(projects by hash, serving documents of the last `days` days up to the latest day with data).

    `hashes` limits both to those projects; None reads every project.
    """
    hashes = sorted(set(hashes)) if hashes is not None else None
    only = {"hash": {"$in": hashes}} if hashes is not None else {}
    projects = load_projects(db, hashes)
    analytics = db[metrics.COLLECTION]
    latest = analytics.find_one(only, {"_id": 0, "day": 1}, sort=[("day", -1)])
    if latest is None:
        return projects, []
    start = day_str(parse_day(latest["day"]) - timedelta(days=days - 1))
    documents = list(analytics.find({**only, "day": {"$gte": start, "$lte": latest["day"]}}, {"_id": 0}))
    return projects, documents


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
    base = alt.Chart(alt.InlineData(values=rows)).encode(
        y=alt.Y(
            "label:N",
            sort=alt.EncodingSortField(field="order", op="min", order="ascending"),
            title=None,
            axis=alt.Axis(labelLimit=170, ticks=False, domain=False),
        ),
        x=alt.X("count:Q", title=x_title, axis=alt.Axis(format=",d", tickCount=4)),
        tooltip=[
            alt.Tooltip("label:N", title="value"),
            alt.Tooltip("count:Q", title="sites", format=","),
            alt.Tooltip("share:Q", title=share_title, format=".1%"),
        ],
    )
    bars = base.mark_bar(cornerRadiusEnd=2).encode(
        color=alt.Color("rest:N", scale=alt.Scale(domain=["top", "rest"], range=[BLUE, GREY]), legend=None)
    )
    labels = base.mark_text(align="left", dx=3, fontSize=10, color="#333").encode(text=alt.Text("count:Q", format=","))
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


# --- the page's model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    hash: str
    name: str
    type: str
    known: bool
    kpis: tuple[tuple[str, str], ...]
    charts: tuple[Chart, ...]  # empty: the project has no data at all


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

    def latest_breakdown(self, metric: metrics.Metric, end: date) -> tuple[str, dict[str, float]] | None:
        docs = self.by_metric.get(metric.name, {})
        days = [day for day in docs if day <= day_str(end) and docs[day].get("breakdown")]
        if not days:
            return None
        day = max(days)
        return day, dict(docs[day]["breakdown"])

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

    for metric in metrics.DISTRIBUTIONS:
        latest = series.latest_breakdown(metric, end)
        spec, note = None, "latest day with data"
        if latest is not None:
            day, counts = latest
            note = f"sites active on {day}"
            if metric is metrics.PLUGINS:
                active = series.by_metric.get(metrics.ACTIVE_SITES.name, {}).get(day, {}).get("value")
                rows = bar_rows(counts, metrics.TOP_PLUGINS, fold=False, noun="plugins", share_of=active or None)
                share_title = "share of active sites" if active else "share of these counts"
            else:
                rows = bar_rows(counts, TOP_N, fold=True, noun=_plural(metric))
                share_title = "share of active sites"
            spec = bar_chart(rows, "Sites", share_title) if rows else None
        charts.append(Chart(metric.name, (metric.name,), metric.title, note, spec))
    return tuple(charts)


def _plural(metric: metrics.Metric) -> str:
    return {metrics.LOCALE: "locales", metrics.THEME: "themes", metrics.MULTISITE: "values"}.get(metric, "versions")


def _kpis(series: Series, end: date) -> tuple[tuple[str, str], ...]:
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


def sections(
    projects: Mapping[str, Mapping[str, Any]], documents: Iterable[Mapping[str, Any]], days: int = DEFAULT_DAYS
) -> tuple[list[Section], str | None]:
    """The page's model: one section per project (and per unknown hash with data), and the latest day shown."""
    by_hash: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for doc in documents:
        by_hash[doc["hash"]].append(doc)
    latest = max((doc["day"] for docs in by_hash.values() for doc in docs), default=None)
    end = parse_day(latest) if latest else None
    hashes = sorted(
        set(projects) | set(by_hash),
        key=lambda h: (h not in projects, str((projects.get(h) or {}).get("name") or h).lower(), h),
    )
    result = []
    for project_hash in hashes:
        project = projects.get(project_hash) or {}
        docs = by_hash.get(project_hash, [])
        series = Series(docs)
        charts = project_charts(project, series, end, days) if docs and end else ()
        kpis = _kpis(series, end) if docs and end else ()
        result.append(
            Section(
                hash=project_hash,
                name=str(project.get("name") or project_hash),
                type=str(project.get("type") or "unknown"),
                known=project_hash in projects,
                kpis=kpis,
                charts=charts,
            )
        )
    return result, latest


# --- the page ------------------------------------------------------------------------------------

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 -apple-system,"Segoe UI","Liberation Sans",Arial,sans-serif;color:#222;background:#f4f5f7}
header{background:#1f2d3d;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:22px;font-weight:600}
header p{margin:0;color:#c8d1dc}
header nav{margin-top:8px}
header nav a{color:#9cc3ff;margin-right:14px;text-decoration:none}
main{max-width:1180px;margin:0 auto;padding:8px 24px 40px}
section.project{margin-top:26px}
section.project h2{font-size:19px;margin:0 0 10px;font-weight:600}
section.project h2 .meta{font-size:13px;font-weight:400;color:#666;margin-left:8px}
.meta code{font-size:12px;background:#e6e8eb;padding:1px 5px;border-radius:3px}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin-bottom:12px}
.kpi{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px}
.kpi .label{color:#666;font-size:12px}
.kpi .value{font-size:22px;font-weight:600}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.chart{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 14px;min-height:120px}
.chart h3{margin:0;font-size:15px;font-weight:600}
.chart .note{margin:0 0 6px;color:#777;font-size:12px}
.chart .empty,.no-data-yet{color:#8a6d3b;background:#fcf8e3;border:1px solid #f0e1b0;border-radius:4px;padding:8px 12px}
.chart .empty{margin:18px 0 6px}
.chart.failed{border-color:#e45756}
"""

# Unpacks the libraries, draws every chart, and records on <body> that it is done, for the browser check.
SCRIPT = """
(async function () {
  try {
    const packed = document.getElementById("vega-bundle").textContent.trim();
    const bytes = Uint8Array.from(atob(packed), function (c) { return c.charCodeAt(0); });
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const library = document.createElement("script");
    library.textContent = await new Response(stream).text();
    document.head.appendChild(library);
    const specs = JSON.parse(document.getElementById("specs").textContent);
    const charts = Array.from(document.querySelectorAll(".chart[data-spec]"));
    await Promise.allSettled(charts.map(function (el) {
      const options = {mode: "vega-lite", renderer: "svg", actions: false};
      return vegaEmbed(el.querySelector(".view"), specs[el.dataset.spec], options).catch(function (error) {
        el.classList.add("failed");
        console.error("chart " + el.dataset.spec + " failed: " + error);
      });
    }));
  } catch (error) {
    console.error("report: " + error);
  }
  document.body.dataset.rendered = "done";
})();
"""

# The page may run its own inline script (Vega compiles expressions with Function) and nothing else.
CSP = "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:"


@cache
def packed_libraries() -> str:
    """vl-convert's bundle of Vega, Vega-Lite and vega-embed, gzipped and base64-encoded.

    The bundle is about 880 KiB as is and 400 KiB packed; the page unpacks it with
    the browser's own DecompressionStream, so the page stays one offline file
    well under 1 MB with room for many projects.
    """
    bundle = vl_convert.javascript_bundle(vl_version=VL_VERSION).encode()
    return base64.b64encode(gzip.compress(bundle, compresslevel=9, mtime=0)).decode("ascii")


def _script_json(value: Any) -> str:
    """JSON safe inside <script>: no `<`, `>` or `&` that could close it or start a comment."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _chart_html(section: Section, chart: Chart) -> str:
    attrs = (
        f'class="chart{" no-data" if chart.spec is None else ""}" data-project="{_attr(section.hash)}" '
        f'data-chart="{_attr(chart.key)}" data-metric="{_attr(" ".join(chart.metrics))}"'
    )
    head = f"<h3>{html.escape(chart.title)}</h3><p class=note>{html.escape(chart.note)}</p>"
    if chart.spec is None:
        return f'<div {attrs}>{head}<p class="empty">no data</p></div>'
    return f'<div {attrs} data-spec="{_attr(section.hash + "/" + chart.key)}">{head}<div class="view"></div></div>'


def _section_html(section: Section) -> str:
    kind = section.type if section.known else "not in projects"
    parts = [
        f'<section class="project" id="p-{_attr(section.hash)}" data-project="{_attr(section.hash)}">',
        f"<h2>{html.escape(section.name)}<span class=meta>{html.escape(kind)} · "
        f"<code>{html.escape(section.hash)}</code></span></h2>",
    ]
    if not section.charts:
        parts.append('<p class="no-data-yet">No data yet: the analytics job has not served any figures for it.</p>')
    else:
        parts.append("<div class=kpis>")
        for label, value in section.kpis:
            parts.append(
                f"<div class=kpi><div class=label>{html.escape(label)}</div>"
                f"<div class=value>{html.escape(value)}</div></div>"
            )
        parts.append("</div><div class=grid>")
        parts.extend(_chart_html(section, chart) for chart in section.charts)
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)


def render(
    projects: Mapping[str, Mapping[str, Any]],
    documents: Iterable[Mapping[str, Any]],
    generated_at: datetime,
    days: int = DEFAULT_DAYS,
) -> str:
    """The whole page, self-contained: a pure function of its arguments."""
    model, latest = sections(projects, documents, days)
    specs = {f"{s.hash}/{c.key}": c.spec for s in model for c in s.charts if c.spec is not None}
    generated = generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    shown = f"latest day shown: {latest} (UTC)" if latest else "no figures served yet"
    nav = "".join(f'<a href="#p-{_attr(s.hash)}">{html.escape(s.name)}</a>' for s in model)
    body = "\n".join(_section_html(s) for s in model) or '<p class="no-data-yet">No projects yet.</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Telemetry report · {html.escape(latest or "no data")}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>Telemetry report</h1>
<p>Generated {generated} · {shown} · {len(model)} project{"" if len(model) == 1 else "s"}</p>
<nav>{nav}</nav>
</header>
<main>
{body}
</main>
<script id="specs" type="application/json">{_script_json(specs)}</script>
<script id="vega-bundle" type="application/gzip+base64">{packed_libraries()}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""


def write(
    db: Any,
    out: Path,
    days: int = DEFAULT_DAYS,
    hashes: Iterable[str] | None = None,
    generated_at: datetime | None = None,
) -> Path:
    """Read the serving copy, write the page to `out`; returns `out`."""
    projects, documents = load(db, days, hashes)
    page = render(projects, documents, generated_at or datetime.now(UTC), days)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/report.html"))
    parser.add_argument("--png", type=Path, help="also open the page in headless Chromium, check it, screenshot it")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="the long window, in days")
    parser.add_argument("--project", action="append", metavar="HASH", help="only this project (repeatable)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    db = mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))
    out = write(db, args.out, args.days, args.project)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    if args.png is None:
        return 0
    from telemetry.report import browser  # Playwright only when a screenshot is asked for

    result = browser.check_and_screenshot(out, args.png)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
