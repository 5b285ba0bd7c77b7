"""telemetry-admin: the operator's command line (declared in pyproject.toml, installed into .venv/bin).

    telemetry-admin key create --project HASH [--note TEXT]   a new API key; the key alone on the last line
    telemetry-admin key list [--project HASH]                 every key: id, project, made, revoked, note
    telemetry-admin key revoke ID                             the key stops working at once
    telemetry-admin project add ... | project list            a project in MongoDB `projects` (project add --help)
    telemetry-admin alerts set|clear, digest set, webhook add|list|remove|rotate-secret|migrate-secrets
                                                              a project's notifications (telemetry/admin/notify.py)

Uses MONGODB_URI and MONGODB_DB: `. .local/env` for the local stack; for
production, a MONGODB_URI whose user may write `api_keys`, `projects` and
`webhook_secrets` (not the dashboard's read-only one, which must not read
`webhook_secrets`).
"""

from __future__ import annotations

import argparse
import sys

from telemetry.admin import notify as notify_commands
from telemetry.admin import projects as project_commands
from telemetry.analytics import serving
from telemetry.common import config, mongo
from telemetry.common.projects import load_project
from telemetry.dashboard import keys
from telemetry.pipelines import site_state


def _database():
    return mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))


def key_create(args: argparse.Namespace) -> int:
    db = _database()
    # The indexes the API's queries name (telemetry/dashboard/queries.py): the pipelines and the
    # analytics job make them on each run; made here too, before the first key can use them.
    site_state.ensure_indexes(db)
    serving.ensure_indexes(db)
    keys.ensure_indexes(db)
    project = load_project(db, args.project)
    if project is None:
        print(f"no project {args.project!r}: add it first (telemetry-admin project add ...)", file=sys.stderr)
        return 1
    new = keys.create(db, args.project, note=args.note or "")
    print(f"API key {new.id} for project {project.get('name')!r} ({new.project}).")
    print("It is shown once and stored only as a hash: keep it now. Revoke: telemetry-admin key revoke " + new.id)
    print(new.key)
    return 0


def key_list(args: argparse.Namespace) -> int:
    rows = keys.listing(_database(), args.project)
    print(f"{'id':12}  {'project':32}  {'created (UTC)':19}  {'revoked (UTC)':19}  note")
    for row in rows:
        revoked = row.get("revoked_at")
        print(
            f"{row['_id']:12}  {row['project']:32}  {row['created_at']:%Y-%m-%d %H:%M:%S}  "
            f"{f'{revoked:%Y-%m-%d %H:%M:%S}' if revoked else '-':19}  {row.get('note') or ''}"
        )
    return 0


def key_revoke(args: argparse.Namespace) -> int:
    if not keys.revoke(_database(), args.id):
        print(f"no key {args.id!r} (see telemetry-admin key list)", file=sys.stderr)
        return 1
    print(f"key {args.id} revoked")
    return 0


def project_command(args: argparse.Namespace) -> int:
    return project_commands.main([args.action, *args.rest])


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="telemetry-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    groups = main_parser.add_subparsers(dest="group", required=True)

    key = groups.add_parser("key", help="API keys of the dashboard's API").add_subparsers(dest="action", required=True)
    create = key.add_parser("create", help="make a key for a project; prints it once, on the last line")
    create.add_argument("--project", required=True, help="the project's hash")
    create.add_argument("--note", help="who or what the key is for (shown by key list)")
    create.set_defaults(run=key_create)
    listing = key.add_parser("list", help="every key (never the key itself)")
    listing.add_argument("--project", help="only this project's keys")
    listing.set_defaults(run=key_list)
    revoke = key.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id", help="the key's id (key list; the 12 hex digits after wpt_)")
    revoke.set_defaults(run=key_revoke)

    project = groups.add_parser("project", help="projects: add or list (project add --help)")
    project.add_argument("action", choices=("add", "list"))
    project.add_argument("rest", nargs=argparse.REMAINDER, help="the options of ACTION (project add --help)")
    project.set_defaults(run=project_command)

    notify_commands.add_commands(groups)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as e:  # a setting missing or malformed (config.require)
        print(f"telemetry-admin: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
