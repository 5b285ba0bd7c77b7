"""The run lock's pure parts: what a run does on seeing a lock, how long a lock
holds, how a lock object's metadata is read. Its calls to Cloud Storage and the
fenced BigQuery client run against the local stack in
tests/integration/test_run_lock.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from telemetry.common import config
from telemetry.pipelines import run_lock
from telemetry.pipelines.run_lock import Action, LockState, decide

NOW = 1_800_000_000.0


def state(holder: str = "run/1", expires_at: float = NOW + 60) -> LockState:
    return LockState(holder, expires_at, generation=7, write="w")


@pytest.mark.parametrize(
    ("current", "action"),
    [
        (None, Action.CREATE),  # never taken: create it on generation 0
        (state(), Action.WAIT),  # held, expiring in 60 s
        (state(expires_at=NOW + 0.001), Action.WAIT),
        (state(expires_at=NOW), Action.TAKE),  # expired at this very moment: its holder is presumed dead
        (state(expires_at=NOW - 3600), Action.TAKE),
        (state(holder="", expires_at=NOW + 60), Action.TAKE),  # released
    ],
)
def test_decide(current, action):
    assert decide(current, NOW) is action


def test_the_ttl_outlives_every_job_a_holder_may_still_run():
    timeout = int(config.VARIABLES["BIGQUERY_TIMEOUT_SECONDS"].default)
    ttl = run_lock.ttl_seconds(timeout)
    # After a renewal: the job's creation (<= T), a re-creation by the library's job retry
    # (<= T), the job's server-side bound (T), and a late stop or clock skew (T).
    assert ttl == 4 * timeout == 1200
    assert ttl > 3 * timeout
    # A run waiting for a dead holder always outlasts the dead holder's lock.
    assert run_lock.wait_seconds(ttl) > ttl + run_lock.MAX_POLL_SECONDS


def blob(metadata, generation=5):
    return SimpleNamespace(metadata=metadata, generation=generation)


def test_a_lock_object_reads_as_its_metadata_says():
    current = run_lock._state(
        blob({"holder": "abc/12", "expires_at": "2027-01-15T08:00:00+00:00", "write": "t1"}, generation=42)
    )
    assert current == LockState("abc/12", NOW, 42, "t1")  # 2027-01-15T08:00Z is 1.8e9 s
    assert not current.released


@pytest.mark.parametrize(
    "metadata", [None, {}, {"holder": "x"}, {"holder": "x", "expires_at": "soon"}, {"expires_at": None}]
)
def test_a_lock_object_this_code_did_not_write_reads_as_expired(metadata):
    current = run_lock._state(blob(metadata))
    assert current.expired(NOW) and decide(current, NOW) is Action.TAKE
