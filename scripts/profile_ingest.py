"""Ingest's own CPU per ping in one process, without the network: a profiling aid.

Serves realistic `track` bodies (the bodies `make bench-ingest` posts) through the
gateway's WSGI apps in this process: the track function (ingest) and
scripts/bench_floor.py's `store_only` (the one-write floor), each mounted as the
local server mounts them. The storage write is replaced by a writer that keeps
nothing (the write's CPU is the same on both sides and not ingest's own work), and
log lines go to /dev/null, as a line costs what writing it costs. Each side runs in
alternating blocks; per block it prints the CPU per request (`time.process_time`),
and at the end the median of each side and of their difference: ingest's own work.

    .venv/bin/python scripts/profile_ingest.py [--blocks 6] [--requests 4000] [--profile]

`--profile` runs the track side once more under cProfile and prints its top costs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable

from telemetry.local.samples import http_build_query, project_hash, track_payload

FORM = "application/x-www-form-urlencoded; charset=UTF-8"
USER_AGENT = "WordPress/6.4.2; https://example.org"


class DiscardingWriter:
    """Stands in for ObjectWriter: the write is not ingest's own work (bench-ingest measures it)."""

    def put(self, name: str, data: bytes) -> None:
        if not name or not data:
            raise AssertionError("ingest wrote an empty object")


def environs(bodies: list[bytes], route: str) -> list[dict]:
    """WSGI environs as gunicorn builds them for a POST of each body from a WordPress site."""
    made = []
    for body in bodies:
        made.append(
            {
                "REQUEST_METHOD": "POST",
                "SCRIPT_NAME": "",
                "PATH_INFO": f"/{route}",
                "RAW_URI": f"/{route}",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "8080",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REMOTE_ADDR": "198.51.100.23",
                "REMOTE_PORT": "53412",
                "CONTENT_TYPE": FORM,
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_HOST": "127.0.0.1:8080",
                "HTTP_USER_AGENT": USER_AGENT,
                "HTTP_ACCEPT": "*/*",
                "HTTP_ACCEPT_ENCODING": "deflate, gzip, br, zstd",
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.input_terminated": True,
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
                "wsgi.errors": sys.stderr,
                "body": body,
            }
        )
    return made


def serve_all(app: Callable, made: Iterable[dict]) -> None:
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    for template in made:
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(environ.pop("body"))
        for _chunk in app(environ, start_response):
            pass
    if any(not status.startswith("200") for status in statuses):
        raise AssertionError(f"not every request was accepted: {sorted(set(statuses))}")


def cpu_per_request_us(app: Callable, made: list[dict]) -> float:
    started = time.process_time()
    serve_all(app, made)
    return 1e6 * (time.process_time() - started) / len(made)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--bodies", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("GCP_PROJECT", "profile")
    os.environ.setdefault("TRACKING_BUCKET", "profile")
    # Log lines go where nobody reads them; they are still made and written.
    devnull = os.open(os.devnull, os.O_WRONLY)
    report = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(devnull, 1)

    from telemetry.ingest import handler
    from telemetry.ingest.settings import IngestSettings
    from telemetry.local import gateway

    settings = IngestSettings.from_env()
    handler.instance = lambda: (settings, DiscardingWriter())  # type: ignore[assignment]
    ingest_app = gateway.create_gateway()
    floor_app = gateway.floor_gateway()

    rng = random.Random(7)
    bodies = [http_build_query(track_payload(rng, project_hash("bench"), i)).encode() for i in range(args.bodies)]
    made = environs(bodies, "track")
    made = (made * (args.requests // len(made) + 1))[: args.requests]
    serve_all(ingest_app, made[:1000])  # warm: imports, caches
    serve_all(floor_app, made[:1000])

    ingest_us, floor_us = [], []
    for block in range(args.blocks):
        sides = [("ingest", ingest_app, ingest_us), ("floor", floor_app, floor_us)]
        for name, app, figures in sides if block % 2 == 0 else sides[::-1]:
            figures.append(cpu_per_request_us(app, made))
            print(f"block {block + 1} {name:6} {figures[-1]:7.1f} us/request", file=report)
    own = [i - f for i, f in zip(ingest_us, floor_us, strict=True)]
    print(
        f"median: ingest {statistics.median(ingest_us):.1f} us, floor {statistics.median(floor_us):.1f} us, "
        f"ingest's own work {statistics.median(own):.1f} us (blocks: {', '.join(f'{o:.1f}' for o in own)})",
        file=report,
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        serve_all(ingest_app, made)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(45)
        print(out.getvalue(), file=report)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
        print(out.getvalue(), file=report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
