"""Delivery of what the outbox holds: each due delivery tried once per run, projects in parallel.

Isolation between projects (a receiver that answers slowly or not at all delays
no other project):
- every try is bounded (NOTIFY_CONNECT_TIMEOUT_SECONDS, NOTIFY_READ_TIMEOUT_SECONDS;
  a webhook answer's body is read to at most webhooks.MAX_ANSWER_BYTES);
- at most NOTIFY_PROJECT_CONCURRENCY tries of one project are in flight, out of
  NOTIFY_WORKERS threads, and projects take turns: a slow project holds its own
  few threads, every other project keeps the rest;
- no try starts after NOTIFY_RUN_BUDGET_SECONDS: what is left stays due for the next run.

Every state change goes through telemetry/notify/outbox.py (claim, finish, cancel).
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

from telemetry.common import projects, webhook_secrets
from telemetry.common.logs import get_logger
from telemetry.notify import events, mailer, outbox, webhooks
from telemetry.notify.contract import Renderer
from telemetry.notify.settings import NotifySettings

log = get_logger(__name__)

MAX_DUE_PER_RUN = 20_000  # deliveries one run looks at; the rest wait for the next run (oldest first)

Clock = Callable[[], datetime]


def try_once(
    db: Any,
    delivery: Mapping[str, Any],
    known: Mapping[str, Mapping[str, Any]],
    renderers: Mapping[str, Renderer],
    settings: NotifySettings,
    clock: Clock,
    rng: random.Random,
) -> str:
    """Claim one delivery, try it, record the outcome; returns its new status ("" when not claimed)."""
    claimed = outbox.claim(db, delivery["_id"], clock())
    if claimed is None:
        return ""  # another run took it, or it is no longer due
    event = outbox.event_of(db, claimed["event_id"])
    project = known.get(claimed["project"])
    channel, target = claimed["channel"], claimed["target"]
    if event is None or project is None:
        return outbox.cancel(db, claimed, "the project no longer exists", clock())
    if channel == outbox.EMAIL:
        if target not in projects.alert_recipients(project):
            return outbox.cancel(db, claimed, "the recipient was removed from the project's alerts", clock())
    else:
        endpoint = projects.webhook_endpoint(project, target)
        if endpoint is None or events.subscription(event.type) not in endpoint[projects.WEBHOOK_EVENTS]:
            return outbox.cancel(db, claimed, "the webhook endpoint was removed or unsubscribed", clock())
    try:
        if channel == outbox.EMAIL:
            content = renderers[event.type](event, project)
            mail = mailer.message(event, target, content, settings.smtp.sender)
            outcome = mailer.send(mail, target, settings.smtp, settings.connect_timeout, settings.read_timeout)
        else:
            outcome = _post(db, claimed["project"], endpoint, event, settings, clock)
    except Exception as e:
        # A renderer's bug, or a failure the senders did not foresee: a failed try like any other,
        # retried and then set aside with this reason, never a claim that lapses for ever.
        log.exception("notify delivery raised", extra={"delivery": claimed["_id"]})
        outcome = outbox.Outcome(False, error=f"{type(e).__name__}: {e}")
    status = outbox.finish(
        db, claimed, outcome, clock(), settings.retry_first, settings.retry_max, settings.retry_window, rng
    )
    if status == outbox.SET_ASIDE:
        log.warning(
            "notify delivery set aside",
            extra={
                "counter": "notify_deliveries_set_aside",
                "delivery": claimed["_id"],
                "project": claimed["project"],
                "channel": channel,
                "event_type": claimed["type"],
                "attempts": claimed["attempts"],
                "last_status": outcome.status,
                "reason": outcome.error,
            },
        )
    elif not outcome.ok:
        log.info(
            "notify delivery failed, retried later",
            extra={"delivery": claimed["_id"], "project": claimed["project"], "status": outcome.status,
                   "error": outcome.error, "attempts": claimed["attempts"]},
        )  # fmt: skip
    return status


def _post(
    db: Any, project_hash: str, endpoint: Mapping[str, Any], event: events.Event, settings: NotifySettings, clock: Clock
) -> outbox.Outcome:
    """One webhook try, signed with the endpoint's secrets from `webhook_secrets` (the rotated
    one too while its grace lasts at the run's clock). An endpoint without a secret document
    is never posted to: a failed try, retried (`telemetry-admin webhook migrate-secrets` may
    be under way) and set aside with this reason after the retry window."""
    held = webhook_secrets.load(db, project_hash, endpoint[projects.WEBHOOK_ID])
    if held is None:
        return outbox.Outcome(
            False,
            error=f"no signing secret for webhook {endpoint[projects.WEBHOOK_ID]} in "
            f"{webhook_secrets.WEBHOOK_SECRETS} (telemetry-admin webhook migrate-secrets); not posted",
        )
    return webhooks.deliver(event, endpoint, webhook_secrets.signing_secrets(held, clock()), settings)


def deliver_due(
    db: Any,
    known: Mapping[str, Mapping[str, Any]],
    renderers: Mapping[str, Renderer],
    settings: NotifySettings,
    clock: Clock,
    rng: random.Random,
) -> Counter:
    """Try every delivery due now, within the run's budget; counts per outcome
    (`sent`, `pending` = failed and due again, `set_aside`, `cancelled`, `left` for the next run)."""
    deadline = time.monotonic() + settings.run_budget.total_seconds()
    queues: dict[str, deque] = {}
    for delivery in outbox.due(db, clock(), MAX_DUE_PER_RUN):
        queues.setdefault(delivery["project"], deque()).append(delivery)
    counts: Counter = Counter()
    in_flight: dict[Future, str] = {}
    per_project: Counter = Counter()
    with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="notify") as pool:
        while queues or in_flight:
            if time.monotonic() >= deadline:
                counts["left"] += sum(len(q) for q in queues.values())
                queues.clear()
            # Projects take turns: one try each per round, up to each project's cap.
            progressed = True
            while progressed and len(in_flight) < settings.workers:
                progressed = False
                for project in list(queues):
                    if len(in_flight) >= settings.workers:
                        break
                    if per_project[project] >= settings.project_concurrency:
                        continue
                    delivery = queues[project].popleft()
                    if not queues[project]:
                        del queues[project]
                    future = pool.submit(try_once, db, delivery, known, renderers, settings, clock, rng)
                    in_flight[future] = project
                    per_project[project] += 1
                    progressed = True
            if not in_flight:
                continue
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                project = in_flight.pop(future)
                per_project[project] -= 1
                try:
                    status = future.result()
                except Exception:
                    # A bug or a MongoDB failure: the claim lapses and the delivery is due again.
                    log.exception("notify delivery raised", extra={"project": project})
                    status = "error"
                counts[status or "taken_by_another_run"] += 1
    return counts
