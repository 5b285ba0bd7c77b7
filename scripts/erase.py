"""Erase one site's personal data, or one project's, from MongoDB, BigQuery and the pings bucket.

    python scripts/erase.py site --hash H --url https://example.org [--dry-run] [--recent-hours 2]
    python scripts/erase.py project --hash H [--dry-run] [--recent-hours 2]

Nulls the personal fields in MongoDB and BigQuery `sites`/`deactivations` and in
the staging data of failed or running runs, deletes the `rejected` rows and the
stored ping objects; prints a count per store. What it does and does not do:
telemetry/admin/erase.py and docs/privacy.md. Uses GCP_PROJECT,
BQ_DATASET, BQ_STAGING_DATASET, MONGODB_URI (or a Secret Manager version of it),
MONGODB_DB, TRACKING_BUCKET and WORK_BUCKET (see .local/env); exits 0 when done,
1 when BigQuery refused to change a staging table yet (the report names it: run
again later).
"""

from __future__ import annotations

import argparse
import sys

from telemetry.admin import erase
from telemetry.common import cloud, config, mongo, secrets
from telemetry.common.wire import HASH_PATTERN


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("site", "project"):
        p = sub.add_parser(name, help=f"erase one {name}'s personal data")
        p.add_argument("--hash", required=True, help="the project's hash")
        if name == "site":
            p.add_argument("--url", required=True, help="the site's URL (normalised as the pipelines store it)")
        p.add_argument("--dry-run", action="store_true", help="count what would be erased; change nothing")
        p.add_argument(
            "--recent-hours",
            type=int,
            default=2,
            help="also read the stored pings of the last N hours, which the pipelines may not have processed yet",
        )
    args = parser.parse_args(argv)
    if not HASH_PATTERN.fullmatch(args.hash):
        parser.error(f"--hash is not a project hash: {args.hash!r}")
    if args.what == "site":
        try:
            erase.site_urls(args.url)
        except ValueError as e:
            parser.error(f"--url is not a URL the pipelines could store: {e}")
    if args.recent_hours < 0:
        parser.error("--recent-hours must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    target = erase.Target.site(args.hash, args.url) if args.what == "site" else erase.Target(args.hash)
    project = config.require("GCP_PROJECT")
    mongodb_uri = secrets.resolve(config.require("MONGODB_URI"))
    db = mongo.database(mongodb_uri, config.require("MONGODB_DB"))
    try:
        storage = cloud.storage_client(project)
        eraser = erase.Eraser(
            cloud.bigquery_client(project),
            config.require("BQ_DATASET"),
            db,
            storage.bucket(config.require("TRACKING_BUCKET")),
            recent_hours=args.recent_hours,
            staging_dataset=config.require("BQ_STAGING_DATASET"),
            work_bucket=storage.bucket(config.require("WORK_BUCKET")),
        )
        report = eraser.erase(target, dry_run=args.dry_run)
    finally:
        db.client.close()
    print("\n".join(report.lines()), flush=True)
    return 0 if report.complete else 1


if __name__ == "__main__":
    sys.exit(main())
