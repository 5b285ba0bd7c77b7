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
work costs. The runs alternate (baseline, endpoint, baseline, endpoint) and
each side's better run is kept, to damp a noisy machine.
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
from pathlib import Path

from telemetry.common import config
from telemetry.local import stack
from telemetry.local.samples import http_build_query, project_hash, track_payload

ROOT = stack.ROOT

TARGET_THROUGHPUT_RATIO = 0.7
TARGET_P99_RATIO = 1.5

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
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
    port = _free_port()
    ingest_url = f"http://{stack.HOST}:{port}/"
    server_log = stack.LOG_DIR / "bench-ingest-server.log"
    with open(server_log, "wb") as log:
        server = subprocess.Popen(
            stack.ingest_command(port),
            cwd=ROOT,
            env={**os.environ, "TRACKING_BUCKET": bucket},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not stack.http_ok(f"{ingest_url}track"):
            if server.poll() is not None or time.monotonic() > deadline:
                print(f"the benchmark's ingest server did not start; see {server_log}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return _measure(args, bodies, storage_url, bucket, ingest_url)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        # Thousands of objects: dropping fake-gcs-server's folder beats deleting them one call at a time.
        shutil.rmtree(stack.GCS_ROOT / bucket, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((stack.HOST, 0))
        return sock.getsockname()[1]


def _measure(args: argparse.Namespace, bodies: list[str], storage_url: str, bucket: str, ingest_url: str) -> int:
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
        run_wrk(storage_url, baseline_lua, args.connections, 2, args.threads)
        run_wrk(ingest_url.rstrip("/"), endpoint_lua, args.connections, 2, args.threads)
        baseline_runs, endpoint_runs = [], []
        for _ in range(args.rounds):
            baseline_runs.append(run_wrk(storage_url, baseline_lua, args.connections, args.seconds, args.threads))
            endpoint_runs.append(
                run_wrk(ingest_url.rstrip("/"), endpoint_lua, args.connections, args.seconds, args.threads)
            )

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
    for label, runs in (("baseline: raw uploads to fake-gcs", baseline_runs), ("endpoint: POST /track", endpoint_runs)):
        for r in runs:
            figures = f"{r['rps']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}"
            print(f"{label:34} {figures} {r['non_2xx']:8.0f} {r['socket_errors']:8.0f}")
    print(f"throughput ratio endpoint/baseline: {throughput_ratio:.2f} (target >= {TARGET_THROUGHPUT_RATIO})")
    print(f"p99 ratio endpoint/baseline:        {p99_ratio:.2f} (target <= {TARGET_P99_RATIO})")
    summary = {"baseline": baseline, "endpoint": endpoint, "throughput_ratio": throughput_ratio, "p99_ratio": p99_ratio}
    Path(ROOT, ".local", "bench-ingest.json").write_text(json.dumps(summary, indent=2))
    if any(r["non_2xx"] or r["socket_errors"] for r in baseline_runs + endpoint_runs):
        print("errors during the runs: the figures above are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
