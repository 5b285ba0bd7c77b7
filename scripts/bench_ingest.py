"""Load benchmark of the local `track` endpoint against a same-run storage baseline.

Run through `make bench-ingest` (it starts the stack). The benchmark starts its
own ingest server (the stack's command, on a free port) writing to a bucket of
its own, deleted afterwards, so it never adds pings to the product's bucket.
Both runs use wrk with
the same connections, threads, duration and the same realistic bodies:

- baseline: each body uploaded straight to fake-gcs-server's media-upload API;
- endpoint: each body posted to `$INGEST_URL/track`, which parses, validates
  and writes one object per ping to the same fake-gcs-server.

Storage is the limit for both, so the ratios say what the endpoint's own
work costs. The runs alternate (baseline, endpoint, floors, baseline, ...) and
each side's better run is kept, to damp a noisy machine.

CPU per accepted ping, the figure least disturbed by a shared machine: the
user+system CPU time of the ingest server's whole process tree (gunicorn
master and workers, read with psutil just before and after each run, once the
server is idle again) divided by the objects the run added to the bucket. The
floor is the same figure for scripts/bench_floor.py, a functions-framework
function that does nothing, served by the same gunicorn command through the
same gateway under the same wrk load, divided by its 2xx answers: what
gunicorn, werkzeug, Flask and functions-framework cost per request before any
of ingest's own work. A second floor adds one object write with ingest's own
writer, so the report splits a ping's CPU into the framework, the write (and
its wait mid-request), and ingest's own work.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

from telemetry.common import config
from telemetry.local import stack
from telemetry.local.samples import http_build_query, project_hash, track_payload

ROOT = stack.ROOT

TARGET_THROUGHPUT_RATIO = 0.7
TARGET_P99_RATIO = 1.5
TARGET_CPU_RATIO = 1.5  # CPU per accepted ping / the floor's CPU per request
# After wrk stops, requests still in flight finish; the server counts as idle once
# its tree uses less than this much CPU per poll.
IDLE_CPU_SECONDS = 0.01
IDLE_POLL_SECONDS = 0.25
IDLE_TIMEOUT_SECONDS = 10
# Between runs the machine counts as quiet below this CPU use (all cores, percent).
QUIET_CPU_PERCENT = 15

_LUA = """
bodies = {BODIES}
counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "CONTENT_TYPE"
request = function()
  counter = counter + 1
  local path = PATH_EXPR
  return wrk.format(nil, path, nil, bodies[(counter % #bodies) + 1])
end
"""


def _lua_script(bodies: list[str], content_type: str, path_expr: str) -> str:
    table = "{" + ",".join(f"[[{b}]]" for b in bodies) + "}"
    return _LUA.replace("{BODIES}", table).replace("CONTENT_TYPE", content_type).replace("PATH_EXPR", path_expr)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p99 in ms and non-2xx count from `wrk --latency` output."""
    figures = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)),
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)),
        "requests": float(re.search(r"(\d+) requests in", output).group(1)),
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    figures["non_2xx"] = float(bad.group(1)) if bad else 0.0
    figures["socket_errors"] = float(sum(int(g) for g in errors.groups())) if errors else 0.0
    return figures


def run_wrk(url: str, script: Path, connections: int, seconds: int, threads: int) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return parse_wrk(output)


def tree_cpu_seconds(pid: int) -> tuple[float, frozenset[int]]:
    """User+system CPU seconds of a process and all its descendants, and their pids."""
    root = psutil.Process(pid)
    total, pids = 0.0, set()
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
        pids.add(process.pid)
    return total, frozenset(pids)


def wait_idle(pid: int) -> None:
    """Until requests still in flight when wrk stopped are done (the tree's CPU stops moving)."""
    deadline = time.monotonic() + IDLE_TIMEOUT_SECONDS
    last, _ = tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(IDLE_POLL_SECONDS)
        now, _ = tree_cpu_seconds(pid)
        if now - last < IDLE_CPU_SECONDS:
            return
        last = now


def wait_machine_quiet() -> None:
    """Until the machine's CPU settles (at most IDLE_TIMEOUT_SECONDS): what one run leaves
    behind (fake-gcs-server still publishing its finalize notifications to the Pub/Sub
    emulator) must not slow the next run down."""
    deadline = time.monotonic() + IDLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline and psutil.cpu_percent(interval=IDLE_POLL_SECONDS) > QUIET_CPU_PERCENT:
        pass


def run_measured(
    url: str, script: Path, args: argparse.Namespace, server_pid: int, accepted: Callable[[dict[str, float]], int]
) -> dict[str, float]:
    """One wrk run plus the server tree's CPU seconds and CPU ms per accepted request.
    `accepted(figures)` counts what the run accepted (called before and after: it
    returns a running total, or the run's count when given the wrk figures)."""
    wait_idle(server_pid)
    wait_machine_quiet()
    before_count = accepted({})
    before_cpu, before_pids = tree_cpu_seconds(server_pid)
    figures = run_wrk(url, script, args.connections, args.seconds, args.threads)
    wait_idle(server_pid)
    after_cpu, after_pids = tree_cpu_seconds(server_pid)
    figures["accepted"] = float(accepted(figures) - before_count)
    figures["cpu_s"] = after_cpu - before_cpu
    figures["cpu_ms"] = 1000 * figures["cpu_s"] / figures["accepted"] if figures["accepted"] else float("nan")
    figures["restarted"] = float(before_pids != after_pids)  # a worker died: its CPU is lost
    return figures


def count_objects(folder: Path) -> int:
    """Objects under a prefix of a fake-gcs-server bucket (its filesystem backend: one file each)."""
    return sum(len(files) for _, _, files in os.walk(folder))


@contextmanager
def serve(app: str, bucket: str, log_name: str) -> Iterator[tuple[str, int]]:
    """The stack's ingest command serving `app` on a free port: (base URL, gunicorn master pid)."""
    port = _free_port()
    url = f"http://{stack.HOST}:{port}/"
    server_log = stack.LOG_DIR / log_name
    with open(server_log, "wb") as log:
        server = subprocess.Popen(
            stack.ingest_command(port, app=app),
            cwd=ROOT,
            env={**os.environ, "TRACKING_BUCKET": bucket},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not stack.http_ok(f"{url}track"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the benchmark's server for {app} did not start; see {server_log}")
            time.sleep(0.2)
        yield url, server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    # A fresh server keeps speeding up for several seconds (connection pools filling,
    # first-call paths): 2 s of warm-up left the first endpoint run at 2/3 of the second.
    parser.add_argument("--warmup", type=int, default=8, help="seconds of load on each server before measuring")
    parser.add_argument("--bodies", type=int, default=200)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk (make bench-ingest does this)", file=sys.stderr)
        return 1

    rng = random.Random(7)
    bodies = [http_build_query(track_payload(rng, project_hash("bench"), i)) for i in range(args.bodies)]
    storage_url = config.require("STORAGE_EMULATOR_HOST")
    bucket = f"{config.require('TRACKING_BUCKET')}-bench"
    stack.create_bucket(bucket)
    try:
        with ExitStack() as servers:
            ingest = servers.enter_context(serve("telemetry.local.gateway:app", bucket, "bench-ingest-server.log"))
            floor = servers.enter_context(
                serve("telemetry.local.gateway:floor_gateway()", bucket, "bench-floor-server.log")
            )
            store_floor = servers.enter_context(
                serve("telemetry.local.gateway:floor_gateway('store_only')", bucket, "bench-store-floor-server.log")
            )
            return _measure(args, bodies, storage_url, bucket, ingest, floor, store_floor)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        # Thousands of objects: dropping fake-gcs-server's folder beats deleting them one call at a time.
        shutil.rmtree(stack.GCS_ROOT / bucket, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((stack.HOST, 0))
        return sock.getsockname()[1]


def _measure(
    args: argparse.Namespace,
    bodies: list[str],
    storage_url: str,
    bucket: str,
    ingest: tuple[str, int],
    floor: tuple[str, int],
    store_floor: tuple[str, int],
) -> int:
    (ingest_url, ingest_pid), (floor_url, floor_pid), (store_url, store_pid) = ingest, floor, store_floor
    track_objects = stack.GCS_ROOT / bucket / "track"

    def stored(_figures: dict[str, float]) -> int:
        return count_objects(track_objects)

    def answered_2xx(figures: dict[str, float]) -> int:
        return int(figures["requests"] - figures["non_2xx"]) if figures else 0

    with tempfile.TemporaryDirectory() as tmp:
        baseline_lua = Path(tmp, "baseline.lua")
        baseline_lua.write_text(
            _lua_script(
                bodies,
                "application/json",
                f'"/upload/storage/v1/b/{bucket}/o?uploadType=media&ifGenerationMatch=0&name=bench-baseline/" '
                '.. math.random(1, 1000000000) .. "-" .. counter .. ".json"',
            )
        )
        endpoint_lua = Path(tmp, "endpoint.lua")
        endpoint_lua.write_text(_lua_script(bodies, "application/x-www-form-urlencoded; charset=UTF-8", '"/track"'))
        # Warm up both servers (connections, caches, lazy imports).
        run_wrk(storage_url, baseline_lua, args.connections, args.warmup, args.threads)
        run_wrk(ingest_url.rstrip("/"), endpoint_lua, args.connections, args.warmup, args.threads)
        run_wrk(floor_url.rstrip("/"), endpoint_lua, args.connections, args.warmup, args.threads)
        run_wrk(store_url.rstrip("/"), endpoint_lua, args.connections, args.warmup, args.threads)
        baseline_runs, endpoint_runs, floor_runs, store_runs = [], [], [], []
        for _ in range(args.rounds):
            wait_machine_quiet()
            baseline_runs.append(run_wrk(storage_url, baseline_lua, args.connections, args.seconds, args.threads))
            endpoint_runs.append(run_measured(ingest_url.rstrip("/"), endpoint_lua, args, ingest_pid, stored))
            floor_runs.append(run_measured(floor_url.rstrip("/"), endpoint_lua, args, floor_pid, answered_2xx))
            store_runs.append(run_measured(store_url.rstrip("/"), endpoint_lua, args, store_pid, answered_2xx))

    # Best of the rounds for each figure, on both sides alike.
    baseline = {"rps": max(r["rps"] for r in baseline_runs), "p99_ms": min(r["p99_ms"] for r in baseline_runs)}
    endpoint = {"rps": max(r["rps"] for r in endpoint_runs), "p99_ms": min(r["p99_ms"] for r in endpoint_runs)}
    throughput_ratio = endpoint["rps"] / baseline["rps"]
    p99_ratio = endpoint["p99_ms"] / baseline["p99_ms"]

    print(
        f"wrk: {args.connections} connections, {args.threads} threads, {args.seconds} s x {args.rounds} rounds, "
        f"{len(bodies)} bodies of ~{sum(map(len, bodies)) // len(bodies)} bytes"
    )
    print(f"{'run':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'sock err':>8}")
    labelled = (
        ("baseline: raw uploads to fake-gcs", baseline_runs),
        ("endpoint: POST /track", endpoint_runs),
        ("floor: empty function", floor_runs),
        ("floor: empty + one object write", store_runs),
    )
    for label, runs in labelled:
        for r in runs:
            figures = f"{r['rps']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}"
            print(f"{label:34} {figures} {r['non_2xx']:8.0f} {r['socket_errors']:8.0f}")
    print(f"throughput ratio endpoint/baseline: {throughput_ratio:.2f} (target >= {TARGET_THROUGHPUT_RATIO})")
    print(f"p99 ratio endpoint/baseline:        {p99_ratio:.2f} (target <= {TARGET_P99_RATIO})")

    print(f"{'server CPU (gunicorn master + workers)':34} {'accepted':>9} {'CPU s':>8} {'ms/req':>8} {'cores':>8}")
    for label, runs in labelled[1:]:
        for r in runs:
            cores = r["cpu_s"] / args.seconds
            print(f"{label:34} {r['accepted']:9.0f} {r['cpu_s']:8.2f} {r['cpu_ms']:8.3f} {cores:8.2f}")
    endpoint["cpu_ms_per_ping"] = min(r["cpu_ms"] for r in endpoint_runs)
    floor = {"rps": max(r["rps"] for r in floor_runs), "cpu_ms_per_request": min(r["cpu_ms"] for r in floor_runs)}
    cpu_ratio = endpoint["cpu_ms_per_ping"] / floor["cpu_ms_per_request"]
    store_ms = min(r["cpu_ms"] for r in store_runs)
    print(
        f"CPU per accepted ping: {endpoint['cpu_ms_per_ping']:.3f} ms; floor: {floor['cpu_ms_per_request']:.3f} ms; "
        f"ratio {cpu_ratio:.2f} (target <= {TARGET_CPU_RATIO})"
    )
    print(
        f"  of which the object write and its wait: {store_ms - floor['cpu_ms_per_request']:.3f} ms "
        f"(empty + one object write: {store_ms:.3f} ms); ingest's own work: "
        f"{endpoint['cpu_ms_per_ping'] - store_ms:.3f} ms"
    )
    floor["cpu_ms_per_request_with_write"] = store_ms
    summary = {
        "baseline": baseline,
        "endpoint": endpoint,
        "floor": floor,
        "throughput_ratio": throughput_ratio,
        "p99_ratio": p99_ratio,
        "cpu_ratio": cpu_ratio,
    }
    Path(ROOT, ".local", "bench-ingest.json").write_text(json.dumps(summary, indent=2))
    for r in endpoint_runs:
        if abs(r["accepted"] - (r["requests"] - r["non_2xx"])) > args.connections:
            print(
                f"objects stored ({r['accepted']:.0f}) and 2xx answers ({r['requests'] - r['non_2xx']:.0f}) disagree",
                file=sys.stderr,
            )
    if any(r["restarted"] for r in endpoint_runs + floor_runs + store_runs):
        print("a server process was replaced during a run: its CPU figures are not valid", file=sys.stderr)
        return 1
    if any(r["non_2xx"] or r["socket_errors"] for r in baseline_runs + endpoint_runs + floor_runs + store_runs):
        print("errors during the runs: the figures above are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
