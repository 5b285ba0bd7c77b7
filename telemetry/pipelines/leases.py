"""Keeps the drained notifications leased while the run that drained them works.

A run pulls the routes' notifications (connectors.DrainSubscription), and
acknowledges them only once its sinks have committed (connectors.AckNotifications).
A pulled message stays hidden from other pulls for its ack deadline, at most
600 s; a run longer than that would see every message redelivered to the next
pull, and a backlog that takes longer than a lease to process could loop. So
the process that pulled them re-sends `modify_ack_deadline` for every ack id
it holds every lease/3 seconds, until:

- the run acknowledges them (`acknowledged`, when the ack runs in this process;
  an extension of an already acknowledged id is ignored by Pub/Sub, so an ack
  made in another worker process costs at most a few useless extensions);
- the run fails where this process sees it (`release`: the local runner's
  driver, build.run): the leases are ended at once (deadline 0), so the
  messages come back for the next run without waiting;
- the process dies (a failed or cancelled Dataflow job takes its workers
  down): the leases lapse within lease_seconds;
- the run passes its bound (`--max_run_seconds` from its start): extensions
  stop and the leases lapse, and the ack step fails the run instead of
  acknowledging (connectors.RunTooLong). A run never holds leases forever.

Why no library: google-cloud-pubsub's lease management (subscriber._protocol.leaser)
is private and driven by a StreamingPullManager (streaming pull, flow control,
callbacks per message); the drain uses synchronous pull so that a batch run
can tell when a subscription is empty, and nothing public extends the leases
of synchronously pulled messages.

Where the ack ids live: in the memory of the worker process that ran the drain
(in-process for the local runner; on Dataflow the drain's worker). Dataflow
batch autoscaling can retire that worker before the run ends; its leases then
lapse and the messages are redelivered to the next run, which skips what this
run wrote (MERGE on ping_id, ordered MongoDB updates): a repeat, never a loss.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from telemetry.common import cloud

log = logging.getLogger("telemetry.pipelines")

# Ack ids per modify_ack_deadline request: what google-cloud-pubsub itself sends
# (dispatcher._ACK_IDS_BATCH_SIZE), well inside the 512 KiB request limit.
ACK_IDS_PER_REQUEST = 1000


class LeaseKeeper:
    """The ack ids one run holds in this process, and the thread that extends them."""

    def __init__(
        self,
        lease_seconds: int,
        deadline: float,
        subscriber_factory: Callable[[], object],
        clock: Callable[[], float] = time.time,
        call_timeout_seconds: float = 30,
    ):
        self.lease_seconds = lease_seconds
        self.deadline = deadline
        self.interval = max(1.0, lease_seconds / 3)
        self._subscriber_factory = subscriber_factory
        self._clock = clock
        self.call_timeout_seconds = call_timeout_seconds
        self._held: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.extensions = 0  # modify_ack_deadline requests sent by the thread, for tests and logs

    def hold(self, subscription: str, ack_ids: Iterable[str]) -> None:
        """Keep these leased from now on (the caller has just set their deadline)."""
        with self._lock:
            self._held.setdefault(subscription, set()).update(ack_ids)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="notification-leases", daemon=True)
                self._thread.start()

    def acknowledged(self, subscription: str, ack_ids: Iterable[str]) -> None:
        with self._lock:
            held = self._held.get(subscription)
            if held is not None:
                held.difference_update(ack_ids)

    def held(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._held.values())

    def release(self) -> int:
        """Stop, and end the leases of what is still held (deadline 0): the messages come back now."""
        self._stop.set()
        if self._thread is not None:
            # No extension may land after the release; a call in flight ends within its bound.
            self._thread.join(timeout=2 * self.call_timeout_seconds + 5)
        with self._lock:
            held, self._held = self._held, {}
        released = sum(len(ids) for ids in held.values())
        if released:
            subscriber = self._subscriber_factory()
            try:
                for subscription, ack_ids in held.items():
                    self._modify(subscriber, subscription, sorted(ack_ids), 0)
            except Exception as e:  # they lapse within lease_seconds instead
                log.warning("could not end notification leases", extra={"error": str(e)[:300]})
            finally:
                subscriber.close()
        return released

    def stop(self) -> None:
        """Stop extending; whatever is still held lapses within lease_seconds."""
        self._stop.set()

    def _run(self) -> None:
        subscriber = self._subscriber_factory()
        try:
            while not self._stop.wait(self.interval):
                if self._clock() >= self.deadline:
                    with self._lock:
                        left = sum(len(ids) for ids in self._held.values())
                        self._held = {}
                    log.error(
                        "run passed its bound: notification leases no longer extended",
                        extra={"held": left, "lease_seconds": self.lease_seconds},
                    )
                    return
                with self._lock:
                    snapshot = {s: sorted(ids) for s, ids in self._held.items() if ids}
                for subscription, ack_ids in snapshot.items():
                    try:
                        self._modify(subscriber, subscription, ack_ids, self.lease_seconds)
                    except Exception as e:  # tried again next tick, well before the lease ends
                        log.warning(
                            "notification lease extension failed",
                            extra={"subscription": subscription, "ack_ids": len(ack_ids), "error": str(e)[:300]},
                        )
        finally:
            subscriber.close()

    def _modify(self, subscriber, subscription: str, ack_ids: list[str], seconds: int) -> None:
        for start in range(0, len(ack_ids), ACK_IDS_PER_REQUEST):
            subscriber.modify_ack_deadline(
                request={
                    "subscription": subscription,
                    "ack_ids": ack_ids[start : start + ACK_IDS_PER_REQUEST],
                    "ack_deadline_seconds": seconds,
                },
                **cloud.pubsub_call_bounds(self.call_timeout_seconds),
            )
            if seconds:
                self.extensions += 1


# The keepers of this process, by run id (a process may run several pipelines in turn).
_keepers: dict[str, LeaseKeeper] = {}
_keepers_lock = threading.Lock()


def keeper(run_id: str, lease_seconds: int, deadline: float, call_timeout_seconds: float = 30) -> LeaseKeeper:
    with _keepers_lock:
        if run_id not in _keepers:
            _keepers[run_id] = LeaseKeeper(
                lease_seconds, deadline, cloud.pubsub_subscriber, call_timeout_seconds=call_timeout_seconds
            )
        return _keepers[run_id]


def existing(run_id: str) -> LeaseKeeper | None:
    with _keepers_lock:
        return _keepers.get(run_id)


def end(run_id: str) -> int:
    """The run is over, whichever way (the local driver): stop its keeper and end the leases of
    what it did not acknowledge. Returns how many leases were ended early."""
    with _keepers_lock:
        keeper_ = _keepers.pop(run_id, None)
    return keeper_.release() if keeper_ else 0
