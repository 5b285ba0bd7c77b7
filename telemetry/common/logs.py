"""Structured JSON logs on stdout, one object per line, as Cloud Logging reads them.

Cloud Logging lifts `severity`, `message` and `httpRequest` out of a JSON line
and keeps every other key under `jsonPayload`.
"""

from __future__ import annotations

import logging
import sys
from functools import cache

from pythonjsonlogger.json import JsonFormatter

from telemetry.common import config


@cache
def _configure_root() -> None:
    """Once per process: the root logger writes JSON lines to stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "severity", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.get("LOG_LEVEL") or "INFO")


def get_logger(name: str) -> logging.Logger:
    """A logger whose records go out as JSON lines."""
    _configure_root()
    return logging.getLogger(name)
