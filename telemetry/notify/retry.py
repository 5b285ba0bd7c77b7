"""When a failed delivery is tried again, and when it is set aside: pure functions.

Exponential backoff with "equal jitter": after failure n (1, 2, ...) the next try
waits a random time in [d/2, d], d = min(first * 2**(n-1), max). The jitter spreads
the retries of many deliveries that failed together (one receiver down) over time,
and the lower half bound keeps the wait growing. A delivery is retried while its
next try would start within `window` of its first try; otherwise it is set aside.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

MAX_DOUBLINGS = 40  # 2**40 times any first wait is past every window: no overflow however many tries


def backoff(failures: int, first: timedelta, longest: timedelta) -> timedelta:
    """The ceiling d of the wait after the `failures`-th failure (1-based)."""
    if failures < 1:
        raise ValueError(f"failures counts from 1, got {failures}")
    return min(first * 2 ** min(failures - 1, MAX_DOUBLINGS), longest)


def next_try(
    failures: int,
    first_try_at: datetime,
    now: datetime,
    first: timedelta,
    longest: timedelta,
    window: timedelta,
    rng: random.Random,
) -> datetime | None:
    """When to try again after the `failures`-th failure at `now`; None: give up (set aside)."""
    ceiling = backoff(failures, first, longest)
    wait = ceiling / 2 + (ceiling / 2) * rng.random()
    due = now + wait
    return due if due < first_try_at + window else None


def schedule(first: timedelta, longest: timedelta, window: timedelta) -> list[timedelta]:
    """The tries' offsets from the first one when every try fails and each wait is its
    ceiling (the latest the jitter allows): the documented schedule."""
    offsets, at, failures = [timedelta(0)], timedelta(0), 1
    while at + backoff(failures, first, longest) < window:
        at += backoff(failures, first, longest)
        offsets.append(at)
        failures += 1
    return offsets
