"""The project document: what MongoDB `projects` holds for each plugin or theme, and
everything the pipelines, the report and the local tools know about it.

The dashboard owns the documents in production; locally they are written by
`telemetry-admin project`, the demo, the soak and the benchmark, all through
`save_project`. One document per project:

    {"hash": "<public id, as the plugin sends it>",
     "name": "SEO Toolkit",
     "type": "plugin" | "theme",
     "custom_fields": ["license_type", ...],          # the `extra` keys kept
     "mail_integrations": {"mailchimp": {"enabled": true, "list_id": "..."}},
     "mail_double_opt_in": false,                     # optional; absent means true
     "deactivation_reasons": {"too-expensive": "It is too expensive"},
     "alerts": {"recipients": ["ops@vendor.example"],      # optional: who gets deactivation alerts,
                "include_reasons": [], "exclude_reasons": ["none"]},  # spike alerts and digests
     "digest": "weekly",                              # optional: daily | weekly | monthly; absent: off
     "webhooks": [{"id": "wh_...", "url": "https://...",
                   "events": ["site.deactivated"]}]}   # optional (Standard Webhooks endpoints)

An endpoint's signing secret is not here: it is in MongoDB `webhook_secrets`
(telemetry/common/webhook_secrets.py), which the dashboard's user cannot read.
Older releases kept `secret`, `previous_secret` and `previous_secret_until` in each
endpoint (LEGACY_SECRET_KEYS): no reader here returns them, `save_project` never
replaces a document that still holds them, and `webhook_secrets.migrate` moves them.

Invariants:
- FIELDS lists every field; `load_projects` reads exactly those (PROJECTION: of an
  endpoint, WEBHOOK_KEYS only), and `validate` refuses any other, so a new field is
  added here and nowhere else.
- Reading is lenient, as the dashboard may store older forms (`deactivation_reasons`
  as a list of slugs, any missing field): the readers below give each field's
  meaning whatever form it has. Writing is strict: `validate` refuses a document
  that a reader would have to guess about.
- `hash` is unique in the collection (`ensure_indexes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from telemetry.common import wire

PROJECTS = "projects"  # the MongoDB collection

HASH = "hash"
NAME = "name"
TYPE = "type"
CUSTOM_FIELDS = "custom_fields"
MAIL_INTEGRATIONS = "mail_integrations"
MAIL_DOUBLE_OPT_IN = "mail_double_opt_in"
DEACTIVATION_REASONS = "deactivation_reasons"
ALERTS = "alerts"
DIGEST = "digest"
WEBHOOKS = "webhooks"
FIELDS = (
    HASH, NAME, TYPE, CUSTOM_FIELDS, MAIL_INTEGRATIONS, MAIL_DOUBLE_OPT_IN, DEACTIVATION_REASONS,
    ALERTS, DIGEST, WEBHOOKS,
)  # fmt: skip
REQUIRED = (HASH, NAME, TYPE)

TYPES = ("plugin", "theme")
# The integrations the dashboard's mail API server subscribes contacts with (pipelines/mail.py).
MAIL_PROVIDERS = ("mailchimp", "mailjet", "wemail")

# A deactivation reason id, as the client's `appsero_custom_deactivation_reasons`
# filter lets plugin authors add them: a slug. The pipelines set aside a ping whose
# reason_id is not one; a project's own reasons are slugs too.
REASON_SLUG = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NAME_CHARS = 200
MAX_LABEL_CHARS = 200

# Notifications (telemetry/notify/, docs/notify.md).
ALERT_RECIPIENTS = "recipients"
ALERT_INCLUDE = "include_reasons"
ALERT_EXCLUDE = "exclude_reasons"
ALERT_KEYS = (ALERT_RECIPIENTS, ALERT_INCLUDE, ALERT_EXCLUDE)
MAX_ALERT_RECIPIENTS = 20
DIGEST_FREQUENCIES = ("daily", "weekly", "monthly")
WEBHOOK_ID = "id"
WEBHOOK_URL = "url"
WEBHOOK_EVENTS = "events"
WEBHOOK_KEYS = (WEBHOOK_ID, WEBHOOK_URL, WEBHOOK_EVENTS)
# What older releases kept in each endpoint: its signing secrets, now in `webhook_secrets`.
LEGACY_SECRET_KEYS = ("secret", "previous_secret", "previous_secret_until")
# What the readers ask MongoDB for: every field, and of an endpoint its public keys only.
PROJECTION = {
    "_id": 0,
    **{field: 1 for field in FIELDS if field != WEBHOOKS},
    **{f"{WEBHOOKS}.{key}": 1 for key in WEBHOOK_KEYS},
}
WEBHOOK_ID_PATTERN = re.compile(r"wh_[A-Za-z0-9]{8,32}")
MAX_WEBHOOKS = 10
MAX_URL_CHARS = 2000
# The webhook event types (telemetry/notify/events.WEBHOOK_TYPES; a test keeps them in step).
WEBHOOK_EVENT_TYPES = ("site.activated", "site.deactivated", "figures.ready")


class InvalidProject(ValueError):
    """A project document that breaks the contract; the message names the field and the rule."""


# --- reading ---------------------------------------------------------------------


def ensure_indexes(db: Any) -> None:
    """The unique index on `hash`. Idempotent: creating an index that exists with the same spec is a no-op."""
    db[PROJECTS].create_index([(HASH, 1)], unique=True, name="hash_unique")


def load_projects(db: Any, hashes: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every project by hash (only those of `hashes`, if given), with the FIELDS it has."""
    query = {HASH: {"$in": sorted(set(hashes))}} if hashes is not None else {}
    return {doc[HASH]: doc for doc in db[PROJECTS].find(query, PROJECTION)}


def load_project(db: Any, project_hash: str) -> dict[str, Any] | None:
    """One project, with the FIELDS it has; None when no project has that hash."""
    return db[PROJECTS].find_one({HASH: project_hash}, PROJECTION)


def custom_field_keys(project: Mapping[str, Any]) -> list[str]:
    """The `extra` keys the project keeps of a ping (its whitelist); none when unset."""
    return project.get(CUSTOM_FIELDS) or []


def enabled_mail_integrations(project: Mapping[str, Any]) -> list[str]:
    """The names of the project's mail integrations that are enabled, sorted."""
    integrations = project.get(MAIL_INTEGRATIONS) or {}
    return sorted(
        name for name, settings in integrations.items() if isinstance(settings, dict) and settings.get("enabled")
    )


def mail_double_opt_in(project: Mapping[str, Any]) -> bool:
    """Whether the project's contacts are subscribed with double opt-in: yes unless
    its document says `"mail_double_opt_in": false`."""
    return project.get(MAIL_DOUBLE_OPT_IN) is not False


def mail_flag(record: Mapping[str, Any], projects: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a new site of this record's project must be sent to the mail integration."""
    project = projects.get(record["hash"])
    return bool(project and enabled_mail_integrations(project))


def project_reason_labels(project: Mapping[str, Any]) -> dict[str, str]:
    """The project's own reason slugs and the labels the dashboard shows for them.

    `deactivation_reasons` is an object from slug to label, or (the older form)
    a list of slugs, each its own label.
    """
    reasons = project.get(DEACTIVATION_REASONS) or {}
    if isinstance(reasons, dict):
        return {str(slug): str(label) for slug, label in reasons.items()}
    return {str(slug): str(slug) for slug in reasons}


def project_name(project: Mapping[str, Any]) -> str:
    """The project's display name; its hash when it has none."""
    return str(project.get(NAME) or project.get(HASH) or "")


def alert_recipients(project: Mapping[str, Any]) -> list[str]:
    """Everyone who gets the project's alerts and digests; none when unset."""
    return list((project.get(ALERTS) or {}).get(ALERT_RECIPIENTS) or [])


def alerts_reason(project: Mapping[str, Any], reason: str | None) -> bool:
    """Whether a deactivation with this reason slug (None or "" when none) is alerted:
    in `include_reasons` when that lists any, and not in `exclude_reasons`.
    No reason counts as the client's `none`."""
    alerts = project.get(ALERTS) or {}
    slug = reason or "none"
    include = alerts.get(ALERT_INCLUDE) or []
    return (not include or slug in include) and slug not in (alerts.get(ALERT_EXCLUDE) or [])


def digest_frequency(project: Mapping[str, Any]) -> str | None:
    """`daily`, `weekly` or `monthly`; None when the digest is off."""
    value = project.get(DIGEST)
    return value if value in DIGEST_FREQUENCIES else None


def webhook_endpoints(project: Mapping[str, Any], event_type: str | None = None) -> list[dict[str, Any]]:
    """The project's webhook endpoints (id, url, events), only those subscribed
    to `event_type` when given."""
    endpoints = [dict(e) for e in project.get(WEBHOOKS) or [] if isinstance(e, dict)]
    return [e for e in endpoints if event_type is None or event_type in (e.get(WEBHOOK_EVENTS) or [])]


def webhook_endpoint(project: Mapping[str, Any], endpoint_id: str) -> dict[str, Any] | None:
    return next((e for e in webhook_endpoints(project) if e.get(WEBHOOK_ID) == endpoint_id), None)


def is_known_reason(reason: str, project: Mapping[str, Any]) -> bool:
    """Whether the client library or the project lists the reason."""
    return reason in wire.CLIENT_DEACTIVATION_REASONS or reason in project_reason_labels(project)


# --- writing ---------------------------------------------------------------------


def _text(field: str, value: Any, max_chars: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
        raise InvalidProject(f"{field} must be a non-empty string of at most {max_chars} characters, got {value!r}")
    return value


def _custom_fields(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidProject(f"{CUSTOM_FIELDS} must be a list of `extra` keys, got {value!r}")
    for key in value:
        # The keys a ping's `extra` can hold at all (wire._check_key): any other would never match.
        if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key:
            raise InvalidProject(
                f"{CUSTOM_FIELDS}: {key!r} is not an `extra` key (a non-empty string, no '.', NUL or leading '$')"
            )
    if len(set(value)) != len(value):
        raise InvalidProject(f"{CUSTOM_FIELDS} lists a key twice: {value!r}")
    return value


def _mail_integrations(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidProject(f"{MAIL_INTEGRATIONS} must be an object of provider -> settings, got {value!r}")
    for provider, settings in value.items():
        if provider not in MAIL_PROVIDERS:
            raise InvalidProject(
                f"{MAIL_INTEGRATIONS}: provider {provider!r} is not one of {', '.join(MAIL_PROVIDERS)}"
            )
        if not isinstance(settings, dict) or not isinstance(settings.get("enabled"), bool):
            raise InvalidProject(f"{MAIL_INTEGRATIONS}.{provider} must be an object with `enabled` true or false")
        if "list_id" in settings:
            _text(f"{MAIL_INTEGRATIONS}.{provider}.list_id", settings["list_id"], MAX_NAME_CHARS)
    return value


def _deactivation_reasons(value: Any) -> dict[str, str] | list[str]:
    slugs = list(value) if isinstance(value, (dict, list)) else None
    if slugs is None:
        raise InvalidProject(f"{DEACTIVATION_REASONS} must be an object of slug -> label, got {value!r}")
    for slug in slugs:
        if not isinstance(slug, str) or not REASON_SLUG.fullmatch(slug):
            raise InvalidProject(f"{DEACTIVATION_REASONS}: {slug!r} is not a slug of at most 64 of A-Z a-z 0-9 _ -")
    if isinstance(value, dict):
        for slug, label in value.items():
            _text(f"{DEACTIVATION_REASONS}.{slug}", label, MAX_LABEL_CHARS)
    elif len(set(slugs)) != len(slugs):
        raise InvalidProject(f"{DEACTIVATION_REASONS} lists a slug twice: {value!r}")
    return value


def email_address(value: Any) -> str:
    """A recipient's address in its normalized form (email-validator: syntax only, no DNS),
    or InvalidProject saying why it is not one."""
    from email_validator import EmailNotValidError, validate_email

    if not isinstance(value, str):
        raise InvalidProject(f"an alert recipient must be an email address, got {value!r}")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as e:
        raise InvalidProject(f"alert recipient {value!r} is not an email address: {e}") from e


def _alerts(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidProject(f"{ALERTS} must be an object with {', '.join(ALERT_KEYS)}, got {value!r}")
    unknown = sorted(set(value) - set(ALERT_KEYS))
    if unknown:
        raise InvalidProject(f"{ALERTS}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(ALERT_KEYS)}")
    recipients = value.get(ALERT_RECIPIENTS)
    if not isinstance(recipients, list) or not recipients:
        raise InvalidProject(f"{ALERTS}.{ALERT_RECIPIENTS} must be a non-empty list of email addresses")
    if len(recipients) > MAX_ALERT_RECIPIENTS:
        raise InvalidProject(f"{ALERTS}.{ALERT_RECIPIENTS}: at most {MAX_ALERT_RECIPIENTS} addresses")
    normalized = [email_address(r) for r in recipients]
    if normalized != recipients:
        raise InvalidProject(f"{ALERTS}.{ALERT_RECIPIENTS} must hold normalized addresses: {normalized!r}")
    if len(set(recipients)) != len(recipients):
        raise InvalidProject(f"{ALERTS}.{ALERT_RECIPIENTS} lists an address twice: {recipients!r}")
    for key in (ALERT_INCLUDE, ALERT_EXCLUDE):
        slugs = value.get(key, [])
        if not isinstance(slugs, list) or not all(isinstance(x, str) and REASON_SLUG.fullmatch(x) for x in slugs):
            raise InvalidProject(f"{ALERTS}.{key} must be a list of reason slugs (A-Z a-z 0-9 _ -), got {slugs!r}")
    if value.get(ALERT_INCLUDE) and value.get(ALERT_EXCLUDE):
        raise InvalidProject(f"{ALERTS}: give {ALERT_INCLUDE} or {ALERT_EXCLUDE}, not both")
    return value


def webhook_url(value: Any, allow_http: bool = False) -> str:
    """An endpoint URL: https (http only when `allow_http`, the local stack's receiver),
    with a host, no credentials and no fragment."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or not value or len(value) > MAX_URL_CHARS:
        raise InvalidProject(f"a webhook URL is a string of at most {MAX_URL_CHARS} characters, got {value!r}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as e:
        raise InvalidProject(f"webhook URL {value!r} does not parse: {e}") from e
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise InvalidProject(f"webhook URL {value!r} must use {' or '.join(schemes)}")
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise InvalidProject(f"webhook URL {value!r} needs a host and no user, password or #fragment")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidProject(f"webhook URL {value!r} holds whitespace or control characters")
    return value


def webhook_events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(v in WEBHOOK_EVENT_TYPES for v in value):
        raise InvalidProject(
            f"webhook events must be a non-empty list of {', '.join(WEBHOOK_EVENT_TYPES)}, got {value!r}"
        )
    if len(set(value)) != len(value):
        raise InvalidProject(f"webhook events list a type twice: {value!r}")
    return value


def _webhooks(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_WEBHOOKS:
        raise InvalidProject(f"{WEBHOOKS} must be a list of at most {MAX_WEBHOOKS} endpoints, got {value!r}")
    for endpoint in value:
        keys = set(endpoint) if isinstance(endpoint, dict) else set()
        if keys != set(WEBHOOK_KEYS):
            # A secret included: it lives in `webhook_secrets`, never in the project document.
            raise InvalidProject(f"a webhook endpoint is an object with {', '.join(WEBHOOK_KEYS)} and nothing else")
        if not isinstance(endpoint[WEBHOOK_ID], str) or not WEBHOOK_ID_PATTERN.fullmatch(endpoint[WEBHOOK_ID]):
            raise InvalidProject(f"webhook id {endpoint[WEBHOOK_ID]!r} is not wh_ + 8 to 32 letters or digits")
        # The scheme is checked where it matters: `telemetry-admin webhook add` and each delivery.
        webhook_url(endpoint[WEBHOOK_URL], allow_http=True)
        webhook_events(endpoint[WEBHOOK_EVENTS])
    ids = [e[WEBHOOK_ID] for e in value]
    if len(set(ids)) != len(ids):
        raise InvalidProject(f"{WEBHOOKS}: an endpoint id is used twice: {ids!r}")
    return value


def validate(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as a plain dict if it keeps the contract; InvalidProject naming the first broken rule otherwise."""
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        raise InvalidProject(f"unknown project field(s) {', '.join(unknown)}: the fields are {', '.join(FIELDS)}")
    missing = [field for field in REQUIRED if field not in document]
    if missing:
        raise InvalidProject(f"a project needs {', '.join(missing)}")
    project_hash = document[HASH]
    if not isinstance(project_hash, str) or not wire.HASH_PATTERN.fullmatch(project_hash):
        raise InvalidProject(f"hash must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-', got {project_hash!r}")
    _text(NAME, document[NAME], MAX_NAME_CHARS)
    if document[TYPE] not in TYPES:
        raise InvalidProject(f"type must be one of {', '.join(TYPES)}, got {document[TYPE]!r}")
    if CUSTOM_FIELDS in document:
        _custom_fields(document[CUSTOM_FIELDS])
    if MAIL_INTEGRATIONS in document:
        _mail_integrations(document[MAIL_INTEGRATIONS])
    if MAIL_DOUBLE_OPT_IN in document and not isinstance(document[MAIL_DOUBLE_OPT_IN], bool):
        raise InvalidProject(f"{MAIL_DOUBLE_OPT_IN} must be true or false, got {document[MAIL_DOUBLE_OPT_IN]!r}")
    if DEACTIVATION_REASONS in document:
        _deactivation_reasons(document[DEACTIVATION_REASONS])
    if ALERTS in document:
        _alerts(document[ALERTS])
    if DIGEST in document and document[DIGEST] not in DIGEST_FREQUENCIES:
        raise InvalidProject(f"{DIGEST} must be one of {', '.join(DIGEST_FREQUENCIES)} (leave it out for off)")
    if WEBHOOKS in document:
        _webhooks(document[WEBHOOKS])
    return dict(document)


def project_document(
    hash: str,
    name: str,
    type: str = "plugin",
    custom_fields: Iterable[str] = (),
    mail_integrations: Mapping[str, Mapping[str, Any]] | None = None,
    deactivation_reasons: Mapping[str, str] | None = None,
    mail_double_opt_in: bool | None = None,
    alerts: Mapping[str, Any] | None = None,
    digest: str | None = None,
    webhooks: Iterable[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A validated project document. `mail_double_opt_in`, `alerts`, `digest` and `webhooks`
    None leave the field out (double opt-in; no alerts, no digest, no webhooks)."""
    document: dict[str, Any] = {
        HASH: hash,
        NAME: name,
        TYPE: type,
        CUSTOM_FIELDS: list(custom_fields),
        MAIL_INTEGRATIONS: dict(mail_integrations or {}),
        DEACTIVATION_REASONS: dict(deactivation_reasons or {}),
    }
    if mail_double_opt_in is not None:
        document[MAIL_DOUBLE_OPT_IN] = mail_double_opt_in
    if alerts is not None:
        document[ALERTS] = dict(alerts)
    if digest is not None:
        document[DIGEST] = digest
    if webhooks is not None:
        document[WEBHOOKS] = [dict(w) for w in webhooks]
    return validate(document)


def mail_integration(spec: str) -> tuple[str, dict[str, Any]]:
    """`PROVIDER=LIST_ID` (a command line's form) -> (provider, its enabled settings)."""
    provider, _, list_id = spec.partition("=")
    if provider not in MAIL_PROVIDERS or not list_id:
        raise InvalidProject(f"a mail integration is PROVIDER=LIST_ID with PROVIDER one of {', '.join(MAIL_PROVIDERS)}")
    return provider, {"enabled": True, "list_id": list_id}


def deactivation_reason(spec: str) -> tuple[str, str]:
    """`SLUG[=LABEL]` (a command line's form) -> (slug, label); the label defaults to the slug."""
    slug, _, label = spec.partition("=")
    if not REASON_SLUG.fullmatch(slug):
        raise InvalidProject(f"a deactivation reason is SLUG[=LABEL], SLUG of A-Z a-z 0-9 _ -, got {slug!r}")
    return slug, label or slug


# --- notification settings (`telemetry-admin alerts|digest|webhook`) ----------------------

NOTIFICATION_FIELDS = (ALERTS, DIGEST, WEBHOOKS)


def notification_settings(project: Mapping[str, Any]) -> dict[str, Any]:
    """The project's notification fields as stored (kept when `project add` replaces the rest)."""
    return {key: project[key] for key in NOTIFICATION_FIELDS if key in project}


def with_alerts(
    project: Mapping[str, Any], recipients: Iterable[str], include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """The project with these alert recipients and reason filters, validated."""
    addresses = list(dict.fromkeys(email_address(r) for r in recipients))
    alerts = {ALERT_RECIPIENTS: addresses, ALERT_INCLUDE: list(include), ALERT_EXCLUDE: list(exclude)}
    return validate({**project, ALERTS: alerts})


def without_alerts(project: Mapping[str, Any]) -> dict[str, Any]:
    return validate({k: v for k, v in project.items() if k != ALERTS})


def with_digest(project: Mapping[str, Any], frequency: str) -> dict[str, Any]:
    """The project with its digest `daily`, `weekly`, `monthly`, or `off` (the field left out)."""
    if frequency == "off":
        return validate({k: v for k, v in project.items() if k != DIGEST})
    return validate({**project, DIGEST: frequency})


def with_webhook(
    project: Mapping[str, Any], url: str, event_types: Iterable[str], allow_http: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The project with a new endpoint (a new id; its secret is webhook_secrets'); returns (project, endpoint)."""
    import secrets

    endpoint = {
        WEBHOOK_ID: f"wh_{secrets.token_hex(8)}",
        WEBHOOK_URL: webhook_url(url, allow_http=allow_http),
        WEBHOOK_EVENTS: webhook_events(list(dict.fromkeys(event_types))),
    }
    return validate({**project, WEBHOOKS: [*webhook_endpoints(project), endpoint]}), endpoint


def without_webhook(project: Mapping[str, Any], endpoint_id: str) -> dict[str, Any]:
    if webhook_endpoint(project, endpoint_id) is None:
        raise InvalidProject(f"project {project.get(HASH)!r} has no webhook {endpoint_id!r}")
    kept = [e for e in webhook_endpoints(project) if e[WEBHOOK_ID] != endpoint_id]
    rest = {k: v for k, v in project.items() if k != WEBHOOKS}
    return validate({**rest, WEBHOOKS: kept} if kept else rest)


def legacy_webhook_secrets(db: Any, hashes: Iterable[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """The secrets older releases kept in project documents (only those of `hashes`, if given):
    {hash: {endpoint id: {secret, previous_secret, previous_secret_until, as stored}}}.
    Read by the migration alone (webhook_secrets.migrate)."""
    query: dict[str, Any] = {f"{WEBHOOKS}.{LEGACY_SECRET_KEYS[0]}": {"$exists": True}}
    if hashes is not None:
        query[HASH] = {"$in": sorted(set(hashes))}
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in db[PROJECTS].find(query, {"_id": 0, HASH: 1, WEBHOOKS: 1}):
        held = {
            e[WEBHOOK_ID]: {k: e[k] for k in LEGACY_SECRET_KEYS if k in e}
            for e in doc.get(WEBHOOKS) or []
            if isinstance(e, dict) and LEGACY_SECRET_KEYS[0] in e and isinstance(e.get(WEBHOOK_ID), str)
        }
        if held:
            found[doc[HASH]] = held
    return found


def drop_legacy_webhook_secrets(db: Any, project_hash: str, endpoint_ids: Iterable[str]) -> bool:
    """Remove these endpoints' secrets from the project's document, the rest of it as it is;
    whether it changed. The endpoints are rewritten only if no one changed them meanwhile."""
    doc = db[PROJECTS].find_one({HASH: project_hash}, {"_id": 0, WEBHOOKS: 1})
    if not doc or not isinstance(doc.get(WEBHOOKS), list):
        return False
    ids = set(endpoint_ids)
    cleared = [
        {k: v for k, v in e.items() if k not in LEGACY_SECRET_KEYS}
        if isinstance(e, dict) and e.get(WEBHOOK_ID) in ids
        else e
        for e in doc[WEBHOOKS]
    ]
    if cleared == doc[WEBHOOKS]:
        return False
    result = db[PROJECTS].update_one({HASH: project_hash, WEBHOOKS: doc[WEBHOOKS]}, {"$set": {WEBHOOKS: cleared}})
    return bool(result.modified_count)


def save_project(db: Any, document: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the document and store it, replacing the project with the same hash; returns what was stored.
    A stored document that still holds webhook secrets (an older release's) is never replaced, as
    that would drop them: InvalidProject until `telemetry-admin webhook migrate-secrets` moved them."""
    from pymongo.errors import DuplicateKeyError

    project = validate(document)
    ensure_indexes(db)
    unmigrated = {f"{WEBHOOKS}.{LEGACY_SECRET_KEYS[0]}": {"$exists": True}}
    try:
        # The upsert of a document that does not match inserts, and the unique hash refuses it.
        db[PROJECTS].replace_one({HASH: project[HASH], "$nor": [unmigrated]}, project, upsert=True)
    except DuplicateKeyError:
        raise InvalidProject(
            f"project {project[HASH]!r} still holds webhook secrets in its document: "
            "run telemetry-admin webhook migrate-secrets first"
        ) from None
    return project
