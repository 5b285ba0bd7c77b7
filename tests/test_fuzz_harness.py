"""The fuzz harness (scripts/fuzz_wire.py, `make fuzz`) on the inputs that once crashed the code it drives."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from telemetry.common import wire

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_wire.py"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("fuzz_wire", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = b"hash=abc&url=https%3A%2F%2Fx.org&"


@pytest.mark.parametrize(
    ("mimetype", "body"),
    [
        (wire.JSON, b'{"hash": "abc", "url": "https://x.org", "site": "\\ud800"}'),  # was a 500
        (wire.FORM, BASE + b"users[total]=--1"),  # int("--1")
        (wire.FORM, BASE + b"users[total]=" + b"9" * 5000),  # over int()'s 4300 digits
        (wire.JSON, b'{"hash": "abc", "url": "https://x.org", "extra": {"license": 1e400}}'),
        (wire.FORM, BASE + b"url=https%3A%2F%2F%26lbrack%3B%40x.org"),
        (wire.FORM, BASE + b"plugins=akismet&wp[multisite]=maybe"),
    ],
)
def test_inputs_that_crashed_now_pass_the_harness(harness, tmp_path, mimetype, body):
    data = harness.make_input(mimetype, None, body)
    harness.check_one(data)
    recorder = harness.Recorder(tmp_path, 1)
    recorder(data)
    assert recorder.crash_count == 0 and recorder.executions == 1


def test_the_recorder_keeps_a_crash_and_goes_on(harness, tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "check_one", lambda data: 1 / 0)
    recorder = harness.Recorder(tmp_path, 1)
    recorder(b"\x00\x00a")
    recorder(b"\x00\x00b")
    recorder.write()
    assert recorder.crash_count == 2 and len(recorder.crashes) == 1
    assert len(list((tmp_path / "crashes").iterdir())) == 1
    assert '"distinct_crashes": 1' in (tmp_path / "summary.json").read_text()
