"""The run lock: at most one run of a pipeline MERGEs into BigQuery at a time.

Why: each MERGE inserts the staged rows whose key the table does not hold, as
seen by its own snapshot. Two runs of one pipeline that MERGE the same pings at
once (an hourly run and a manual `--hour` reprocess, or a Dataflow bundle
retried on another worker while the first attempt still runs) could both find
a key missing and both insert it. Whether BigQuery would fail one of them
depends on its DML concurrency rules, which bqemulator cannot show; the lock
makes the overlap impossible instead. A pipeline owns its routes and no ping
belongs to two routes, so one lock per pipeline covers every key its MERGEs
insert (`sites` and `rejected` take rows from both pipelines, never the same
keys). The MERGE step is the only place that needs it: MongoDB updates are
ordered by `received_at` (any order, any repetition, the same document) and
the mail claim is atomic.

The lock is the object `gs://{work_bucket}/locks/{pipeline}`. Its custom
metadata names its holder (the run id and a token of this attempt, so a
retried bundle of the same run is another holder) and its expiry. Every change
is conditional on the generation the writer last saw (Cloud Storage answers
412 otherwise), and every write makes a new generation:

- acquire: create with `ifGenerationMatch=0`; if the object exists and is
  released, or has expired (its holder died: a takeover, logged and counted),
  replace it on its generation; if it is held, wait (bounded: `wait_seconds`,
  then `RunLockTimeout`);
- renew: rewrite it on our generation, right before each query job of the
  MERGE step (`FencedBigQuery`); 412 means it was taken over: `RunLockLost`,
  and the run stops before its next statement;
- release: rewrite it on our generation as released (no holder, expired
  now), once the step has succeeded; the next run takes it on that
  generation. After a failure, which may have left a job of ours running,
  the lock is left to expire instead.

Every step is a conditional upload, never a conditional delete or metadata
patch: Cloud Storage applies preconditions to all three, but fake-gcs-server
ignores them on deletes and patches, while it applies `ifGenerationMatch` to
uploads, atomically under races (tests/integration/test_run_lock.py checks
both). So the local tests exercise the very calls production makes.

The TTL outlives every job a holder may still have running (`ttl_seconds`):
each query job is created after a renewal, and bounded on the server by
`job_timeout_ms`. Expiries are compared across machines' clocks; the margin
in the TTL covers their skew.

Why no library: locks on Cloud Storage preconditions are a few calls of the
storage client, and the fence (renew before each job, bound each job) is
specific to the MERGE step.
"""

from __future__ import annotations

import copy
import enum
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from telemetry.common import cloud

log = logging.getLogger("telemetry.pipelines")

LOCKS_PREFIX = "locks/"
# A waiting run looks again after 1 s, then backs off up to this.
MAX_POLL_SECONDS = 10.0


def ttl_seconds(bigquery_timeout_seconds: float) -> float:
    """How long a lock holds without renewal: longer than any job its holder may still run.

    After a renewal the holder creates at most one query job before the next
    renewal. With T = BIGQUERY_TIMEOUT_SECONDS, that job exists at most T after
    the renewal (the insert call's retries are bounded by T), the library may
    re-create it once it fails for a retryable reason, for up to T more
    (warehouse's job retry bound), and each job is stopped on the server T after
    its creation (`job_timeout_ms`). BigQuery documents that stop as best
    effort ("might not always succeed in canceling it before the job
    completes"), so one more T covers a late stop and the clocks' skew: 4 T.
    """
    return 4 * bigquery_timeout_seconds


def wait_seconds(ttl: float) -> float:
    """How long a run waits for the lock: a dead holder's lock always expires within it."""
    return ttl + 2 * MAX_POLL_SECONDS


class RunLockTimeout(RuntimeError):
    """The lock stayed held past the wait bound: the run fails, nothing is acknowledged."""


class RunLockLost(RuntimeError):
    """Another run took the lock over (ours had expired): this run stops before its next statement."""


@dataclass(frozen=True)
class LockState:
    holder: str
    expires_at: float  # epoch seconds
    generation: int
    write: str  # the token of the write that made this generation

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    @property
    def released(self) -> bool:
        return self.holder == ""


class Action(enum.Enum):
    CREATE = "create"  # no lock object yet: create it (generation 0)
    TAKE = "take"  # released or expired: replace it on its generation
    WAIT = "wait"  # held


def decide(current: LockState | None, now: float) -> Action:
    """What a run that wants the lock does, seeing `current` at `now`."""
    if current is None:
        return Action.CREATE
    return Action.TAKE if current.released or current.expired(now) else Action.WAIT


def _state(blob) -> LockState:
    """The lock object's state; metadata this code did not write reads as expired (taken over on its generation)."""
    metadata = blob.metadata or {}
    try:
        expires_at = datetime.fromisoformat(metadata["expires_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        expires_at = 0.0
    return LockState(metadata.get("holder", "?"), expires_at, int(blob.generation), metadata.get("write", ""))


@dataclass(frozen=True)
class Acquired:
    waited_seconds: float  # 0: the lock was free
    took_over_from: str | None  # the holder of the expired lock replaced, if any


class RunLock:
    """One attempt's hold on its pipeline's lock (see the module docstring)."""

    def __init__(
        self,
        bucket,
        pipeline: str,
        run_id: str,
        ttl: float,
        wait: float,
        call_timeout_seconds: float = 30,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = LOCKS_PREFIX + pipeline
        self.pipeline = pipeline
        self.holder = f"{run_id}/{uuid.uuid4().hex[:8]}"
        self.ttl = ttl
        self.wait = wait
        self._bucket = bucket
        self._timeout = call_timeout_seconds
        self._clock = clock
        self._sleep = sleep
        self._held: LockState | None = None

    @property
    def held(self) -> LockState | None:
        return self._held

    def read(self) -> LockState | None:
        blob = self._bucket.get_blob(self.name, timeout=self._timeout, retry=self._retry())
        return _state(blob) if blob is not None else None

    def acquire(self) -> Acquired:
        started = self._clock()
        deadline = started + self.wait
        waiting_since: float | None = None
        poll = 1.0
        while True:
            now = self._clock()
            current = self.read()
            action = decide(current, now)
            if action is Action.CREATE and self._write(0):
                return Acquired(self._waited(waiting_since), None)
            if action is Action.TAKE and self._write(current.generation):
                if current.released:
                    return Acquired(self._waited(waiting_since), None)
                log.warning(
                    "run lock taken over from an expired holder",
                    extra={"lock": self.name, "holder": self.holder, "previous_holder": current.holder},
                )
                return Acquired(self._waited(waiting_since), current.holder)
            if action is not Action.WAIT:
                continue  # another run changed it between our read and our write: look again
            if now >= deadline:
                raise RunLockTimeout(
                    f"the run lock gs://{self._bucket.name}/{self.name} is held by {current.holder} "
                    f"(until {_iso(current.expires_at)}); waited {now - started:.0f} s, the bound: "
                    "this run fails without acknowledging, and its notifications come back for the next run"
                )
            if waiting_since is None:
                waiting_since = now
                log.warning(
                    "run lock held by another run: waiting",
                    extra={
                        "lock": self.name,
                        "holder": self.holder,
                        "held_by": current.holder,
                        "expires_in_seconds": round(current.expires_at - now, 1),
                        "wait_bound_seconds": self.wait,
                    },
                )
            self._sleep(max(0.05, min(poll, deadline - now, current.expires_at - now + 0.05)))
            poll = min(2 * poll, MAX_POLL_SECONDS)

    def _waited(self, since: float | None) -> float:
        if since is None:
            return 0.0
        waited = self._clock() - since
        log.info("run lock acquired after waiting", extra={"lock": self.name, "waited_seconds": round(waited, 1)})
        return waited

    def renew(self) -> None:
        """Extend our hold by a TTL from now; RunLockLost if another run has taken it over."""
        if self._held is None:
            raise RunLockLost(f"{self.holder} does not hold {self.name}")
        if not self._write(self._held.generation):
            lost, self._held = self._held, None
            current = self.read()
            raise RunLockLost(
                f"the run lock {self.name} of {self.holder} (expired {_iso(lost.expires_at)}) is now held by "
                f"{current.holder if current else 'nobody'}: this run stops before its next statement"
            )

    def release(self) -> None:
        """Mark the lock released if it is still ours (a lock taken over is left to its new holder)."""
        if self._held is None:
            return
        held, self._held = self._held, None
        if not self._write(held.generation, release=True):
            log.warning("run lock had been taken over before its release", extra={"lock": self.name})

    def _write(self, expected_generation: int, release: bool = False) -> bool:
        """Write the lock as ours, expiring a TTL from now (or as released), if its generation is still
        `expected_generation` (0: if it does not exist). False if another run changed it first."""
        from google.api_core.exceptions import PreconditionFailed

        now = self._clock()
        holder, expires_at = ("", now) if release else (self.holder, now + self.ttl)
        token = uuid.uuid4().hex
        blob = self._bucket.blob(self.name)
        metadata = {"holder": holder, "expires_at": _iso(expires_at), "write": token}
        if release:
            metadata["released_by"] = self.holder
        blob.metadata = metadata
        try:
            blob.upload_from_string(
                b"",
                content_type="application/octet-stream",
                if_generation_match=expected_generation,
                timeout=self._timeout,
                retry=self._retry(),
            )
            generation = int(blob.generation)
        except PreconditionFailed:
            # Either another run wrote first, or our own write landed and its answer was lost
            # (the retry then finds the generation changed): the write token tells which.
            current = self.read()
            if current is None or current.write != token:
                return False
            generation = current.generation
        if not release:
            self._held = LockState(holder, expires_at, generation, token)
        return True

    def _retry(self):
        return cloud.storage_call_bounds(self._timeout)["retry"]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class FencedBigQuery:
    """The BigQuery client of the MERGE step, fenced by the run lock.

    Every query job it starts is preceded by a renewal of the lock (so none
    starts once another run has taken the lock over) and bounded on the server
    by `job_timeout_ms` (so none outlives the lock: `ttl_seconds`). Everything
    else is the wrapped client's.
    """

    def __init__(self, client, lock: RunLock, job_timeout_seconds: float):
        self._client = client
        self.lock = lock
        self._job_timeout_ms = cloud.bigquery_job_timeout_ms(job_timeout_seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, query: str, job_config=None, **kwargs):
        from google.cloud import bigquery

        self.lock.renew()
        config = copy.deepcopy(job_config) if job_config is not None else bigquery.QueryJobConfig()
        config.job_timeout_ms = self._job_timeout_ms
        return self._client.query(query, job_config=config, **kwargs)
