"""logs.log_fields: the same line `logger.log(level, message, extra=fields)` writes, by either way."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from telemetry.common import logs

FIELDS = [
    {},
    {"route": "track", "status": 200, "size": 1550, "latency_ms": 1.234, "reason": None, "ping_id": "0d3f"},
    {"httpRequest": {"requestMethod": "POST", "status": 413, "remoteIp": "198.51.100.0", "userAgent": None}},
    {"text": 'Café \u2013 \u00d1and\u00fa "quoted" \\ \n', "when": datetime(2026, 12, 1, 23, 5, tzinfo=UTC)},
    {"count": 2**40, "ratio": 0.1, "flag": True, "items": [1, "two", None]},
]


@contextmanager
def json_handler_alone(stream: io.StringIO) -> Iterator[None]:
    """The root's JSON handler alone on the root, as deployed, writing to `stream`. Entered in
    the test's body: pytest adds its capture handlers to the root around the body, after fixtures."""
    handler = logs._configure_root()
    root = logging.getLogger()
    others, root.handlers[:] = root.handlers[:], [handler]
    previous = handler.setStream(stream)
    try:
        yield
    finally:
        handler.setStream(previous)
        root.handlers[:] = others


@pytest.fixture
def stream():
    return io.StringIO()


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


@pytest.mark.parametrize("fields", FIELDS)
@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING, logging.ERROR])
def test_the_line_is_byte_for_byte_the_one_logging_writes(stream, fields, level):
    logger = logs.get_logger("telemetry.test_logs")
    with json_handler_alone(stream):
        assert logs._sole_handler(logger, level) is not None  # the short way is the one under test
        logs.log_fields(logger, level, "request served", dict(fields))
        short = _take(stream)
        logger.log(level, "request served", extra=dict(fields))
    assert short == _take(stream)
    assert short.endswith("\n") and short.count("\n") == 1


def test_a_line_below_the_level_is_not_written(stream):
    logger = logs.get_logger("telemetry.test_logs")
    logger.setLevel(logging.WARNING)
    try:
        with json_handler_alone(stream):
            logs.log_fields(logger, logging.INFO, "request served", {"status": 200})
    finally:
        logger.setLevel(logging.NOTSET)
    assert _take(stream) == ""


def test_another_handler_on_the_way_gets_the_record_through_logging(stream, caplog):
    """A second handler on the root (caplog's): the record must reach it, and the JSON handler too."""
    logger = logs.get_logger("telemetry.test_logs")
    with json_handler_alone(stream), caplog.at_level(logging.INFO):
        logging.getLogger().addHandler(caplog.handler)
        assert logs._sole_handler(logger, logging.INFO) is None
        logs.log_fields(logger, logging.WARNING, "request rejected", {"reason": "body_too_large", "status": 413})
    (record,) = [r for r in caplog.records if r.name == "telemetry.test_logs"]
    assert (record.getMessage(), record.reason, record.status) == ("request rejected", "body_too_large", 413)
    assert '"reason":"body_too_large"' in _take(stream)


def test_a_filter_on_the_logger_is_applied(stream):
    logger = logs.get_logger("telemetry.test_logs")
    dropping = logging.Filter("nothing.matches")
    logger.addFilter(dropping)
    try:
        with json_handler_alone(stream):
            logs.log_fields(logger, logging.INFO, "request served", {"status": 200})
    finally:
        logger.removeFilter(dropping)
    assert _take(stream) == ""


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("the pipe is gone")


def test_a_stream_that_fails_is_reported_as_logging_reports_it_and_never_raised(capsys):
    logger = logs.get_logger("telemetry.test_logs")
    with json_handler_alone(BrokenStream()):
        assert logs._sole_handler(logger, logging.INFO) is not None
        logs.log_fields(logger, logging.INFO, "request served", {"status": 200})
    assert "Logging error" in capsys.readouterr().err
