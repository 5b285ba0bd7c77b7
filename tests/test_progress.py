"""telemetry/common/progress.py: a bar on a terminal, a few count lines anywhere else."""

from __future__ import annotations

import io
import logging
import os
import select
import threading

import pytest

from telemetry.common import progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def lines(caplog):
    """The count lines logged, as their `progress` fields."""
    caplog.set_level(logging.INFO, logger=progress.LOGGER)

    def logged() -> list[dict]:
        return [r.progress for r in caplog.records if r.name == progress.LOGGER]

    return logged


def test_count_lines_at_the_first_unit_each_tenth_and_the_end(lines):
    clock = Clock()
    with progress.Progress("job: computed", 100, "days", terminal=False, clock=clock) as days:
        for _ in range(100):
            clock.now += 0.01  # fast: only the tenths make lines
            days.update()
    logged = lines()
    assert [line["done"] for line in logged] == [1, *range(10, 101, 10)]
    assert {line["total"] for line in logged} == {100}
    assert logged[-1] == {"step": "job: computed", "done": 100, "total": 100, "unit": "days", "elapsed_seconds": 1.0}


def test_count_line_message_says_done_total_unit_and_percent(caplog):
    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    clock = Clock()
    with progress.Progress("analytics: computed", 31, "days", terminal=False, clock=clock) as days:
        clock.now += 4
        days.update(31)
    assert [r.getMessage() for r in caplog.records] == ["analytics: computed 31/31 days (100%), 4 s"]


def test_without_a_total_a_line_every_few_seconds_and_one_at_the_end(lines):
    clock = Clock()
    with progress.Progress("baseline: read", None, "objects", terminal=False, clock=clock) as read:
        for _ in range(60):
            clock.now += 1
            read.update()
    logged = lines()
    seconds = progress.LINE_SECONDS
    assert [line["done"] for line in logged] == [1, 1 + seconds, 1 + 2 * seconds, 1 + 3 * seconds, 60]
    assert all(line["total"] is None for line in logged)


def test_a_total_found_as_the_work_is_listed(lines):
    found = progress.Progress("run: fetched", None, "objects", terminal=False, clock=Clock())
    for _ in range(40):
        found.add_total()
    found.update(40)
    found.close()
    assert [(line["done"], line["total"]) for line in lines()] == [(40, 40)]


def test_no_line_for_a_step_that_did_nothing(lines):
    progress.Progress("run: fetched", 5, "objects", terminal=False).close()
    assert lines() == []


def test_a_bar_on_a_terminal_and_no_line(monkeypatch, lines):
    monkeypatch.delenv("CI", raising=False)
    screen = FakeTerminal()
    with progress.Progress("tracking: listed", 4, "hours", stream=screen) as hours:
        assert hours.on_terminal
        for _ in range(4):
            hours.update()
    last = screen.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("tracking: listed: 100%|") and last.endswith("| 4/4 hours [00:00<00:00]")
    assert lines() == []


def test_ci_or_a_pipe_gets_lines_not_a_bar(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert progress.on_terminal(FakeTerminal())
    assert not progress.on_terminal(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not progress.on_terminal(FakeTerminal())
    assert not progress.Progress("x", 1, stream=FakeTerminal()).on_terminal


def test_without_tqdm_a_terminal_gets_lines(monkeypatch, lines):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress, "_tqdm_class", lambda: None)  # a deploy unit: tqdm not installed
    screen = FakeTerminal()
    with progress.Progress("job: computed", 2, "days", stream=screen) as days:
        days.update(2)
    assert screen.getvalue() == ""
    assert [line["done"] for line in lines()] == [2]


def test_track_counts_an_item_once_its_loop_body_has_run(lines):
    seen = []
    for day in progress.track(["a", "b", "c"], "job: computed", "days"):
        seen.append((day, [line["done"] for line in lines()]))
    assert seen == [("a", []), ("b", [1]), ("c", [1, 2])]  # of 3, each unit is another tenth
    assert [(line["done"], line["total"]) for line in lines()] == [(1, 3), (2, 3), (3, 3)]


def test_updates_from_many_threads_all_count():
    counted = progress.Progress("run: fetched", 4000, "objects", terminal=False)

    def work():
        for _ in range(1000):
            counted.update()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counted.done == 4000


def test_a_shared_step_is_advanced_by_key_and_unknown_keys_do_nothing(lines):
    progress.advance("nobody/objects")  # nothing opened it: as on a Dataflow worker
    progress.add_to_total("nobody/objects", 3)
    step = progress.open_shared("run1/objects", "tracking: fetched", None, "objects")
    progress.add_to_total("run1/objects", 3)
    progress.advance("run1/objects", 2)
    progress.advance("run1/objects")
    progress.close_shared("run1/objects", "run1/hours")
    progress.advance("run1/objects")  # after the run: no longer reached
    assert (step.done, step.total) == (3, 3)
    assert [(line["done"], line["total"]) for line in lines()] == [(2, 3), (3, 3)]


def test_keep_lines_shows_them_where_log_level_quiets_info(caplog):
    logger = logging.getLogger(progress.LOGGER)
    before = logger.level
    root = logging.getLogger()
    root_level = root.level
    try:
        root.setLevel(logging.WARNING)
        logger.setLevel(logging.NOTSET)
        assert not logger.isEnabledFor(logging.INFO)
        progress.keep_lines()
        assert logger.isEnabledFor(logging.INFO)
    finally:
        logger.setLevel(before)
        root.setLevel(root_level)


def test_a_terminal_that_reports_no_size_still_gets_a_bar(monkeypatch):
    """A new pseudo-terminal reports 0 x 0 (as under `script`): tqdm drew an empty line there."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as screen:
            assert os.get_terminal_size(screen.fileno()) == (0, 0)
            with progress.Progress("demo: wrote", 10, "objects", stream=screen) as written:
                written.update(10)
            screen.flush()
            output = b""
            while select.select([master], [], [], 0.5)[0]:  # all that the terminal got
                output += os.read(master, 65536)
    finally:
        os.close(slave)
        os.close(master)
    last = output.decode().replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("demo: wrote: 100%|") and "10/10 objects" in last and len(last) == 100


def test_a_bar_without_a_total_counts(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    screen = FakeTerminal()
    with progress.Progress("baseline: read", None, "objects", stream=screen) as read:
        read.update(7)
    assert screen.getvalue().replace("\r", "\n").strip().splitlines()[-1] == "baseline: read: 7 objects [00:00]"
