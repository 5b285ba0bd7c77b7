"""Coverage-guided fuzzing of the wire format with atheris (`make fuzz`).

Each input is one request as ingest sees it: byte 0 picks the mimetype, byte 1
the charset parameter, the rest is the body. The body goes the whole way an
accepted ping goes: `wire.parse_body` (which ends with `check_structure`),
`wire.validate` for every route, `StoredPing.to_json`, the pipelines'
`records.read_stored_ping` and the route's record builder. The documented
errors are `wire.PayloadError` (and its subclass `UnsupportedMediaType`) from
ingest and `records.Rejected` from the pipelines; anything else is a crash, and
so is a stored ping that does not read back as the payload ingest parsed.

A crash does not stop the run (libFuzzer would stop at the first one): each is
recorded and the run goes on, so one run finds them all. Under `.local/fuzz/`:
`corpus/` (libFuzzer's working corpus, seeded from tests/fixtures), `crashes/`
(the first input of each distinct crash, by exception type and place),
`crashes.jsonl` (one line per distinct crash: type, message, place, input file,
count) and `summary.json` (executions, seconds, crashes; rewritten every few
seconds and when the run ends).

    python scripts/fuzz_wire.py [--seconds 600] [--dir .local/fuzz]
    python scripts/fuzz_wire.py --replay .local/fuzz/crashes/<file>   # one input, traceback shown
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["telemetry"]):
    from telemetry.common import sites, wire
    from telemetry.common.stored_ping import StoredPing
    from telemetry.ingest.settings import IngestSettings
    from telemetry.pipelines import records

ROOT = Path(__file__).resolve().parents[1]
MIMETYPES = (wire.FORM, wire.JSON, "Application/X-WWW-Form-Urlencoded", "APPLICATION/JSON", "text/plain", "")
CHARSETS = (None, "utf-8", "UTF-8", "utf8", "latin-1", "")
LIMITS = IngestSettings.from_env({}).limits
PROJECT = {"custom_fields": ["license", "orders"], "deactivation_reasons": {"too-slow": "Too slow"}}
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def split_input(data: bytes) -> tuple[str, str | None, bytes]:
    """(mimetype, charset, body) of one fuzz input."""
    mimetype = MIMETYPES[data[0] % len(MIMETYPES)] if data else wire.FORM
    charset = CHARSETS[data[1] % len(CHARSETS)] if len(data) > 1 else None
    return mimetype, charset, data[2:]


def make_input(mimetype: str, charset: str | None, body: bytes) -> bytes:
    return bytes([MIMETYPES.index(mimetype), CHARSETS.index(charset)]) + body


def check_one(data: bytes) -> None:
    """Raise anything but the documented errors when `data` breaks a rule (see the module doc)."""
    mimetype, charset, body = split_input(data)
    try:
        payload = wire.parse_body(body, mimetype, charset, LIMITS)
    except wire.PayloadError:
        return
    for route in wire.ROUTES:
        try:
            wire.validate(route, payload)
        except wire.PayloadError:
            continue
        ping = StoredPing(id="fuzz", route=route, received_at=WHEN, payload=payload, raw=body.decode("utf-8"))
        try:
            read = records.read_stored_ping(ping.object_name, ping.to_json())
        except records.Rejected as e:
            raise AssertionError(f"ingest accepted a {route} ping the pipelines reject: {e.reason}: {e.detail}") from e
        if json.dumps(read.payload, sort_keys=True) != json.dumps(payload, sort_keys=True):
            raise AssertionError("the stored ping does not read back as the parsed payload")
        try:
            if route == wire.TRACK:
                records.site_record(read, PROJECT)
            elif route == wire.DEACTIVATE:
                records.deactivation_record(read, PROJECT)
                records.site_record(read, PROJECT, sites.DEACTIVATED)
            else:
                records.tracking_skipped_row(read)
        except records.Rejected:
            pass


class Recorder:
    """Counts executions and keeps every distinct crash, without stopping the run."""

    def __init__(self, folder: Path, seconds: int):
        self.folder = folder
        self.crash_dir = folder / "crashes"
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        self.seconds = seconds
        self.started = time.monotonic()
        self.executions = 0
        self.crash_count = 0
        self.crashes: dict[str, dict] = {}
        self.last_written = 0.0

    def __call__(self, data: bytes) -> None:
        self.executions += 1
        try:
            check_one(data)
        except Exception as e:  # every undocumented exception is what we are looking for
            self.crash_count += 1
            frame = traceback.extract_tb(e.__traceback__)[-1]
            key = f"{type(e).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            if key in self.crashes:
                self.crashes[key]["count"] += 1
            else:
                name = f"crash-{hashlib.sha1(data).hexdigest()}"  # noqa: S324 - a file name, not security
                (self.crash_dir / name).write_bytes(data)
                self.crashes[key] = {
                    "crash": key,
                    "message": str(e)[:300],
                    "input": str(self.crash_dir / name),
                    "mimetype": split_input(data)[0],
                    "body_prefix": split_input(data)[2][:200].decode("utf-8", "backslashreplace"),
                    "count": 1,
                    "first_at_execution": self.executions,
                }
                print(f"CRASH {key}: {str(e)[:200]} -> {name}", file=sys.stderr, flush=True)
                self.write()
        now = time.monotonic()
        if now - self.last_written > 5:
            self.write()

    def write(self) -> None:
        self.last_written = time.monotonic()
        elapsed = round(self.last_written - self.started, 1)
        summary = {
            "executions": self.executions,
            "seconds": elapsed,
            "seconds_planned": self.seconds,
            "executions_per_second": round(self.executions / elapsed) if elapsed else None,
            "crashing_inputs": self.crash_count,
            "distinct_crashes": len(self.crashes),
        }
        (self.folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        with (self.folder / "crashes.jsonl").open("w") as out:
            for crash in self.crashes.values():
                out.write(json.dumps(crash, ensure_ascii=False) + "\n")


def seed(corpus: Path) -> None:
    """Seed an empty corpus with real bodies, as form and as JSON."""
    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    fixtures = ROOT / "tests" / "fixtures"
    for source in sorted(fixtures.glob("*.txt")):
        text = source.read_text().strip()
        (corpus / f"seed-{source.stem}-form").write_bytes(make_input(wire.FORM, None, text.encode()))
        payload = wire.parse_php_query(text, LIMITS)
        (corpus / f"seed-{source.stem}-json").write_bytes(
            make_input(wire.JSON, "utf-8", json.dumps(payload, ensure_ascii=False).encode())
        )
    small = b"hash=abc&url=https%3A%2F%2Fx.org&users[total]=3&plugins[a][name]=A&reason_id=other&wp[multisite]=0"
    (corpus / "seed-small-form").write_bytes(make_input(wire.FORM, None, small))
    small_json = b'{"hash": "abc", "url": "https://x.org", "users": {"total": 3}, "extra": {"license": 1}}'
    (corpus / "seed-small-json").write_bytes(make_input(wire.JSON, None, small_json))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "600")))
    parser.add_argument("--dir", type=Path, default=ROOT / ".local" / "fuzz")
    parser.add_argument("--max-len", type=int, default=32768, help="longest input libFuzzer makes, in bytes")
    parser.add_argument("--replay", type=Path, help="run one input file and show its traceback")
    args, libfuzzer_args = parser.parse_known_args()
    if args.replay:
        check_one(args.replay.read_bytes())
        print("no crash")
        return
    corpus = args.dir / "corpus"
    seed(corpus)
    recorder = Recorder(args.dir, args.seconds)
    import atexit

    atexit.register(recorder.write)
    argv = [sys.argv[0], str(corpus), f"-max_total_time={args.seconds}", f"-max_len={args.max_len}"]
    argv += [f"-dict={Path(__file__).with_suffix('.dict')}", *libfuzzer_args]
    atheris.Setup(argv, recorder)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
