"""Benchmark of the dashboard's API: page 1,000 against page 1, a filtered page, CSV exports, figures.

Run through `make bench-dashboard` (it starts the stack). A MongoDB database of
its own (dropped at the end) gets 200,000 sites of one project, 50,000 of a
second and 10,000 each of two more, as the pipelines write them
(tests/integration/dashboard_seed.py), and a year of figures for the large
project. The dashboard function is served by the stack's own command on a free
port (one gunicorn worker, so its memory is one process's) against that
database. It prints, as they came out:

- the latency of page 1 and of page 1,000 (limit 50: after 49,950 sites) of
  the large project, and their ratio (target at most 1.3); page 1,000's cursor
  is the one the API returns for that place (made from the seeded order);
- a filtered page (status and q);
- each CSV export's rows per second and the worker's peak RSS, for 50,000 and
  200,000 rows (flat memory: the two peaks about equal);
- the figures endpoint, 30 days and 366 days.

The local MongoDB stand-in sorts in memory where MongoDB walks the index in
order (README, Dashboard): read the figures with that in mind.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import requests

from telemetry.analytics import metrics, serving
from telemetry.common import config, mongo
from telemetry.dashboard import keys, paging
from telemetry.local import stack
from telemetry.pipelines import site_state

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the seed documents of the integration tests (tests/ is not installed)

from tests.integration.dashboard_seed import BASE_TIME, new_project, site_doc  # noqa: E402

TARGET_RATIO = 1.3
LIMIT = 50
PAGE = 1000
PROJECT_SIZES = (200_000, 50_000, 10_000, 10_000)
BATCH = 5_000


def load(db, size: int, offset: int) -> str:
    """A project of `size` sites; every eighth deactivated, the time one second apart per site."""
    project_hash = new_project(db, f"Bench {size}")
    for start in range(0, size, BATCH):
        db[site_state.SITES].insert_many(
            [
                site_doc(
                    project_hash,
                    offset + i,
                    last_seen=BASE_TIME + timedelta(seconds=i),
                    status="deactivated" if i % 8 == 0 else "active",
                    plugins=[],
                )
                for i in range(start, min(start + BATCH, size))
            ],
            ordered=False,
        )
    return project_hash


def load_figures(db, project_hash: str, days: int) -> None:
    first = datetime.now(UTC).date() - timedelta(days=days - 1)
    docs = []
    for n in range(days):
        day = (first + timedelta(days=n)).strftime(metrics.DAY_FORMAT)
        for metric in metrics.METRICS:
            doc = {"hash": project_hash, "metric": metric.name, "day": day}
            if metric.kind is metrics.Kind.SCALAR:
                doc["value"] = 1000 + n
            else:
                doc["breakdown"] = {f"label {i}": 100 - i for i in range(20)}
            docs.append(doc)
    db[metrics.COLLECTION].insert_many(docs)


@contextmanager
def serve(database: str) -> Iterator[tuple[str, int]]:
    """The stack's dashboard command on a free port, one worker, against `database`: (base URL, worker pid)."""
    with socket.socket() as sock:
        sock.bind((stack.HOST, 0))
        port = sock.getsockname()[1]
    url = f"http://{stack.HOST}:{port}"
    command = stack.dashboard_command()
    command[command.index("--bind") + 1] = f"{stack.HOST}:{port}"
    log_path = stack.LOG_DIR / "bench-dashboard.log"
    # SecantusDB sorts a page's whole range in memory (see above): a page of the large project
    # can take longer than a production-sized MONGODB_TIMEOUT_SECONDS here.
    env = {**os.environ, "MONGODB_DB": database, "INGEST_THREADS": "4", "MONGODB_TIMEOUT_SECONDS": "900"}
    command[command.index("--workers") + 1] = "1"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while not stack.http_ok(f"{url}/v1/openapi.json"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the benchmark's dashboard did not start; see {log_path}")
            time.sleep(0.2)
        (worker,) = psutil.Process(server.pid).children()
        yield url, worker.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def timed(url: str, key: str, rounds: int, **params) -> tuple[float, dict]:
    """Median seconds of `rounds` GETs, and the last answer's body."""
    seconds, body = [], {}
    for _ in range(rounds):
        started = time.perf_counter()
        response = requests.get(url, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=1800)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
        body = response.json()
    return statistics.median(seconds), body


def export(url: str, key: str, worker: int) -> tuple[int, float, int, int]:
    """(rows, seconds, RSS before, peak RSS during) of one CSV download, the worker sampled every 20 ms."""
    process = psutil.Process(worker)
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    rows = 0
    with requests.get(url, headers={"Authorization": f"Bearer {key}"}, stream=True, timeout=1800) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            rows += bool(line)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return rows - 1, seconds, before, peak[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="requests per latency figure (the median is printed)")
    args = parser.parse_args()

    database = f"bench_dashboard_{uuid.uuid4().hex[:8]}"
    db = mongo.database(config.require("MONGODB_URI"), database, timeout_seconds=600)
    try:
        site_state.ensure_indexes(db)
        serving.ensure_indexes(db)
        keys.ensure_indexes(db)
        started = time.perf_counter()
        projects, offset = [], 0
        for size in PROJECT_SIZES:
            projects.append(load(db, size, offset))
            offset += size
        big, medium = projects[0], projects[1]
        load_figures(db, big, 366)
        sizes = ", ".join(f"{s:,}" for s in PROJECT_SIZES)
        seconds = time.perf_counter() - started
        print(f"loaded {sum(PROJECT_SIZES):,} sites in {len(PROJECT_SIZES)} projects ({sizes}) in {seconds:.0f} s")
        big_key, medium_key = keys.create(db, big).key, keys.create(db, medium).key

        with serve(database) as (url, worker):
            sites = f"{url}/v1/projects/{big}/sites"
            timed(f"{url}/v1/projects/{big}/figures", big_key, 1)  # warm: the first request opens the pool
            first, body = timed(sites, big_key, args.rounds, limit=LIMIT)
            assert len(body["items"]) == LIMIT
            # Page 1,000 starts after item 49,950 of (last_seen desc, url): site 200,000 - 49,950.
            index = PROJECT_SIZES[0] - (PAGE - 1) * LIMIT
            position = paging.Position(
                "sites", BASE_TIME + timedelta(seconds=index), f"https://site-{index:06d}.example.org"
            )
            thousandth, body = timed(sites, big_key, args.rounds, limit=LIMIT, cursor=paging.encode(position))
            assert body["items"][0]["url"] == f"https://site-{index - 1:06d}.example.org", body["items"][0]
            print(f"page 1:     {first * 1000:8.1f} ms (median of {args.rounds})", flush=True)
            print(f"page 1,000: {thousandth * 1000:8.1f} ms (median of {args.rounds})", flush=True)
            ratio = thousandth / first
            print(f"ratio page 1,000 / page 1: {ratio:.2f} (target <= {TARGET_RATIO})")
            filtered, body = timed(sites, big_key, args.rounds, limit=LIMIT, status="deactivated", q="site-0001")
            print(f"filtered page (status=deactivated, q=site-0001): {filtered * 1000:.1f} ms, "
                  f"{len(body['items'])} items")  # fmt: skip

            for project_hash, key, size in ((medium, medium_key, PROJECT_SIZES[1]), (big, big_key, PROJECT_SIZES[0])):
                rows, seconds, before, peak = export(f"{url}/v1/projects/{project_hash}/sites.csv", key, worker)
                assert rows == size, (rows, size)
                memory = f"worker RSS {before / 2**20:.0f} MiB before, peak {peak / 2**20:.0f} MiB"
                print(f"sites.csv {rows:,} rows: {seconds:.1f} s, {rows / seconds:,.0f} rows/s, {memory}", flush=True)

            figures = f"{url}/v1/projects/{big}/figures"
            month, body = timed(figures, big_key, args.rounds)
            print(f"figures, 30 days (default): {month * 1000:.1f} ms, {len(body['items'])} documents")
            today = datetime.now(UTC).date()
            year, body = timed(
                figures, big_key, args.rounds, **{"from": str(today - timedelta(days=365)), "to": str(today)}
            )
            print(f"figures, 366 days: {year * 1000:.1f} ms, {len(body['items'])} documents")
        return 0
    finally:
        db.client.drop_database(database)
        db.client.close()


if __name__ == "__main__":
    sys.exit(main())
