"""Add or update a project in MongoDB `projects`, for local use (the dashboard owns them in production).

    python scripts/projects.py add --name "SEO Toolkit" --hash 0123456789abcdef0123456789abcdef \\
        --type plugin --custom-field license_type --custom-field orders_count \\
        --mail mailchimp=LIST_ID --deactivation-reason "too-expensive=It is too expensive"
    python scripts/projects.py list

Uses MONGODB_URI and MONGODB_DB (see .local/env).
"""

from __future__ import annotations

import argparse
import json
import sys

from telemetry.common import config, mongo
from telemetry.common.wire import HASH_PATTERN
from telemetry.pipelines import mongodb
from telemetry.pipelines.records import REASON_SLUG

MAIL_PROVIDERS = ("mailchimp", "mailjet", "wemail")


def project_document(args: argparse.Namespace) -> dict:
    if not HASH_PATTERN.fullmatch(args.hash):
        raise SystemExit(f"--hash must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-', got {args.hash!r}")
    integrations = {}
    for spec in args.mail or []:
        provider, _, list_id = spec.partition("=")
        if provider not in MAIL_PROVIDERS or not list_id:
            raise SystemExit(f"--mail takes PROVIDER=LIST_ID with PROVIDER one of {', '.join(MAIL_PROVIDERS)}")
        integrations[provider] = {"enabled": True, "list_id": list_id}
    reasons = {}
    for spec in args.deactivation_reason or []:
        slug, _, label = spec.partition("=")
        if not REASON_SLUG.fullmatch(slug):
            raise SystemExit(f"--deactivation-reason takes SLUG[=LABEL], SLUG of A-Z a-z 0-9 _ -, got {slug!r}")
        reasons[slug] = label or slug
    return {
        "hash": args.hash,
        "name": args.name,
        "type": args.type,
        "custom_fields": args.custom_field or [],
        "mail_integrations": integrations,
        "deactivation_reasons": reasons,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a project, or replace the one with the same hash")
    add.add_argument("--name", required=True)
    add.add_argument("--hash", required=True, help="the project's public id, as the plugin sends it")
    add.add_argument("--type", choices=("plugin", "theme"), default="plugin")
    add.add_argument("--custom-field", action="append", help="an `extra` key to keep (repeatable)")
    add.add_argument("--mail", action="append", help="PROVIDER=LIST_ID, provider mailchimp, mailjet or wemail")
    add.add_argument(
        "--deactivation-reason",
        action="append",
        help="SLUG[=LABEL]: one of the project's own reasons and its label (repeatable)",
    )
    commands.add_parser("list", help="print every project")
    args = parser.parse_args(argv)

    db = mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))
    mongodb.ensure_indexes(db)
    if args.command == "add":
        document = project_document(args)
        db[mongodb.PROJECTS].replace_one({"hash": document["hash"]}, document, upsert=True)
        print(f"project {document['name']!r} ({document['hash']}) saved")
    else:
        for project in mongodb.load_projects(db).values():
            print(json.dumps(project, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
