"""Refresh the offline geo data, or check a data file against the repository (docs/geo.md).

    .venv/bin/python scripts/refresh_geo.py --version 1.2.3   # pin geoip2fast 1.2.3 everywhere, install it, check
    .venv/bin/python scripts/refresh_geo.py                   # check the installed bundled data
    .venv/bin/python scripts/refresh_geo.py --dat FILE.dat.gz # check a geoip2fast file meant for GEO_DATABASES

The check loads the data as the pipelines do and prints its source and date, the load
time, the memory it takes and the lookup speed; it fails (exit 1) when the bundled data
is not the one telemetry/pipelines/geo.py names (BUNDLED_DATA, which docs/geo.md quotes),
or when an organisation text of geo_hosting.json is not in the data (renamed upstream:
correct the mapping). The package is the data: geoip2fast releases ship the data of
their day, so refreshing is pinning a newer release.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINNED_IN = (ROOT / "requirements.txt", ROOT / "constraints.txt", ROOT / "dataflow_templates" / "requirements.txt")
PIN = re.compile(r"^geoip2fast==\S+$", re.MULTILINE)
VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")


def pin(version: str) -> None:
    """geoip2fast==`version` in every requirements file that pins it, then installed into this venv."""
    if not VERSION.fullmatch(version):
        raise SystemExit(f"--version must look like 1.2.3, got {version!r}")
    for path in PINNED_IN:
        text = path.read_text()
        if not PIN.search(text):
            raise SystemExit(f"{path.relative_to(ROOT)} pins no geoip2fast")
        path.write_text(PIN.sub(f"geoip2fast=={version}", text))
        print(f"pinned geoip2fast=={version} in {path.relative_to(ROOT)}")
    constraints = str(ROOT / "constraints.txt")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", f"geoip2fast=={version}", "-c", constraints], check=True
    )


def check(dat: str | None) -> int:
    from geoip2fast import geoip2fast as bundled

    from telemetry.pipelines import geo

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    data = geo.Geoip2fastData(dat)
    load_seconds = time.perf_counter() - started
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    rng = random.Random(1)
    addresses = [ipaddress.ip_address(rng.getrandbits(32)) for _ in range(20000)]
    started = time.perf_counter()
    for address in addresses:
        data.network(address)
    micros = (time.perf_counter() - started) / len(addresses) * 1e6
    print(f"data: {data.name}")
    print(f"load: {load_seconds:.2f} s, {grown_mb:.0f} MB more peak memory; lookup: {micros:.1f} µs")

    failures = []
    if dat is None and data.name != geo.BUNDLED_DATA:
        failures.append(
            f"the installed data is {data.name}, geo.BUNDLED_DATA says {geo.BUNDLED_DATA}: "
            "set BUNDLED_DATA, and the date in docs/geo.md, to the installed data's"
        )
    known = {name.casefold() for name in bundled.mainListNamesASN}
    mapping = geo.hosting_map()
    missing = sorted(text for text in mapping.by_organisation if text not in known)
    if missing:
        texts = "; ".join(missing)
        failures.append(
            f"organisation texts of geo_hosting.json the data does not hold (renamed? correct them): {texts}"
        )
    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print(f"ok: {len(mapping.by_organisation)} organisation texts of geo_hosting.json all in the data")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", help="pin this geoip2fast release in every requirements file and install it")
    parser.add_argument("--dat", help="check this geoip2fast .dat.gz file instead of the bundled one")
    args = parser.parse_args(argv)
    if args.version:
        pin(args.version)
        # A process of its own: this one may have imported the previous release.
        return subprocess.run([sys.executable, __file__, *(["--dat", args.dat] if args.dat else [])]).returncode
    return check(args.dat)


if __name__ == "__main__":
    sys.exit(main())
