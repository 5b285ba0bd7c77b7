// The project page's script: draws the charts (Vega-Lite specs from charts.json, the report's
// own, telemetry/report/charts.py) and pages through the sites and deactivations of the JSON API.
// Every request is to this origin and carries the sign-in session cookie (same-origin fetch).
// Text from the data is set with textContent only, never parsed as HTML.
// When the charts are done, <body data-charts="done">; each list sets data-state="loaded" after a page.
"use strict";

(function () {
  const main = document.getElementById("dashboard");

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined && text !== null) el.textContent = String(text);
    return el;
  }

  async function getJson(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (response.status === 401) {
      window.location.assign("/sign-in");
      throw new Error("signed out");
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || ("HTTP " + response.status));
    return body;
  }

  // --- charts ---------------------------------------------------------------------------------

  async function drawCharts() {
    const latest = document.getElementById("latest");
    const grid = document.getElementById("charts");
    try {
      const figures = await getJson(main.dataset.charts);
      latest.textContent = figures.latest_day ? "latest day: " + figures.latest_day + " (UTC)" : "no figures served yet";
      const kpis = document.getElementById("kpis");
      figures.kpis.forEach(function (kpi) {
        const box = element("div", "kpi");
        box.appendChild(element("div", "label", kpi.label));
        box.appendChild(element("div", "value", kpi.value));
        kpis.appendChild(box);
      });
      if (!figures.charts.length) {
        grid.appendChild(element("p", "empty", "No data yet: the analytics job has not served any figures."));
      }
      const drawing = figures.charts.map(function (chart) {
        const box = element("div", "chart");
        box.dataset.chart = chart.key;
        box.dataset.metric = chart.metrics.join(" ");
        box.appendChild(element("h3", null, chart.title));
        box.appendChild(element("p", "note", chart.note));
        grid.appendChild(box);
        if (!chart.spec) {
          box.classList.add("no-data");
          box.appendChild(element("p", "empty", "no data"));
          return Promise.resolve();
        }
        box.dataset.spec = chart.key;
        const view = element("div", "view");
        box.appendChild(view);
        // ast: Vega interprets its expressions instead of compiling them (no eval under the CSP);
        // no default style sheet and a tooltip without an injected <style>: dashboard.css styles both.
        const options = {
          mode: "vega-lite",
          renderer: "svg",
          actions: false,
          ast: true,
          defaultStyle: false,
          tooltip: {disableDefaultStyle: true},
        };
        return vegaEmbed(view, chart.spec, options).catch(function (error) {
          box.classList.add("failed");
          console.error("chart " + chart.key + " failed: " + error);
        });
      });
      await Promise.allSettled(drawing);
    } catch (error) {
      latest.textContent = "the figures could not be read";
      console.error("charts: " + error);
    }
    document.body.dataset.charts = "done";
  }

  // --- lists ----------------------------------------------------------------------------------

  function day(iso) {
    return iso ? iso.replace("T", " ").slice(0, 16) : "";
  }

  function siteCell(item) {
    const cell = element("td", "site");
    cell.appendChild(element("div", "url", item.url));
    if (item.site) cell.appendChild(element("div", "title", item.site));
    return cell;
  }

  function siteRow(item) {
    const row = element("tr");
    row.appendChild(siteCell(item));
    row.appendChild(element("td", "status " + (item.status || ""), item.status));
    row.appendChild(element("td", null, item.project_version));
    row.appendChild(element("td", null, item.wp_version));
    row.appendChild(element("td", null, item.php_version));
    row.appendChild(element("td", null, [item.country, item.hosting].filter(Boolean).join(" · ")));
    row.appendChild(element("td", "time", day(item.last_seen)));
    return row;
  }

  function deactivationRow(item) {
    const row = element("tr");
    row.appendChild(element("td", "time", day(item.deactivated_at)));
    row.appendChild(siteCell(item));
    row.appendChild(element("td", null, item.project_version));
    const reason = element("td", "reason", item.reason);
    if (item.reason_id) reason.title = item.reason_id;
    row.appendChild(reason);
    row.appendChild(element("td", "reason-info", item.reason_info));
    return row;
  }

  // One list: a page of the API at a time; `cursors` holds the cursor of every page seen, so Previous works.
  function List(section, url, csvLink, csvUrl, row, columns) {
    this.section = section;
    this.url = url;
    this.csvLink = csvLink;
    this.csvUrl = csvUrl;
    this.row = row;
    this.columns = columns;
    this.filters = new URLSearchParams();
    this.cursors = [null];
    this.page = 0;
    this.next = null;
    const self = this;
    section.querySelector("[data-page=previous]").addEventListener("click", function () { self.show(self.page - 1); });
    section.querySelector("[data-page=next]").addEventListener("click", function () {
      if (self.cursors.length === self.page + 1) self.cursors.push(self.next);
      self.show(self.page + 1);
    });
  }

  List.prototype.filter = function (params) {
    this.filters = params;
    this.cursors = [null];
    this.csvLink.href = this.csvUrl + (params.toString() ? "?" + params.toString() : "");
    return this.show(0);
  };

  List.prototype.show = async function (page) {
    const section = this.section;
    section.dataset.state = "loading";
    const params = new URLSearchParams(this.filters);
    params.set("limit", "25");
    if (this.cursors[page]) params.set("cursor", this.cursors[page]);
    const body = section.querySelector("tbody");
    try {
      const answer = await getJson(this.url + "?" + params.toString());
      body.replaceChildren.apply(body, answer.items.map(this.row));
      if (!answer.items.length) {
        const empty = element("tr");
        const cell = element("td", "empty", "Nothing here.");
        cell.colSpan = this.columns;
        empty.appendChild(cell);
        body.replaceChildren(empty);
      }
      this.page = page;
      this.next = answer.next_cursor;
      this.cursors.length = page + 1;
      section.querySelector(".page-number").textContent = "page " + (page + 1);
      section.querySelector("[data-page=previous]").disabled = page === 0;
      section.querySelector("[data-page=next]").disabled = !answer.next_cursor;
      section.dataset.page = String(page + 1);
      section.dataset.state = "loaded";
    } catch (error) {
      section.dataset.state = "failed";
      console.error("list: " + error);
    }
  };

  const sitesSection = document.getElementById("sites");
  const sites = new List(
    sitesSection, main.dataset.sites, document.getElementById("sites-csv"), main.dataset.sitesCsv, siteRow, 7
  );
  const deactivations = new List(
    document.getElementById("deactivations"), main.dataset.deactivations,
    document.getElementById("deactivations-csv"), main.dataset.deactivationsCsv, deactivationRow, 5
  );

  const form = document.getElementById("sites-filters");
  function sitesFilters() {
    const params = new URLSearchParams();
    new FormData(form).forEach(function (value, name) {
      const text = String(value).trim();
      if (text) params.set(name, text);
    });
    return params;
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    sites.filter(sitesFilters());
  });
  form.querySelector("select[name=status]").addEventListener("change", function () { sites.filter(sitesFilters()); });

  drawCharts();
  sites.filter(new URLSearchParams());
  deactivations.filter(new URLSearchParams());
})();
