"""The vendor's offline report: one self-contained HTML page from the serving copy.

`python -m telemetry.report.page [--out out/report.html] [--png out/report.png]
[--days 90] [--project HASH ...]` reads MongoDB `analytics` (the per-day figures
the analytics job serves, see `metrics`) and `projects`, and writes one page
that works offline: the charts are the Vega-Lite specs of `charts` (the one
definition the dashboard draws too), drawn in
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
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import vl_convert

from telemetry.common import config, mongo
from telemetry.common.projects import load_projects
from telemetry.report.charts import (
    CHART_KEYS,
    DEFAULT_DAYS,
    VL_VERSION,
    Chart,
    Series,
    bar_rows,
    kpis,
    parse_day,
    project_charts,
    serving_documents,
)

__all__ = ["CHART_KEYS", "bar_rows", "load", "render", "sections", "write"]

# --- reading -------------------------------------------------------------------------------------


def load(
    db: Any, days: int = DEFAULT_DAYS, hashes: Iterable[str] | None = None
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """(projects by hash, serving documents of the last `days` days up to the latest day with data).

    `hashes` limits both to those projects; None reads every project.
    """
    hashes = sorted(set(hashes)) if hashes is not None else None
    return load_projects(db, hashes), serving_documents(db, days, hashes)


# --- the page's model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    hash: str
    name: str
    type: str
    known: bool
    kpis: tuple[tuple[str, str], ...]
    charts: tuple[Chart, ...]  # empty: the project has no data at all


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
        figures = kpis(series, end) if docs and end else ()
        result.append(
            Section(
                hash=project_hash,
                name=str(project.get("name") or project_hash),
                type=str(project.get("type") or "unknown"),
                known=project_hash in projects,
                kpis=figures,
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
