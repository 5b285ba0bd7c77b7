"""The mails of the events this unit produces, and what every mail shares.

A renderer (contract.Renderer) writes one event's subject, text and HTML from
the event's `data` and the project document; telemetry/notify/registry.py names
the renderer of each event type. Values from the pings (site title, the user's
free text) are the user's words: shown as text, escaped in the HTML, and never
put in the subject unescaped of line breaks.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from telemetry.common import projects
from telemetry.notify.contract import EmailContent
from telemetry.notify.events import Event

MAX_SUBJECT_CHARS = 160


def one_line(text: str, limit: int = MAX_SUBJECT_CHARS) -> str:
    """Text fit for a subject: whitespace runs (line breaks included) as one space, at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def html_table(rows: list[tuple[str, Any]]) -> str:
    """Label/value rows as an HTML table, every value escaped; empty values left out."""
    cells = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>"
        for label, value in rows
        if value not in (None, "")
    )
    return f"<table>{cells}</table>"


def text_rows(rows: list[tuple[str, Any]]) -> str:
    return "\n".join(f"{label}: {value}" for label, value in rows if value not in (None, ""))


def render_deactivation(event: Event, project: Mapping[str, Any]) -> EmailContent:
    """The alert for one deactivation: the site, the reason's label and the user's text."""
    data = event.data
    name = projects.project_name(project)
    reason = data.get("reason_label") or data.get("reason_id") or "no reason given"
    rows = [
        ("Site", data.get("site")),
        ("URL", data.get("url")),
        ("Reason", reason),
        ("Their words", data.get("reason_info")),
        (f"{name} version", data.get("project_version")),
        ("Deactivated at (UTC)", data.get("deactivated_at")),
    ]
    subject = one_line(f"{name} deactivated on {data.get('url')}: {reason}")
    text = f"{name} was deactivated on {data.get('url')}.\n\n{text_rows(rows)}\n\nEvent id: {event.id}\n"
    body = (
        f"<p>{html.escape(name)} was deactivated on {html.escape(str(data.get('url')))}.</p>"
        f"{html_table(rows)}<p style='color:#666'>Event id: {html.escape(event.id)}</p>"
    )
    return EmailContent(subject=subject, text=text, html=body)


def render_deactivations_held_back(event: Event, project: Mapping[str, Any]) -> EmailContent:
    """The one mail of a day's deactivations past the daily cap: how many were not mailed one by
    one (as counted when it was made), and where the vendor sees them all."""
    data = event.data
    name = projects.project_name(project)
    held_back, day = data["held_back"], data["day"]
    more = f"{held_back} more deactivation{'s' if held_back != 1 else ''}"
    subject = one_line(f"{name}: {more} on {day}, see the dashboard")
    lead = (
        f"{name} had more than {data['cap']} deactivations on {day} (UTC), this project's daily limit of "
        f"single alerts. {more.capitalize()}, counted up to {data['counted_until']}, were not sent one by "
        "one, and no further one of that day will be."
    )
    where = f"Every deactivation: the dashboard, or GET {data['list_path']}"
    why = (
        "Each project's deactivations are mailed one by one up to a daily limit, so that a flood of "
        "pings (anyone can send them for a published plugin) cannot flood this inbox."
    )
    text = f"{lead}\n\n{where}\n\n{why}\n\nEvent id: {event.id}\n"
    body = (
        f"<p>{html.escape(lead)}</p><p>Every deactivation: the dashboard, or <code>GET "
        f"{html.escape(data['list_path'])}</code></p><p style='color:#666'>{html.escape(why)} "
        f"Event id: {html.escape(event.id)}</p>"
    )
    return EmailContent(subject=subject, text=text, html=body)
