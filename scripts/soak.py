"""Conservation at scale: a steady load on the local stack while the pipelines run, then a count.

Run through `make soak` (a stack of its own in .local/soak, wiped first); SOAK_SECONDS
(default 600) and SOAK_RATE (pings a second, default 150) set the load; SOAK_SECONDS=60
is the quick mode for development.

1. Adds three soak projects to MongoDB `projects` (a fourth hash stays unknown).
2. Pre-generates the whole schedule: for each request its route, expected class and
   body (a pool of PHP-encoded bodies per site, so the sender only picks bytes):
   track 68 %, deactivate 10 %, tracking-skipped 16 % (all "history"); 1 % track
   pings of the unknown project, accepted by ingest and rejected by the pipeline
   ("rejected"); 5 % malformed, each carrying the marker `soak-refused` ("refused":
   4xx expected).
3. Sends it open loop: request i leaves at start + i/rate whatever the answers
   before it (asyncio + aiohttp, a connection pool of MAX_IN_FLIGHT), recording
   per request the route, expected class, status and the returned ping id.
4. Meanwhile a thread runs both pipelines in notification mode, each in a child
   process (its own process group), one cycle every PIPELINE_INTERVAL seconds, with
   --lease_seconds 30. The tracking run of cycle KILL_CYCLE is SIGKILLed midway
   (a third of the previous tracking run's duration after it starts; if it ends
   first, the next cycle's); the leases of its
   notifications lapse and a later run processes them. After the traffic the cycles
   go on until one reads nothing (the final drain).
5. The closing report: sent, answers, stored objects (the bucket listing), history
   rows, rejected rows, duplicates; then the checks (exit 1 if one fails):
   every stored object and every 2xx ping id is in exactly one of its route's
   history table or `rejected`, in the class expected; no object or row carries a
   refused ping's marker and the bucket holds no object that no 2xx answered for;
   MongoDB `sites` (and `deactivations`) hold each site's latest accepted ping.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psutil

from telemetry.common import cloud, config, mongo, progress, stored_ping
from telemetry.common.projects import project_document, save_project
from telemetry.local import stack
from telemetry.local.samples import (
    deactivate_payload,
    http_build_query,
    project_hash,
    track_payload,
    tracking_skipped_payload,
)

SEED = 4242
FORM = "application/x-www-form-urlencoded; charset=UTF-8"
PROJECTS = [("Soak SEO", "plugin"), ("Soak Forms", "plugin"), ("Soak Theme", "theme")]
UNKNOWN_PROJECT = project_hash("soak-unknown-project")
SITES_PER_PROJECT = 400
MARKER = "soak-refused"
# Shares of the schedule: (kind, route, expected class, weight)
MIX = [
    ("track", "track", "history", 68),
    ("deactivate", "deactivate", "history", 10),
    ("skipped", "tracking-skipped", "history", 16),
    ("unknown", "track", "rejected", 1),
    ("malformed", None, "refused", 5),
]
MAX_IN_FLIGHT = 256
REQUEST_TIMEOUT_SECONDS = 60
PIPELINES = ("tracking", "deactivation")
LEASE_SECONDS = 30
KILL_CYCLE = 3  # 1-based: the tracking run of this cycle is killed midway
OBJECTS_READ = re.compile(r"objects read (\d+)")
DUPLICATES = re.compile(r"duplicates skipped (\d+)")


@dataclass
class Request:
    route: str
    expected: str  # history | rejected | refused
    body: bytes
    content_type: str
    site: tuple[str, str] | None  # (hash, url) of a track/deactivate ping of a known project


@dataclass
class Outcome:
    status: int = 0  # 0: no answer (connection error or timeout)
    ping_id: str | None = None
    latency: float = 0.0
    error: str | None = None


# --- The schedule --------------------------------------------------------------------------


def malformed(n: int, rng: random.Random, known: str) -> tuple[str, bytes, str]:
    """A request ingest must refuse (4xx), carrying the marker; (route, body, content type)."""
    url = f"https://r{n}.{MARKER}.example.org"
    kind = n % 6
    if kind == 0:  # 400 missing_hash
        return "track", http_build_query({"url": url, "site": MARKER}).encode(), FORM
    if kind == 1:  # 400 invalid_url
        return "track", http_build_query({"hash": known, "url": f"{MARKER}-{n}"}).encode(), FORM
    if kind == 2:  # 400 forbidden_key
        body = http_build_query({"hash": known, "url": url, "extra": {"$where": "1"}})
        return "deactivate", body.encode(), FORM
    if kind == 3:  # 400 invalid_json
        return "tracking-skipped", f'{{"hash": "{known}", "note": "{MARKER}-{n}"'.encode(), "application/json"
    if kind == 4:  # 400 invalid_hash
        return "tracking-skipped", http_build_query({"hash": f"{MARKER} {n}!"}).encode(), FORM
    return "track", http_build_query({"hash": known, "url": url}).encode(), "text/plain"  # 415


def schedule(count: int, hashes: list[str]) -> list[Request]:
    rng = random.Random(SEED)
    sites = [(h, i) for h in hashes for i in range(SITES_PER_PROJECT)]
    track = [http_build_query(track_payload(rng, h, i)).encode() for h, i in sites]
    deactivate = [http_build_query(deactivate_payload(rng, h, i)).encode() for h, i in sites]
    unknown = [http_build_query(track_payload(rng, UNKNOWN_PROJECT, i)).encode() for i in range(50)]
    skipped = [http_build_query(tracking_skipped_payload(rng, h)).encode() for h in hashes for _ in range(4)]
    kinds, weights = [m[0] for m in MIX], [m[3] for m in MIX]
    by_kind = {m[0]: m for m in MIX}
    plan = []
    for n in range(count):
        kind = rng.choices(kinds, weights)[0]
        _, route, expected, _ = by_kind[kind]
        if kind in ("track", "deactivate"):
            s = rng.randrange(len(sites))
            body = (track if kind == "track" else deactivate)[s]
            site = (sites[s][0], f"https://site-{sites[s][1]}.example.org")
            plan.append(Request(route, expected, body, FORM, site))
        elif kind == "skipped":
            plan.append(Request(route, expected, rng.choice(skipped), FORM, None))
        elif kind == "unknown":
            plan.append(Request(route, expected, rng.choice(unknown), FORM, None))
        else:
            route, body, content_type = malformed(n, rng, hashes[0])
            plan.append(Request(route, expected, body, content_type, None))
    return plan


# --- The open-loop sender ------------------------------------------------------------------


@dataclass
class SendStats:
    started: float = 0.0
    dispatched_until: float = 0.0  # when the last request was dispatched
    finished: float = 0.0
    max_lag: float = 0.0  # latest a request left after its due time
    max_in_flight: int = 0


async def _send(plan: list[Request], rate: float, ingest_url: str) -> tuple[list[Outcome], SendStats]:
    outcomes = [Outcome() for _ in plan]
    stats = SendStats()
    in_flight = 0
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)

    async def one(session: aiohttp.ClientSession, i: int, request: Request) -> None:
        nonlocal in_flight
        in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, in_flight)
        outcome = outcomes[i]
        began = time.monotonic()
        try:
            async with session.post(
                ingest_url + request.route, data=request.body, headers={"Content-Type": request.content_type}
            ) as response:
                outcome.status = response.status
                text = await response.text()
                if 200 <= response.status < 300:
                    outcome.ping_id = json.loads(text).get("id")
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            outcome.error = type(e).__name__
        finally:
            outcome.latency = time.monotonic() - began
            in_flight -= 1

    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        stats.started = start = loop.time()
        last_progress = start
        sent = progress.Progress("soak: sent", len(plan), "pings")
        for i, request in enumerate(plan):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            stats.max_lag = max(stats.max_lag, loop.time() - due)
            tasks.append(asyncio.create_task(one(session, i, request)))
            sent.update()
            if loop.time() - last_progress >= 60:
                last_progress = loop.time()
                done = sum(1 for o in outcomes[:i] if o.status or o.error)
                sent.write(f"  [{last_progress - start:4.0f} s] sent {i + 1}, answered {done}, in flight {in_flight}")
        sent.close()
        stats.dispatched_until = loop.time()
        await asyncio.gather(*tasks)
        stats.finished = loop.time()
    for attribute in ("dispatched_until", "finished"):
        setattr(stats, attribute, getattr(stats, attribute) - start)
    return outcomes, stats


# --- Where the CPU went ----------------------------------------------------------------------

# The stack's services whose process group holds a limits proxy and the emulator behind it.
BEHIND_LIMITS_PROXY = {"gcs": "fake-gcs-server", "bigquery": "bqemulator"}
LIMITS_PROXY_MODULE = "telemetry.local.limits"


def stack_cpu_seconds() -> dict[tuple[str, int, float], float]:
    """User+system CPU seconds so far of each process of the stack's services, keyed by
    (component, pid, start time): a limits proxy apart from the emulator behind it."""
    seconds = {}
    for service in stack.SERVICES:
        try:
            leader = psutil.Process(int(service.pid_file.read_text().split()[0]))
            processes = [leader, *leader.children(recursive=True)]
        except (OSError, ValueError, psutil.Error):
            continue  # not running
        for process in processes:
            try:
                component = service.name
                if service.name in BEHIND_LIMITS_PROXY:
                    is_proxy = LIMITS_PROXY_MODULE in " ".join(process.cmdline())
                    component = f"{service.name} limits proxy" if is_proxy else BEHIND_LIMITS_PROXY[service.name]
                times = process.cpu_times()
                seconds[(component, process.pid, process.create_time())] = times.user + times.system
            except psutil.Error:
                continue
    return seconds


def cpu_between(before: dict[tuple[str, int, float], float], after: dict[tuple[str, int, float], float]) -> Counter:
    """CPU seconds per component between two `stack_cpu_seconds` (a process that started in
    between counts from zero; one that ended in between is missing: the pipelines' children)."""
    spent = Counter()
    for key, total in after.items():
        spent[key[0]] += total - before.get(key, 0.0)
    return spent


# --- The pipelines, in child processes -----------------------------------------------------


@dataclass
class Run:
    cycle: int
    pipeline: str
    started: float  # seconds since the soak started
    seconds: float = 0.0
    returncode: int | None = None
    killed_after: float | None = None
    objects_read: int = 0
    duplicates: int = 0
    report: str = ""


@dataclass
class PipelineLoop:
    """Runs both pipelines every `interval` seconds until the traffic is over and a cycle reads nothing."""

    interval: float
    log_dir: Path
    t0: float
    traffic_done: threading.Event = field(default_factory=threading.Event)
    traffic_ended_at: float = 0.0
    runs: list[Run] = field(default_factory=list)
    killed_at: float | None = None
    # The traffic was over and the run due to be killed ended first: the drain's runs are
    # too short to be killed midway, so none will be (the closing check reports it).
    kill_missed: bool = False
    error: str | None = None

    def _child(self, cycle: int, name: str, kill_after: float | None) -> Run:
        run = Run(cycle, name, time.monotonic() - self.t0)
        log_path = self.log_dir / f"cycle{cycle:02d}-{name}.log"
        command = [sys.executable, "-m", "telemetry.pipelines.build", name, "--runner", "FnApiRunner"]
        command += ["--lease_seconds", str(LEASE_SECONDS)]
        with log_path.open("w") as log:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                run.returncode = child.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                run.returncode = child.wait()
                run.killed_after = kill_after
                self.killed_at = time.monotonic()
        run.seconds = time.monotonic() - self.t0 - run.started
        output = log_path.read_text(errors="replace")
        run.report = "\n".join(line for line in output.splitlines() if "objects read" in line or "pipeline:" in line)
        run.objects_read = sum(int(n) for n in OBJECTS_READ.findall(output))
        run.duplicates = sum(int(n) for n in DUPLICATES.findall(output))
        status = f"KILLED (SIGKILL) {kill_after:.0f} s after start" if run.killed_after else f"exit {run.returncode}"
        print(
            f"  [{run.started:4.0f} s] cycle {cycle} {name}: {status}, {run.seconds:.0f} s, "
            f"objects read {run.objects_read}, duplicates skipped {run.duplicates}",
            flush=True,
        )
        if run.returncode != 0 and not run.killed_after:
            self.error = f"cycle {cycle} {name} failed (exit {run.returncode}), see {log_path}"
            print(output[-3000:])
        self.runs.append(run)
        return run

    def run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # reported by the main thread
            self.error = f"pipeline loop: {e!r}"

    def _loop(self) -> None:
        cycle, kill_cycle = 0, KILL_CYCLE
        next_start = self.t0 + self.interval
        while self.error is None:
            # Every interval during the traffic; after it, at once (the final drain), once the
            # last notifications are out and the killed run's leases have lapsed.
            while not self.traffic_done.is_set() and time.monotonic() < next_start:
                self.traffic_done.wait(next_start - time.monotonic())
            if self.traffic_done.is_set():
                ready = self.traffic_ended_at + 5
                if self.killed_at is not None:
                    ready = max(ready, self.killed_at + LEASE_SECONDS + 5)
                time.sleep(max(0.0, ready - time.monotonic()))
            cycle += 1
            next_start = max(next_start + self.interval, time.monotonic())
            settled = self.traffic_done.is_set() and (self.killed_at is not None or self.kill_missed)
            read = 0
            for name in PIPELINES:
                kill_after = None
                if cycle == kill_cycle and name == "tracking":
                    previous = [r.seconds for r in self.runs if r.pipeline == "tracking" and not r.killed_after]
                    kill_after = max(5.0, (previous[-1] if previous else 20.0) / 3)
                run = self._child(cycle, name, kill_after)
                read += run.objects_read
                if kill_after and not run.killed_after:  # it finished first
                    if self.traffic_done.is_set():
                        self.kill_missed = True  # (moving the kill on would make the drain endless)
                    else:
                        kill_cycle += 1  # kill the next one
            if settled and read == 0:
                return
            if self.traffic_done.is_set() and cycle > kill_cycle + 30:
                self.error = "the final drain did not end after 30 cycles"


# --- The count -----------------------------------------------------------------------------


def ping_id_of(object_name: str) -> str:
    return object_name.rsplit("/", 1)[-1].removesuffix(".json")


def list_objects(project: str, bucket: str) -> dict[str, str]:
    """ping id -> object name, for every ping object in the bucket."""
    client = cloud.storage_client(project)
    names = {}
    for route in ("track", "deactivate", "tracking-skipped"):
        for blob in client.bucket(bucket).list_blobs(
            prefix=f"{route}/", page_size=stored_ping.LIST_PAGE_SIZE, fields="items(name),nextPageToken"
        ):
            names[ping_id_of(blob.name)] = blob.name
    return names


def query(bq, sql: str) -> list[dict]:
    return [dict(row.items()) for row in bq.query(sql).result(page_size=10_000)]


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def close(plan: list[Request], outcomes: list[Outcome], loop: PipelineLoop) -> int:
    project, bucket, dataset = (config.require(n) for n in ("GCP_PROJECT", "TRACKING_BUCKET", "BQ_DATASET"))
    db = mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))
    bq = cloud.bigquery_client(project)
    table = f"`{project}.{dataset}.%s`"
    history_table = {"track": "sites", "deactivate": "deactivations", "tracking-skipped": "tracking_skipped"}

    started = time.monotonic()
    objects = list_objects(project, bucket)
    history = {
        name: query(
            bq,
            f"SELECT ping_id, received_at{', hash, url' if name != 'tracking_skipped' else ', hash'} "
            f"FROM {table % name}",
        )
        for name in ("sites", "deactivations", "tracking_skipped")
    }
    rejected = query(bq, f"SELECT source, route, reason, hash, payload FROM {table % 'rejected'}")
    print(f"  (counted in {time.monotonic() - started:.0f} s)")

    statuses = Counter()
    for o in outcomes:
        statuses["2xx" if 200 <= o.status < 300 else "4xx" if 400 <= o.status < 500 else "other"] += 1
    rows_per_id = {name: Counter(r["ping_id"] for r in rows) for name, rows in history.items()}
    rejected_per_id = Counter(ping_id_of(r["source"]) for r in rejected)
    duplicates = {name: sum(1 for n in c.values() if n > 1) for name, c in rows_per_id.items()}
    duplicates["rejected"] = sum(1 for n in rejected_per_id.values() if n > 1)

    print("\nclosing report")
    print(f"  sent {len(plan)}; answered 2xx {statuses['2xx']}, 4xx {statuses['4xx']}, other {statuses['other']}")
    others = Counter((o.status, o.error) for o in outcomes if not (200 <= o.status < 300 or 400 <= o.status < 500))
    if others:
        print(f"  other answers: {dict(others)}")
    print(f"  stored objects {len(objects)}")
    print("  history rows " + ", ".join(f"{name} {len(rows)}" for name, rows in history.items()))
    reasons = Counter(r["reason"] for r in rejected)
    print(f"  rejected rows {len(rejected)} ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})")
    print("  duplicates " + ", ".join(f"{name} {n}" for name, n in duplicates.items()))

    failures: list[str] = []
    route_of_id = {pid: stored_ping.route_of(name) for pid, name in objects.items()}
    accepted = {}  # ping id -> request index
    for i, o in enumerate(outcomes):
        if o.ping_id:
            accepted[o.ping_id] = i
            route_of_id.setdefault(o.ping_id, plan[i].route)
    lost, duplicated, misclassified = [], [], []
    for pid, route in route_of_id.items():
        in_history = rows_per_id[history_table[route]].get(pid, 0)
        in_rejected = rejected_per_id.get(pid, 0)
        if in_history + in_rejected == 0:
            lost.append(pid)
        elif in_history + in_rejected > 1:
            duplicated.append(pid)
        elif pid in accepted and plan[accepted[pid]].expected != ("history" if in_history else "rejected"):
            misclassified.append(pid)
    not_stored = [pid for pid in accepted if pid not in objects]
    unanswered_objects = [pid for pid in objects if pid not in accepted]
    expected_2xx = sum(1 for r in plan if r.expected != "refused")
    wrong_answers = Counter(
        (r.expected, o.status)
        for r, o in zip(plan, outcomes, strict=True)
        if (r.expected == "refused") != (400 <= o.status < 500)
    )

    def check(ok: bool, text: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")
        if not ok:
            failures.append(text)

    print("\nchecks")
    check(
        not wrong_answers,
        f"answers as expected: {expected_2xx} valid sent, 4xx exactly for the malformed "
        f"{len(plan) - expected_2xx}" + (f"; unexpected {dict(wrong_answers)}" if wrong_answers else ""),
    )
    check(
        not lost and not duplicated,
        f"every stored object / 2xx ping in exactly one of history or rejected "
        f"({len(route_of_id)} ids): lost {len(lost)}, duplicated {len(duplicated)}",
    )
    check(not misclassified, f"each where expected (history or rejected): misplaced {len(misclassified)}")
    check(not any(duplicates.values()), "no rows per ping_id > 1 in any history table, no rejected source > 1")
    check(not not_stored, f"every 2xx ping id is a stored object: missing {len(not_stored)}")

    marked = [r for rows in history.values() for r in rows if MARKER in (r.get("url") or "") + (r.get("hash") or "")]
    marked += [r for r in rejected if MARKER in (r["payload"] or "") + (r["source"] or "") + (r["hash"] or "")]
    marked_mongo = sum(db[c].count_documents({"url": {"$regex": MARKER}}) for c in ("sites", "deactivations"))
    check(
        not unanswered_objects and not marked and not marked_mongo,
        f"no refused ping anywhere: objects without a 2xx {len(unanswered_objects)}, "
        f"marked rows {len(marked)}, marked MongoDB documents {marked_mongo}",
    )

    # Latest state: for each site, the newest of its accepted pings by (received_at, ping_id).
    received = {r["ping_id"]: as_utc(r["received_at"]) for rows in history.values() for r in rows}
    latest_site, latest_deactivation = {}, {}
    for pid, i in accepted.items():
        request = plan[i]
        if request.site is None or request.expected != "history" or pid not in received:
            continue
        key = (received[pid], pid)
        latest_site[request.site] = max(latest_site.get(request.site, key), key)
        if request.route == "deactivate":
            latest_deactivation[request.site] = max(latest_deactivation.get(request.site, key), key)
    stale = 0
    for collection, latest in (("sites", latest_site), ("deactivations", latest_deactivation)):
        docs = {
            (d["hash"], d["url"]): d
            for d in db[collection].find({}, {"hash": 1, "url": 1, "ping_id": 1, "received_at": 1})
        }
        wrong = [
            site
            for site, (at, pid) in latest.items()
            if site not in docs
            or docs[site].get("ping_id") != pid
            or abs((as_utc(docs[site]["received_at"]) - at).total_seconds()) > 0.001
        ]
        extra = [site for site in docs if site not in latest]
        stale += len(wrong) + len(extra)
        check(
            not wrong and not extra,
            f"MongoDB {collection}: {len(latest)} sites, each at its latest accepted "
            f"ping: wrong {len(wrong)}, unexpected {len(extra)}",
        )
    if loop.error:
        check(False, loop.error)
    killed = [r for r in loop.runs if r.killed_after]
    check(
        bool(killed),
        f"a pipeline run was killed midway: {len(killed)}"
        + (" (the run due to be killed, in the final drain, ended first)" if loop.kill_missed else ""),
    )
    db.client.close()

    print(
        f"\nlost {len(lost) + len(not_stored)}, duplicated {len(duplicated) + sum(duplicates.values())}"
        + (f", stale sites {stale}" if stale else "")
    )
    return 1 if failures else 0


# --- Main ----------------------------------------------------------------------------------


def main() -> int:
    progress.keep_lines()  # `make soak` quiets the logs (LOG_LEVEL=WARNING), not its progress
    seconds, rate = config.get_int("SOAK_SECONDS"), config.get_int("SOAK_RATE")
    ingest_url = config.require("INGEST_URL")
    interval = min(120.0, max(10.0, seconds / 5))
    db = mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))
    hashes = [project_hash(f"soak-{name}") for name, _ in PROJECTS]
    for (name, kind), h in zip(PROJECTS, hashes, strict=True):
        save_project(db, project_document(hash=h, name=name, type=kind, custom_fields=["license_type"]))
    db.client.close()
    started = time.monotonic()
    plan = schedule(seconds * rate, hashes)
    sizes = sorted(len(r.body) for r in plan)
    print(
        f"soak: {seconds} s at {rate} pings/s = {len(plan)} requests to {ingest_url}; "
        f"mix {', '.join(f'{m[0]} {m[3]}%' for m in MIX)}; bodies {sizes[len(sizes) // 2]} B median "
        f"(generated in {time.monotonic() - started:.1f} s)"
    )
    print(
        f"pipelines: both every {interval:.0f} s in child processes, --lease_seconds {LEASE_SECONDS}; "
        f"the tracking run of cycle {KILL_CYCLE} is SIGKILLed midway",
        flush=True,
    )

    log_dir = stack.LOCAL / "soak-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    loop = PipelineLoop(interval, log_dir, t0)
    thread = threading.Thread(target=loop.run, name="pipelines", daemon=True)
    thread.start()
    cpu_before, children_before = stack_cpu_seconds(), os.times()
    outcomes, stats = asyncio.run(_send(plan, rate, ingest_url))
    loop.traffic_ended_at = time.monotonic()
    spent, children_after = cpu_between(cpu_before, stack_cpu_seconds()), os.times()
    spent["pipeline runs that ended"] = (
        children_after.children_user
        + children_after.children_system
        - children_before.children_user
        - children_before.children_system
    )
    spent["sender"] = children_after.user + children_after.system - children_before.user - children_before.system
    loop.traffic_done.set()
    latencies = sorted(o.latency for o in outcomes)
    answered = [o for o in outcomes if o.status]
    print(
        f"traffic: {len(plan)} sent in {stats.dispatched_until:.1f} s = {len(plan) / stats.dispatched_until:.1f}/s "
        f"(target {rate}/s; latest dispatch {stats.max_lag * 1000:.0f} ms behind schedule), all answered after "
        f"{stats.finished:.1f} s = {len(answered) / stats.finished:.1f} answers/s; latency p50 "
        f"{latencies[len(latencies) // 2] * 1000:.0f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms; at most {stats.max_in_flight} in flight",
        flush=True,
    )
    print(
        "CPU seconds during the traffic: "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in spent.most_common())
        + f" (the machine's {psutil.cpu_count()} cores had {psutil.cpu_count() * stats.finished:.0f})",
        flush=True,
    )
    print("final drain: pipeline cycles until one reads nothing", flush=True)
    thread.join()
    runs = loop.runs
    killed = next((r for r in runs if r.killed_after), None)
    if killed:
        after = next((r for r in runs if r.pipeline == "tracking" and r.started > killed.started), None)
        print(
            f"kill: cycle {killed.cycle} tracking run SIGKILLed {killed.killed_after:.0f} s after its start; "
            f"the next tracking run (cycle {after.cycle if after else '-'}) read "
            f"{after.objects_read if after else '-'} objects, duplicates skipped {after.duplicates if after else '-'}"
        )
    print(
        f"pipeline runs: {len(runs)} in {len({r.cycle for r in runs})} cycles, total "
        f"{time.monotonic() - t0:.0f} s since the traffic started"
    )
    return close(plan, outcomes, loop)


if __name__ == "__main__":
    sys.exit(main())
