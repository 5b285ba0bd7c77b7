"""Structured JSON logs on stdout, one object per line, as Cloud Logging reads them.

Cloud Logging lifts `severity`, `message` and `httpRequest` out of a JSON line
and keeps every other key under `jsonPayload`. python-json-logger builds the
line and orjson writes it: ingest logs a line per request, and the standard
library's encoder cost a third more per line (`make bench-ingest`). A line per
request goes through `log_fields`, which writes the same bytes with less work.
"""

from __future__ import annotations

import logging
import sys
from functools import cache
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

from telemetry.common import config


@cache
def _configure_root() -> logging.StreamHandler:
    """Once per process: the root logger writes JSON lines to stdout, through the handler returned."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        OrjsonFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "severity", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.get("LOG_LEVEL") or "INFO")
    return handler


def get_logger(name: str) -> logging.Logger:
    """A logger whose records go out as JSON lines."""
    _configure_root()
    return logging.getLogger(name)


def log_fields(logger: logging.Logger, level: int, message: str, fields: dict[str, Any]) -> None:
    """What `logger.log(level, message, extra=fields)` writes, for a line per request.

    When the line would reach only the JSON handler `_configure_root` installed (no other
    handler or filter on the way, as deployed), its formatter's own encoder serialises it
    and it is written under the handler's lock, as the handler would write it, but without
    making a LogRecord and walking its attributes: that was most of a line's CPU (14 to 3 us
    per line in one process, docs/benchmarks.md), on ingest's hottest path. Otherwise (another
    handler, a filter, a test's caplog) it goes through logging itself. Either way the same
    bytes (tests/test_logs.py compares them)."""
    if not logger.isEnabledFor(level):
        return
    handler = _sole_handler(logger, level)
    if handler is not None:
        data = {"severity": logging.getLevelName(level), "logger": logger.name, "message": message, **fields}
        try:
            line = handler.formatter.serialize_log_record(data) + handler.terminator  # type: ignore[union-attr]
            with handler.lock:  # type: ignore[union-attr]
                handler.stream.write(line)
                handler.stream.flush()
        except Exception:  # as StreamHandler.emit: reported on stderr, never raised to the caller
            handler.handleError(_record(logger, level, message, fields))
        return
    logger.handle(_record(logger, level, message, fields))


def _record(logger: logging.Logger, level: int, message: str, fields: dict[str, Any]) -> logging.LogRecord:
    # What `logger.log` makes, less finding the caller's file and line (the line carries neither).
    return logger.makeRecord(logger.name, level, "(unknown file)", 0, message, (), None, extra=fields)


def _sole_handler(logger: logging.Logger, level: int) -> logging.StreamHandler | None:
    """The root's JSON handler when a record of `logger` at `level` would reach it and nothing
    else (Logger.callHandlers' walk); None otherwise."""
    handler = _configure_root()
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters:
            return None
        if node.handlers:
            if node.parent is not None or node.handlers != [handler]:
                return None
            return handler if not handler.filters and level >= handler.level else None
        if not node.propagate:
            return None
        node = node.parent
    return None
