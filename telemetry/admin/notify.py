"""`telemetry-admin alerts|digest|webhook`: a project's notification settings (docs/notify.md).

    telemetry-admin alerts set --project HASH --to ops@vendor.example [--to ...]
                               [--include SLUG ... | --exclude SLUG ...]
    telemetry-admin alerts clear --project HASH
    telemetry-admin digest set --project HASH daily|weekly|monthly|off
    telemetry-admin webhook add --project HASH --url https://... --event site.deactivated [--event ...]
                                                    prints the endpoint's secret once, alone on the last line
    telemetry-admin webhook list [--project HASH]    id, project, events, URL; never the secret
    telemetry-admin webhook remove --project HASH ID
    telemetry-admin webhook rotate-secret --project HASH ID
                                                    a new secret, printed once; the old one signs beside it for 24 hours
    telemetry-admin webhook migrate-secrets          moves the secrets older releases kept in project
                                                    documents to `webhook_secrets` (idempotent)

Uses MONGODB_URI and MONGODB_DB (`. .local/env` for the local stack); its user writes
`projects` and `webhook_secrets`. The fields and their rules are
telemetry/common/projects.py's, the secrets' telemetry/common/webhook_secrets.py's;
this is only their command line. A webhook URL must be https, unless
NOTIFY_ALLOW_PRIVATE_WEBHOOKS is set (the local stack). Every command that changes a
project first moves that project's secrets out of its document, if it still holds any.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from telemetry.common import config, mongo, projects, webhook_secrets


def _database() -> Any:
    return mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))


def migrate_project(db: Any, project_hash: str) -> None:
    """Move the project's secrets out of its document if an older release left them there
    (save_project would refuse to replace it); SystemExit naming what could not be moved."""
    moved = webhook_secrets.migrate(db, datetime.now(UTC), [project_hash])
    if moved.failed:
        raise SystemExit("webhook secrets not moved: " + "; ".join(moved.failed))


def _change(
    args: argparse.Namespace,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    before_save: Callable[[Any], None] | None = None,
    after_save: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Load the project, apply `change`, run `before_save(db)`, save what `change` returned,
    run `after_save(db)`; SystemExit with the reason otherwise."""
    db = _database()
    try:
        migrate_project(db, args.project)
        project = projects.load_project(db, args.project)
        if project is None:
            raise SystemExit(f"no project {args.project!r}: add it first (telemetry-admin project add ...)")
        try:
            changed = change(project)
            if before_save is not None:
                before_save(db)
            saved = projects.save_project(db, changed)
        except projects.InvalidProject as e:
            raise SystemExit(f"invalid setting: {e}") from None
        if after_save is not None:
            after_save(db)
        return saved
    finally:
        db.client.close()


def alerts_set(args: argparse.Namespace) -> int:
    saved = _change(args, lambda p: projects.with_alerts(p, args.to, args.include or [], args.exclude or []))
    print(f"alerts of {args.project}: {', '.join(projects.alert_recipients(saved))}")
    return 0


def alerts_clear(args: argparse.Namespace) -> int:
    _change(args, projects.without_alerts)
    print(f"alerts of {args.project}: none")
    return 0


def digest_set(args: argparse.Namespace) -> int:
    saved = _change(args, lambda p: projects.with_digest(p, args.frequency))
    print(f"digest of {args.project}: {projects.digest_frequency(saved) or 'off'}")
    return 0


def webhook_add(args: argparse.Namespace) -> int:
    allow_http = bool(config.get("NOTIFY_ALLOW_PRIVATE_WEBHOOKS"))
    added: dict[str, Any] = {}
    secret = webhook_secrets.new_secret()

    def add(project: dict[str, Any]) -> dict[str, Any]:
        changed, endpoint = projects.with_webhook(project, args.url, args.event, allow_http=allow_http)
        added.update(endpoint)
        return changed

    def store_secret(db: Any) -> None:
        # The secret first: an endpoint is never listed without one (a crash leaves at most
        # a secret no endpoint names).
        now = datetime.now(UTC)
        webhook_secrets.add(db, webhook_secrets.secret_document(args.project, added[projects.WEBHOOK_ID], secret, now))

    _change(args, add, store_secret)
    print(f"webhook {added[projects.WEBHOOK_ID]} of {args.project}: {', '.join(added[projects.WEBHOOK_EVENTS])}")
    print("Its signing secret is shown once: keep it now (rotate: telemetry-admin webhook rotate-secret).")
    print(secret)
    return 0


def webhook_list(args: argparse.Namespace) -> int:
    db = _database()
    try:
        found = projects.load_projects(db, [args.project] if args.project else None)
    finally:
        db.client.close()
    print(f"{'id':20}  {'project':32}  {'events':48}  url")
    for project_hash, project in sorted(found.items()):
        for endpoint in projects.webhook_endpoints(project):
            events, url = ",".join(endpoint[projects.WEBHOOK_EVENTS]), endpoint[projects.WEBHOOK_URL]
            print(f"{endpoint[projects.WEBHOOK_ID]:20}  {project_hash:32}  {events:48}  {url}")
    return 0


def webhook_remove(args: argparse.Namespace) -> int:
    # The secret after the endpoint: a delivery never finds a listed endpoint without its secret.
    _change(
        args,
        lambda p: projects.without_webhook(p, args.id),
        after_save=lambda db: webhook_secrets.delete(db, args.project, args.id),
    )
    print(f"webhook {args.id} of {args.project} removed with its secret; its pending deliveries are cancelled")
    return 0


def webhook_rotate(args: argparse.Namespace) -> int:
    db = _database()
    try:
        migrate_project(db, args.project)
        project = projects.load_project(db, args.project)
        if project is None or projects.webhook_endpoint(project, args.id) is None:
            raise SystemExit(f"project {args.project!r} has no webhook {args.id!r}")
        try:
            secret = webhook_secrets.rotate(db, args.project, args.id, datetime.now(UTC))
        except projects.InvalidProject as e:
            raise SystemExit(f"invalid setting: {e}") from None
    finally:
        db.client.close()
    hours = webhook_secrets.ROTATION_GRACE_HOURS
    print(f"webhook {args.id} of {args.project}: new secret, shown once; the old one also signs for {hours} hours")
    print(secret)
    return 0


def webhook_migrate(args: argparse.Namespace) -> int:
    """Every project's secrets out of its document; exit 1 if any could not be moved."""
    db = _database()
    try:
        moved = webhook_secrets.migrate(db, datetime.now(UTC))
    finally:
        db.client.close()
    print(
        f"webhook secrets: {moved.copied} moved to {webhook_secrets.WEBHOOK_SECRETS}, {moved.already_here} already "
        f"there; {moved.projects_cleared} project documents cleared of secrets"
    )
    for failure in moved.failed:
        print(f"not moved: {failure}")
    return 1 if moved.failed else 0


def add_commands(groups: Any) -> None:
    """The three command groups, added to telemetry-admin's parser."""
    alerts = groups.add_parser("alerts", help="deactivation alert recipients of a project").add_subparsers(
        dest="action", required=True
    )
    set_ = alerts.add_parser("set", help="who gets the alerts (and the digest), and for which reasons")
    set_.add_argument("--project", required=True, help="the project's hash")
    set_.add_argument("--to", action="append", required=True, help="a recipient's email address (repeatable)")
    reasons = set_.add_mutually_exclusive_group()
    reasons.add_argument("--include", action="append", help="alert only these reason slugs (repeatable; `none`)")
    reasons.add_argument("--exclude", action="append", help="alert all but these reason slugs (repeatable)")
    set_.set_defaults(run=alerts_set)
    clear = alerts.add_parser("clear", help="no alerts, no digest mail")
    clear.add_argument("--project", required=True)
    clear.set_defaults(run=alerts_clear)

    digest = groups.add_parser("digest", help="the project's digest frequency").add_subparsers(
        dest="action", required=True
    )
    digest_cmd = digest.add_parser("set", help="daily, weekly, monthly or off")
    digest_cmd.add_argument("--project", required=True)
    digest_cmd.add_argument("frequency", choices=(*projects.DIGEST_FREQUENCIES, "off"))
    digest_cmd.set_defaults(run=digest_set)

    webhook = groups.add_parser("webhook", help="Standard Webhooks endpoints of a project").add_subparsers(
        dest="action", required=True
    )
    add = webhook.add_parser("add", help="a new endpoint; prints its secret once, on the last line")
    add.add_argument("--project", required=True)
    add.add_argument("--url", required=True, help="https URL the events are POSTed to")
    add.add_argument("--event", action="append", required=True, choices=projects.WEBHOOK_EVENT_TYPES, help="repeatable")
    add.set_defaults(run=webhook_add)
    listing = webhook.add_parser("list", help="every endpoint (never its secret)")
    listing.add_argument("--project", help="only this project's")
    listing.set_defaults(run=webhook_list)
    remove = webhook.add_parser("remove", help="remove an endpoint by its id")
    remove.add_argument("--project", required=True)
    remove.add_argument("id")
    remove.set_defaults(run=webhook_remove)
    rotate = webhook.add_parser("rotate-secret", help="a new secret for an endpoint, printed once")
    rotate.add_argument("--project", required=True)
    rotate.add_argument("id")
    rotate.set_defaults(run=webhook_rotate)
    migrate = webhook.add_parser(
        "migrate-secrets", help="move secrets that older releases kept in project documents (idempotent)"
    )
    migrate.set_defaults(run=webhook_migrate)
