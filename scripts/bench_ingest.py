"""Load benchmark of the local `track` endpoint: its CPU per ping against a same-run floor.

Run through `make bench-ingest` (it starts the stack). The benchmark starts its
own servers (the stack's ingest command, on free ports) writing to a bucket of
its own, deleted afterwards, so it never adds pings to the product's bucket.
All runs use wrk with the same connections, threads and realistic bodies:

- baseline: each body uploaded straight to fake-gcs-server's media-upload API;
- endpoint: each body posted to `$INGEST_URL/track`, which parses, validates
  and writes one object per ping to the same fake-gcs-server;
- one-write floor: scripts/bench_floor.py's `store_only`, a functions-framework
  function served by the same gunicorn command through the same gateway, that
  writes one object with ingest's own writer and answers: what any function that
  stores a ping costs before ingest's own work (parse, validation, the stored
  object's JSON, the log line).

Each round runs the baseline, then the endpoint and the floor back to back: a
pair, in alternating order (endpoint first in even rounds, floor first in odd
ones), so that a machine that speeds up or slows down during a pair favours
neither side over the rounds. Throughput and p99 keep each side's best run.

CPU per accepted ping: the user+system CPU time of the server's whole process
tree (gunicorn master and workers, read with psutil just before and after each
run, once the server is idle again) divided by the objects the run added to the
bucket (the floor: by its 2xx answers). On a shared machine one run's figure
moves with what the neighbours do during it (single rounds' ratios spanned
0.90 to 1.63 within one run of three rounds), so the estimate is paired: each
round's ratio is the endpoint's CPU per ping over the floor's in the same pair,
and the figure is the MEDIAN of the rounds' ratios, printed with every round's
ratio and their spread (lowest, quartiles, highest). A neighbour's burst
during one run skews that round's ratio only; the median ignores a minority of
such rounds in either direction. Target: that median at most TARGET_CPU_RATIO.
The ratio of each side's best run (the estimate before paired rounds) is
printed beside it for comparison, and is not the target.

Then the worst bodies within the default limits (MAX_BODY_BYTES, MAX_KEYS,
MAX_NESTING_DEPTH, MAX_VALUE_CHARS, MAX_KEY_CHARS): each candidate in
`worst_bodies` is as large as the limits let it be and is accepted (checked
here before it is sent), and each is posted the same way. The costliest per
byte is the worst body; its CPU per byte is compared with a realistic ping's.
Target: at most TARGET_WORST_PER_BYTE_RATIO times.
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

from telemetry.common import config, progress, wire
from telemetry.ingest.settings import IngestSettings
from telemetry.local import stack
from telemetry.local.samples import http_build_query, project_hash, site_url, track_payload

ROOT = stack.ROOT

TARGET_THROUGHPUT_RATIO = 0.7
TARGET_P99_RATIO = 1.5
TARGET_CPU_RATIO = 1.3  # median over the rounds of (CPU per accepted ping / the one-write floor's CPU per request)
TARGET_WORST_PER_BYTE_RATIO = 3.0  # the worst body's CPU per byte / a realistic ping's
# After wrk stops, requests still in flight finish; the server counts as idle once
# its tree uses less than this much CPU per poll.
IDLE_CPU_SECONDS = 0.01
IDLE_POLL_SECONDS = 0.25
IDLE_TIMEOUT_SECONDS = 10
# Between runs the machine counts as quiet below this CPU use (all cores, percent).
QUIET_CPU_PERCENT = 15

FORM = "application/x-www-form-urlencoded; charset=UTF-8"
JSON = "application/json"

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


def _lua_long_string(text: str) -> str:
    """`text` as a Lua long string literal, of a level that cannot close early."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def _lua_script(bodies: list[str], content_type: str, path_expr: str) -> str:
    table = "{" + ",".join(_lua_long_string(b) for b in bodies) + "}"
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
    url: str,
    script: Path,
    args: argparse.Namespace,
    seconds: int,
    server_pid: int,
    accepted: Callable[[dict[str, float]], int],
    quiet: bool = True,
) -> dict[str, float]:
    """One wrk run plus the server tree's CPU seconds and CPU ms per accepted request.
    `accepted(figures)` counts what the run accepted (called before and after: it
    returns a running total, or the run's count when given the wrk figures).
    `quiet`: first wait for the machine to settle (not between the two runs of a pair,
    which should see the same machine)."""
    wait_idle(server_pid)
    if quiet:
        wait_machine_quiet()
    before_count = accepted({})
    before_cpu, before_pids = tree_cpu_seconds(server_pid)
    figures = run_wrk(url, script, args.connections, seconds, args.threads)
    wait_idle(server_pid)
    after_cpu, after_pids = tree_cpu_seconds(server_pid)
    figures["accepted"] = float(accepted(figures) - before_count)
    figures["cpu_s"] = after_cpu - before_cpu
    figures["cpu_ms"] = 1000 * figures["cpu_s"] / figures["accepted"] if figures["accepted"] else float("nan")
    figures["restarted"] = float(before_pids != after_pids)  # a worker died: its CPU is lost
    return figures


@dataclass(frozen=True)
class PairedRatios:
    """The paired estimate of the CPU ratio: each round's endpoint/floor ratio, and their median and spread."""

    ratios: tuple[float, ...]
    median: float
    lower_quartile: float
    upper_quartile: float
    lowest: float
    highest: float


def paired_ratios(endpoint_cpu_ms: list[float], floor_cpu_ms: list[float]) -> PairedRatios:
    """Round i's ratio is endpoint_cpu_ms[i] / floor_cpu_ms[i] (the two runs of one pair);
    the quartiles are the inclusive method's (the lowest and highest ratio are the 0th
    and 4th): with one round, all five figures are its ratio."""
    if not endpoint_cpu_ms or len(endpoint_cpu_ms) != len(floor_cpu_ms):
        raise ValueError("one floor run per endpoint run, and at least one pair")
    ratios = tuple(e / f for e, f in zip(endpoint_cpu_ms, floor_cpu_ms, strict=True))
    if len(ratios) == 1:
        return PairedRatios(ratios, *(ratios[0],) * 5)
    lower, median, upper = statistics.quantiles(ratios, n=4, method="inclusive")
    return PairedRatios(ratios, median, lower, upper, min(ratios), max(ratios))


def count_objects(folder: Path) -> int:
    """Objects under a prefix of a fake-gcs-server bucket (its filesystem backend: one file each)."""
    return sum(len(files) for _, _, files in os.walk(folder))


@dataclass(frozen=True)
class WorstBody:
    """A candidate for the costliest body per byte that ingest still accepts."""

    name: str
    content_type: str
    bodies: list[str]  # a few variants, so that no cache of keys or values serves them all


def _fill(fields: list[str], budget: int, unit: str) -> list[str]:
    """`fields` (`name=`) with values of `unit` repeated, sharing `budget` bytes in all."""
    room = budget - sum(len(f) for f in fields) - (len(fields) - 1)
    per_field = max(room // len(fields) // len(unit), 0)
    return [field + unit * per_field for field in fields]


def worst_bodies(settings: IngestSettings, variants: int) -> list[WorstBody]:
    """Bodies as large as the default limits allow, each of a kind that costs the most per
    byte somewhere in ingest: many fields (MAX_KEYS bounds the `&`-separated fields) that
    each append (`[]` keys add no key to the count once they become lists), appends nested
    to MAX_NESTING_DEPTH, percent-escapes (decoded, then each `%01` written back as a
    six-byte JSON escape), four-byte characters, distinct keys (no cache helps), and JSON:
    an array of a hundred thousand numbers, and an object of many keys."""
    limits, size = settings.limits, settings.max_body_bytes
    fields = limits.max_keys - 2  # besides hash and url

    def ping(index: int) -> str:
        return f"hash={project_hash('bench')}&url={quote(site_url(index), safe='')}&"

    def form(index: int, names: list[str], unit: str) -> str:
        head = ping(index)
        return head + "&".join(_fill([f"{n}=" for n in names], size - len(head), unit))

    def each(make: Callable[[int], str]) -> list[str]:
        return [make(i) for i in range(variants)]

    nested = "x" + "[]" * (limits.max_depth - 1)
    candidates = [
        WorstBody("appends x[]=", FORM, each(lambda i: form(i, ["x[]"] * fields, "a"))),
        WorstBody(f"nested appends {nested}=", FORM, each(lambda i: form(i, [nested] * fields, "a"))),
        WorstBody("appends of %01 escapes", FORM, each(lambda i: form(i, ["x[]"] * fields, "%01"))),
        WorstBody("appends of 4-byte characters", FORM, each(lambda i: form(i, ["x[]"] * fields, "%F0%9F%98%80"))),
        WorstBody(
            "distinct escaped keys",
            FORM,
            each(lambda i: form(i, [f"%6B{i}%5F{k}%5B%5D" for k in range(fields)], "%01")),
        ),
        WorstBody(
            "JSON array of numbers",
            JSON,
            each(lambda i: _json_filled(i, size, lambda room: "[" + ",".join(["0"] * (room // 2)) + "]")),
        ),
        WorstBody(
            "JSON object of escaped strings",
            JSON,
            each(
                lambda i: _json_filled(
                    i,
                    size,
                    lambda room: (
                        "{"
                        + ",".join(
                            f'"k{k}":"' + "\\u0001" * max((room // fields - 12) // 6, 0) + '"'
                            for k in range(fields - 1)
                        )
                        + "}"
                    ),
                )
            ),
        ),
    ]
    for candidate in candidates:
        for body in candidate.bodies:
            _check_accepted(candidate.name, body, candidate.content_type, settings)
    return candidates


def _json_filled(index: int, size: int, filler: Callable[[int], str]) -> str:
    """A JSON ping of `size` bytes at most whose field `x` is what `filler(room)` makes of the room left."""
    head = f'{{"hash":"{project_hash("bench")}","url":"{site_url(index)}","x":'
    return head + filler(size - len(head) - 1) + "}"


def _check_accepted(name: str, body: str, content_type: str, settings: IngestSettings) -> None:
    """A worst body must be one ingest accepts, within the limits: else it measures a 4xx."""
    data = body.encode()
    if len(data) > settings.max_body_bytes:
        raise RuntimeError(f"worst body {name!r} is {len(data)} bytes, over MAX_BODY_BYTES")
    mimetype = content_type.split(";")[0]
    try:
        wire.validate(wire.TRACK, wire.parse_body(data, mimetype, "utf-8", settings.limits))
    except wire.PayloadError as e:
        raise RuntimeError(f"worst body {name!r} is refused: {e.code}: {e.message}") from e


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
    # Paired rounds (module docstring): enough for a median that a few noisy rounds do not
    # move, and an even count, so that each side runs first equally often.
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=8)
    # A fresh server keeps speeding up for several seconds (connection pools filling,
    # first-call paths): 2 s of warm-up left the first endpoint run at 2/3 of the second.
    parser.add_argument("--warmup", type=int, default=8, help="seconds of load on each server before measuring")
    parser.add_argument("--bodies", type=int, default=200)
    parser.add_argument("--worst-seconds", type=int, default=5, help="seconds of each worst body's runs")
    # Their target has room to spare (docs/benchmarks.md): one round each keeps the whole run near 6 minutes.
    parser.add_argument("--worst-rounds", type=int, default=1)
    parser.add_argument("--worst-variants", type=int, default=4, help="distinct bodies of each worst kind")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk (make bench-ingest does this)", file=sys.stderr)
        return 1

    rng = random.Random(7)
    bodies = [http_build_query(track_payload(rng, project_hash("bench"), i)) for i in range(args.bodies)]
    # The limits a deployment runs with when it sets none: the defaults of config.VARIABLES.
    default_settings = IngestSettings.from_env({})
    try:
        worst = worst_bodies(default_settings, args.worst_variants)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    storage_url = config.require("STORAGE_EMULATOR_HOST")
    bucket = f"{config.require('TRACKING_BUCKET')}-bench"
    stack.create_bucket(bucket)
    try:
        with ExitStack() as servers:
            ingest = servers.enter_context(serve("telemetry.local.gateway:app", bucket, "bench-ingest-server.log"))
            store_floor = servers.enter_context(
                serve("telemetry.local.gateway:floor_gateway()", bucket, "bench-store-floor-server.log")
            )
            return _measure(args, bodies, worst, storage_url, bucket, ingest, store_floor)
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
    worst: list[WorstBody],
    storage_url: str,
    bucket: str,
    ingest: tuple[str, int],
    store_floor: tuple[str, int],
) -> int:
    (ingest_url, ingest_pid), (store_url, store_pid) = ingest, store_floor
    ingest_url, store_url = ingest_url.rstrip("/"), store_url.rstrip("/")
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
        endpoint_lua.write_text(_lua_script(bodies, FORM, '"/track"'))
        worst_lua = {}
        for index, candidate in enumerate(worst):
            worst_lua[candidate.name] = Path(tmp, f"worst-{index}.lua")
            worst_lua[candidate.name].write_text(_lua_script(candidate.bodies, candidate.content_type, '"/track"'))
        runs = progress.Progress("bench-ingest: ran", 3 + 3 * args.rounds + args.worst_rounds * len(worst), "wrk runs")
        # Warm up every server (connections, caches, lazy imports).
        run_wrk(storage_url, baseline_lua, args.connections, args.warmup, args.threads)
        run_wrk(ingest_url, endpoint_lua, args.connections, args.warmup, args.threads)
        run_wrk(store_url, endpoint_lua, args.connections, args.warmup, args.threads)
        runs.update(3)
        baseline_runs, endpoint_runs, store_runs = [], [], []

        def endpoint_run(quiet: bool) -> None:
            endpoint_runs.append(run_measured(ingest_url, endpoint_lua, args, args.seconds, ingest_pid, stored, quiet))

        def floor_run(quiet: bool) -> None:
            store_runs.append(run_measured(store_url, endpoint_lua, args, args.seconds, store_pid, answered_2xx, quiet))

        for round_index in range(args.rounds):
            wait_machine_quiet()
            baseline_runs.append(run_wrk(storage_url, baseline_lua, args.connections, args.seconds, args.threads))
            first, second = (endpoint_run, floor_run) if round_index % 2 == 0 else (floor_run, endpoint_run)
            first(True)
            second(False)  # right after the first: the pair sees the same machine
            pair = (endpoint_runs[-1]["cpu_ms"], store_runs[-1]["cpu_ms"])
            print(
                f"  round {round_index + 1}/{args.rounds} ({'endpoint' if first is endpoint_run else 'floor'} first): "
                f"endpoint {pair[0]:.3f} ms, floor {pair[1]:.3f} ms per request, ratio {pair[0] / pair[1]:.2f}",
                flush=True,
            )
            runs.update(3)
        worst_runs: dict[str, list[dict[str, float]]] = {c.name: [] for c in worst}
        for _ in range(args.worst_rounds):
            for candidate in worst:
                run = run_measured(ingest_url, worst_lua[candidate.name], args, args.worst_seconds, ingest_pid, stored)
                worst_runs[candidate.name].append(run)
                runs.update()
                # Each object of these holds up to ~3x MAX_BODY_BYTES: do not let them pile up.
                shutil.rmtree(track_objects, ignore_errors=True)
        runs.close()

    # Best of the rounds for each figure, on both sides alike.
    baseline = {"rps": max(r["rps"] for r in baseline_runs), "p99_ms": min(r["p99_ms"] for r in baseline_runs)}
    endpoint = {"rps": max(r["rps"] for r in endpoint_runs), "p99_ms": min(r["p99_ms"] for r in endpoint_runs)}
    throughput_ratio = endpoint["rps"] / baseline["rps"]
    p99_ratio = endpoint["p99_ms"] / baseline["p99_ms"]
    realistic_bytes = sum(len(b.encode()) for b in bodies) / len(bodies)

    print(
        f"wrk: {args.connections} connections, {args.threads} threads, {args.seconds} s x {args.rounds} rounds, "
        f"{len(bodies)} bodies of ~{realistic_bytes:.0f} bytes"
    )
    print(f"{'run':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'sock err':>8}")
    labelled = (
        ("baseline: raw uploads to fake-gcs", baseline_runs),
        ("endpoint: POST /track", endpoint_runs),
        ("floor: one object write", store_runs),
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
    # The paired estimate (module docstring): each round's endpoint and floor ran back to back.
    paired = paired_ratios([r["cpu_ms"] for r in endpoint_runs], [r["cpu_ms"] for r in store_runs])
    print("CPU ratio of each round (endpoint / floor, same pair): " + ", ".join(f"{r:.2f}" for r in paired.ratios))
    endpoint["cpu_ms_per_ping"] = min(r["cpu_ms"] for r in endpoint_runs)
    endpoint["cpu_ms_per_ping_median"] = statistics.median(r["cpu_ms"] for r in endpoint_runs)
    floor = {
        "rps": max(r["rps"] for r in store_runs),
        "cpu_ms_per_request": min(r["cpu_ms"] for r in store_runs),
        "cpu_ms_per_request_median": statistics.median(r["cpu_ms"] for r in store_runs),
    }
    own_work = statistics.median(e["cpu_ms"] - f["cpu_ms"] for e, f in zip(endpoint_runs, store_runs, strict=True))
    cpu_ratio = paired.median
    best_of_ratio = endpoint["cpu_ms_per_ping"] / floor["cpu_ms_per_request"]
    print(
        f"CPU per accepted ping (median of the rounds): {endpoint['cpu_ms_per_ping_median']:.3f} ms; one-write floor: "
        f"{floor['cpu_ms_per_request_median']:.3f} ms; ingest's own work (median of the pairs' differences): "
        f"{own_work:.3f} ms"
    )
    print(
        f"CPU ratio, median of {len(paired.ratios)} paired rounds: {cpu_ratio:.2f} (target <= {TARGET_CPU_RATIO}"
        f"{'' if cpu_ratio <= TARGET_CPU_RATIO else ', MISSED'}); spread: lowest {paired.lowest:.2f}, "
        f"quartiles {paired.lower_quartile:.2f}-{paired.upper_quartile:.2f}, highest {paired.highest:.2f}; "
        f"best run against best run {best_of_ratio:.2f} ({endpoint['cpu_ms_per_ping']:.3f} / "
        f"{floor['cpu_ms_per_request']:.3f} ms)"
    )

    realistic_ns_per_byte = 1e6 * endpoint["cpu_ms_per_ping"] / realistic_bytes
    print(
        f"{'worst bodies (default limits)':34} {'bytes':>9} {'accepted':>9} {'ms/req':>8} {'ns/byte':>8} "
        f"{'non-2xx':>8} {'sock err':>8}"
    )
    worst_figures = {}
    for candidate in worst:
        size = sum(len(b.encode()) for b in candidate.bodies) / len(candidate.bodies)
        runs = worst_runs[candidate.name]
        for r in runs:
            per_byte = 1e6 * r["cpu_ms"] / size
            print(
                f"{candidate.name:34} {size:9.0f} {r['accepted']:9.0f} {r['cpu_ms']:8.3f} {per_byte:8.1f} "
                f"{r['non_2xx']:8.0f} {r['socket_errors']:8.0f}"
            )
        best_ms = min(r["cpu_ms"] for r in runs)
        worst_figures[candidate.name] = {"bytes": size, "cpu_ms": best_ms, "ns_per_byte": 1e6 * best_ms / size}
    worst_name = max(worst_figures, key=lambda name: worst_figures[name]["ns_per_byte"])
    worst_ratio = worst_figures[worst_name]["ns_per_byte"] / realistic_ns_per_byte
    print(
        f"CPU per byte: worst body ({worst_name}) {worst_figures[worst_name]['ns_per_byte']:.1f} ns; "
        f"realistic ping {realistic_ns_per_byte:.1f} ns; ratio {worst_ratio:.2f} "
        f"(target <= {TARGET_WORST_PER_BYTE_RATIO}{'' if worst_ratio <= TARGET_WORST_PER_BYTE_RATIO else ', MISSED'})"
    )
    endpoint["cpu_ns_per_byte"] = realistic_ns_per_byte
    summary = {
        "baseline": baseline,
        "endpoint": endpoint,
        "one_write_floor": floor,
        "throughput_ratio": throughput_ratio,
        "p99_ratio": p99_ratio,
        "cpu_ratio": cpu_ratio,
        "cpu_ratio_per_round": list(paired.ratios),
        "cpu_ratio_spread": {
            "lowest": paired.lowest,
            "lower_quartile": paired.lower_quartile,
            "upper_quartile": paired.upper_quartile,
            "highest": paired.highest,
        },
        "cpu_ratio_best_of": best_of_ratio,
        "ingest_own_work_ms": own_work,
        "worst_bodies": worst_figures,
        "worst_body": worst_name,
        "worst_per_byte_ratio": worst_ratio,
    }
    Path(ROOT, ".local", "bench-ingest.json").write_text(json.dumps(summary, indent=2))
    all_worst = [r for runs in worst_runs.values() for r in runs]
    for r in endpoint_runs + all_worst:
        if abs(r["accepted"] - (r["requests"] - r["non_2xx"])) > args.connections:
            print(
                f"objects stored ({r['accepted']:.0f}) and 2xx answers ({r['requests'] - r['non_2xx']:.0f}) disagree",
                file=sys.stderr,
            )
    if any(r["restarted"] for r in endpoint_runs + store_runs + all_worst):
        print("a server process was replaced during a run: its CPU figures are not valid", file=sys.stderr)
        return 1
    if any(r["non_2xx"] or r["socket_errors"] for r in baseline_runs + endpoint_runs + store_runs + all_worst):
        print("errors during the runs: the figures above are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
