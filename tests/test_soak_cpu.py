"""The soak's account of where the CPU went during its traffic (scripts/soak.py, `make soak`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "soak.py"


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_cpu_between_sums_each_component_and_counts_new_processes_from_zero(soak):
    before = {("ingest", 10, 1.0): 5.0, ("ingest", 11, 1.0): 2.0, ("gcs limits proxy", 20, 1.0): 1.0}
    after = {
        ("ingest", 10, 1.0): 7.5,
        ("ingest", 11, 1.0): 2.5,
        ("ingest", 12, 9.0): 1.0,  # a worker started in between
        ("gcs limits proxy", 20, 1.0): 1.25,
        ("fake-gcs-server", 21, 1.0): 4.0,  # first seen now: counted whole, as a process started in between
    }
    assert soak.cpu_between(before, after) == {"ingest": 4.0, "gcs limits proxy": 0.25, "fake-gcs-server": 4.0}


def test_a_pid_reused_by_another_process_is_not_subtracted_from_it(soak):
    before = {("ingest", 10, 1.0): 50.0}
    after = {("ingest", 10, 2.0): 3.0}  # same pid, another start time
    assert soak.cpu_between(before, after) == {"ingest": 3.0}
