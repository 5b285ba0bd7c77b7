"""CSV exports, streamed: a header row, then one row per document, written as the
documents arrive, so memory stays flat however many rows there are.

Safe to open in a spreadsheet (OWASP, "CSV Injection"): a text cell that begins
with `=`, `+`, `-`, `@`, a tab or a carriage return would be read as a formula,
so it is prefixed with a single quote. Only text is neutralised: numbers and
booleans the product itself wrote are left as they are. Quoting (commas, quotes,
line breaks inside a cell) is the standard library's `csv` writer's, RFC 4180
style with CRLF line ends.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from telemetry.dashboard.items import iso_time

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LEADING_SPACE = " \t\r\n"  # a spreadsheet skips it before reading a formula
ROWS_PER_CHUNK = 500  # rows per chunk of the HTTP body: a few hundred KB at most


def neutralise(text: str) -> str:
    """The cell's text, prefixed with `'` if a spreadsheet would read it as a formula."""
    risky = (
        text.startswith(FORMULA_STARTS)
        or text.startswith("\n")
        or text.lstrip(LEADING_SPACE).startswith(FORMULA_STARTS)
    )
    return "'" + text if risky else text


def cell(value: Any) -> str | int | float:
    """One value as a CSV cell: empty for none, ISO 8601 for times, JSON for objects and lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime):
        return iso_time(value)
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return neutralise(str(value))


def rows(columns: Sequence[str], items: Iterable[dict[str, Any]]) -> Iterator[list[Any]]:
    """The header row, then each item's cells in `columns` order."""
    yield list(columns)
    for item in items:
        yield [cell(item.get(column)) for column in columns]


def stream(
    columns: Sequence[str], documents: Iterable[dict[str, Any]], item: Callable[[dict[str, Any]], dict[str, Any]]
) -> Iterator[str]:
    """The CSV text in chunks of ROWS_PER_CHUNK rows; `item` turns a document into the row's values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    count = 0
    for row in rows(columns, (item(doc) for doc in documents)):
        writer.writerow(row)
        count += 1
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
