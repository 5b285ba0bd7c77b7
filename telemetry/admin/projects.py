"""`telemetry-admin project add|list`: add or replace a project in MongoDB `projects`, or list them.

    telemetry-admin project add --name "SEO Toolkit" --hash 0123456789abcdef0123456789abcdef \\
        --type plugin --custom-field license_type --custom-field orders_count \\
        --mail mailchimp=LIST_ID --deactivation-reason "too-expensive=It is too expensive"
    telemetry-admin project list

Uses MONGODB_URI and MONGODB_DB (`. .local/env` for the local stack). The document
and its rules are telemetry/common/projects.py's; this is only its command line.
"""

from __future__ import annotations

import argparse
import json

from telemetry.admin import notify as notify_commands
from telemetry.common import config, mongo, projects


def project_document(args: argparse.Namespace) -> dict:
    """The validated document the `add` command's arguments describe; SystemExit naming the broken rule."""
    try:
        return projects.project_document(
            hash=args.hash,
            name=args.name,
            type=args.type,
            custom_fields=args.custom_field or [],
            mail_integrations=dict(projects.mail_integration(spec) for spec in args.mail or []),
            deactivation_reasons=dict(projects.deactivation_reason(spec) for spec in args.deactivation_reason or []),
            mail_double_opt_in=False if args.single_opt_in else None,
        )
    except projects.InvalidProject as e:
        raise SystemExit(f"invalid project: {e}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-admin project", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a project, or replace the one with the same hash")
    add.add_argument("--name", required=True)
    add.add_argument("--hash", required=True, help="the project's public id, as the plugin sends it")
    add.add_argument("--type", choices=projects.TYPES, default="plugin")
    add.add_argument("--custom-field", action="append", help="an `extra` key to keep (repeatable)")
    add.add_argument(
        "--mail", action="append", help=f"PROVIDER=LIST_ID, provider one of {', '.join(projects.MAIL_PROVIDERS)}"
    )
    add.add_argument(
        "--single-opt-in",
        action="store_true",
        help="subscribe the contacts without a confirmation mail (the default is double opt-in)",
    )
    add.add_argument(
        "--deactivation-reason",
        action="append",
        help="SLUG[=LABEL]: one of the project's own reasons and its label (repeatable)",
    )
    commands.add_parser("list", help="print every project")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    document = project_document(args) if args.command == "add" else None
    db = mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))
    try:
        if document is not None:
            # Replacing a project keeps its notification settings (telemetry-admin alerts|digest|webhook).
            # An older release's webhook secrets are moved out of the document first (else save refuses).
            notify_commands.migrate_project(db, document[projects.HASH])
            existing = projects.load_project(db, document[projects.HASH]) or {}
            saved = projects.save_project(db, {**document, **projects.notification_settings(existing)})
            print(f"project {saved['name']!r} ({saved['hash']}) saved")
        else:
            for project in projects.load_projects(db).values():
                print(json.dumps(project, sort_keys=True))  # the readers never return a webhook secret
    finally:
        db.client.close()
    return 0
