"""scripts/soak.py (`make soak`): its account of where the CPU went, and its final drain."""

from __future__ import annotations

import pytest

from scripts import soak as soak_script


@pytest.fixture(scope="module")
def soak():
    """The script as a module (scripts/ is importable from the repository root, as tests/ is)."""
    return soak_script


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


class ShortRuns:
    """Stands in for the pipeline child processes (`PipelineLoop._child`): every run ends at once,
    before any kill is due, and reads `reads[cycle]` objects (0 past the list)."""

    def __init__(self, soak, reads, traffic_done_after_cycle):
        self.soak, self.reads, self.traffic_done_after_cycle = soak, reads, traffic_done_after_cycle
        self.calls = 0

    def child(self, loop, cycle, name, kill_after):
        self.calls += 1
        assert cycle <= 12, "the final drain does not end"
        if cycle >= self.traffic_done_after_cycle and not loop.traffic_done.is_set():
            loop.traffic_ended_at = 0.0
            loop.traffic_done.set()
        run = self.soak.Run(cycle, name, 0.0, seconds=1.0, returncode=0)
        run.objects_read = self.reads[cycle - 1] if cycle <= len(self.reads) and name == "tracking" else 0
        loop.runs.append(run)
        return run


def test_the_final_drain_ends_when_its_runs_are_too_short_to_kill(soak, tmp_path, monkeypatch):
    """The drain's runs, with little or nothing left to read, end before the kill: the kill is
    not moved on forever (the drain never ended); the closing check reports that none was killed."""
    fake = ShortRuns(soak, reads=[50, 40, 30, 5], traffic_done_after_cycle=2)
    loop = soak.PipelineLoop(interval=0.0, log_dir=tmp_path, t0=0.0)
    monkeypatch.setattr(soak.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(soak.PipelineLoop, "_child", lambda self, *args: fake.child(self, *args))
    loop.run()
    assert loop.error is None
    assert loop.kill_missed and loop.killed_at is None
    assert max(r.cycle for r in loop.runs) <= soak.KILL_CYCLE + 2
