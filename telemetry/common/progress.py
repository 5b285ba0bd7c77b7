"""Progress of long work: a bar on a terminal, count lines everywhere else.

A step that can run for more than a few seconds says how far it has got and how
far it has to go: `done` out of `total` (hours, objects, days ...).

- On a terminal (stderr is a TTY and CI is not set) that is a tqdm bar on stderr,
  which stays as one line when the step ends.
- Anywhere else (CI, a pipe or a file, Cloud Logging) it is a structured JSON log
  line (logs.py, logger `telemetry.progress`, INFO): at the first unit done, each
  time another tenth of the total is done or LINE_SECONDS have passed since the
  last line, and once at the end. A step of any length writes at most a few dozen.

tqdm is imported only for a terminal: the deployed functions and pipelines never
run on one and do not ship it (without it, a terminal gets the count lines too).
Nothing here writes to stdout on a terminal, so what a program prints as its
result reads the same with or without progress.

The pipelines' DoFns run in the launcher's process on the local runner: the launcher
opens a step under a key (`open_shared`), the DoFns `advance` it, and where nothing
opened that key (on Dataflow, whose console shows each step's element counts) the
call does nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

from telemetry.common import config
from telemetry.common.logs import get_logger

LOGGER = "telemetry.progress"
LINE_SECONDS = 15.0
LINE_PARTS = 10  # a line each time another tenth is done

T = TypeVar("T")

_shared: dict[str, Progress] = {}
_shared_lock = threading.Lock()


def on_terminal(stream: IO[str] | None = None) -> bool:
    """Whether progress shows as a bar: the stream is a TTY and CI is not set."""
    stream = sys.stderr if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False
    return tty and not config.get("CI")


def _tqdm_class():
    try:
        from tqdm import tqdm
    except ImportError:  # a deploy unit: it does not ship tqdm
        return None
    return tqdm


def _screen(stream: IO[str]) -> dict[str, Any]:
    """tqdm's screen size: the terminal's, followed as it is resized. Where the terminal reports
    none (a pseudo-terminal without a size, as `script` gives) tqdm takes it for 0 x 0 and draws
    empty lines: then $COLUMNS and $LINES, or 80 x 24."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    if size.columns and size.lines:
        return {"dynamic_ncols": True}
    fallback = shutil.get_terminal_size()
    return {"ncols": fallback.columns, "nrows": fallback.lines}


class Progress:
    """How far one step has got. Thread-safe; `total` may grow while the work is found
    (`add_total`), and is None while nothing is known of it. Shows nothing before the
    first unit is done."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        unit: str = "",
        *,
        stream: IO[str] | None = None,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = sys.stderr if stream is None else stream
        self._bar_class = _tqdm_class() if (on_terminal(self._stream) if terminal is None else terminal) else None
        self._bar: Any = None
        self._clock = clock
        self._started = clock()
        self._last_line_at: float | None = None
        self._last_line_tenth = -1
        self._last_line_done = -1
        self._closed = False
        self._lock = threading.Lock()
        self._log = get_logger(LOGGER)

    @property
    def on_terminal(self) -> bool:
        return self._bar_class is not None

    def add_total(self, n: int = 1) -> None:
        with self._lock:
            self.total = (self.total or 0) + n
            if self._bar is not None:
                self._bar.total = self.total
                self._bar.refresh()

    def update(self, n: int = 1) -> None:
        with self._lock:
            if self._closed:
                return
            self.done += n
            if self._bar_class is not None:
                if self._bar is None:
                    # Counts and times, no rate: tqdm writes a slow one as "5.59s/ days".
                    unit = f" {self.unit}" if self.unit else ""
                    self._bar = self._bar_class(
                        total=self.total,
                        desc=self.what,
                        bar_format=f"{{l_bar}}{{bar}}| {{n_fmt}}/{{total_fmt}}{unit} [{{elapsed}}<{{remaining}}]"
                        if self.total is not None
                        else f"{{desc}}: {{n_fmt}}{unit} [{{elapsed}}]",
                        file=self._stream,
                        mininterval=0.5,
                        initial=self.done - n,
                        **_screen(self._stream),
                    )
                self._bar.update(n)
            elif self._line_due():
                self._line()

    def close(self) -> None:
        """The step ended: the bar stays as a line, or a last count line (if any unit was done)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.close()
            elif self._bar_class is None and self.done and self._last_line_done != self.done:
                self._line()

    def write(self, text: str) -> None:
        """A line of output above the bar (print() would tear it); plain print without one."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- count lines -------------------------------------------------------------------

    def _tenth(self) -> int:
        return self.done * LINE_PARTS // self.total if self.total else -1

    def _line_due(self) -> bool:
        if self._last_line_at is None:
            return True
        if self.total and self._tenth() > self._last_line_tenth:
            return True
        return self._clock() - self._last_line_at >= LINE_SECONDS

    def _line(self) -> None:
        now = self._clock()
        elapsed = now - self._started
        of = f"/{self.total}" if self.total is not None else ""
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        self._log.info(
            f"{self.what} {self.done}{of}{unit}{percent}, {elapsed:.0f} s",
            extra={
                "progress": {
                    "step": self.what,
                    "done": self.done,
                    "total": self.total,
                    "unit": self.unit,
                    "elapsed_seconds": round(elapsed, 1),
                }
            },
        )
        self._last_line_at = now
        self._last_line_tenth = self._tenth()
        self._last_line_done = self.done


def track(items: Iterable[T], what: str, unit: str = "", total: int | None = None) -> Iterator[T]:
    """Each item of `items`, counted as done once the loop body has run for it."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(what, total, unit) as progress:
        for item in items:
            yield item
            progress.update()


def keep_lines() -> None:
    """Count lines at INFO even where LOG_LEVEL quiets the rest (the local entry points that
    run with LOG_LEVEL=WARNING: the demo, the analytics benchmark, the soak)."""
    logging.getLogger(LOGGER).setLevel(logging.INFO)


# -- a step that DoFns advance, in the process that opened it -------------------------


def open_shared(key: str, what: str, total: int | None = None, unit: str = "") -> Progress:
    """Open a step that `advance` and `add_to_total` reach by its key until `close_shared`."""
    progress = Progress(what, total, unit)
    with _shared_lock:
        _shared[key] = progress
    return progress


def close_shared(*keys: str) -> None:
    with _shared_lock:
        opened = [_shared.pop(key) for key in keys if key in _shared]
    for progress in opened:
        progress.close()


def advance(key: str, n: int = 1) -> None:
    """`n` more units of the step opened under `key`; nothing where none is open."""
    progress = _shared.get(key)
    if progress is not None:
        progress.update(n)


def add_to_total(key: str, n: int = 1) -> None:
    """`n` more units of work found for the step opened under `key`; nothing where none is open."""
    progress = _shared.get(key)
    if progress is not None:
        progress.add_total(n)
