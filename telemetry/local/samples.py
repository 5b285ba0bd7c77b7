"""Realistic pings, shaped like the Appsero client's, for the demo, tests and benchmarks.

Values are what WordPress sends: the site title HTML-escaped, names with `&`,
`<` and `>` escaped, custom deactivation reasons beside the client's own.

`http_build_query` encodes a dict exactly as PHP's does for the client's
arrays (tests check it against php-cli); no PyPI package reproduces PHP's
bracket encoding, hence these few lines.
"""

from __future__ import annotations

import hashlib
import html
import random
from typing import Any
from urllib.parse import quote_plus

from telemetry.common.wire import CLIENT_DEACTIVATION_REASONS

CLIENT_VERSION = "2.0.4"


def http_build_query(data: dict[str, Any]) -> str:
    """PHP's `http_build_query($data)` for nested arrays of scalars (RFC 1738, `&`)."""
    pairs: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if value is None:
            return  # PHP leaves nulls out
        if isinstance(value, dict):
            for key, child in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), child)
        elif isinstance(value, list):
            for index, child in enumerate(value):
                walk(f"{prefix}[{index}]", child)
        else:
            if value is True:
                value = 1
            elif value is False:
                value = 0
            pairs.append(f"{_php_urlencode(prefix)}={_php_urlencode(str(value))}")

    walk("", data)
    return "&".join(pairs)


def _php_urlencode(text: str) -> str:
    """PHP's urlencode: like quote_plus, but `~` is encoded too."""
    return quote_plus(text, safe="").replace("~", "%7E")


PLUGINS = [
    ("woocommerce", "WooCommerce"),
    ("akismet", "Akismet Anti-spam"),
    ("contact-form-7", "Contact Form 7"),
    ("wordpress-seo", "Yoast SEO"),
    ("elementor", "Elementor"),
    ("jetpack", "Jetpack"),
    ("wpforms-lite", "WPForms Lite"),
    ("classic-editor", "Classic Editor"),
    ("really-simple-ssl", "Really Simple SSL"),
    ("wp-mail-smtp", "WP Mail SMTP"),
]
LOCALES = ["en_US", "de_DE", "fr_FR", "es_ES", "pt_BR", "ja", "nl_NL", "it_IT"]
THEMES = [("twentytwentyfour", "Twenty Twenty-Four"), ("astra", "Astra"), ("kadence", "Kadence")]
NAMES = ["Zoë", "Łukasz", "María", "O'Brien", "Chen", "Ngozi", "Søren", "Aiko", "Smith & Sons"]
SITE_TITLES = ['Bakery & Café "Ñandú"', "L'Atelier", "Shop", "Blog", "Agentur Müller"]


# Reason slugs plugin authors add through the client's `appsero_custom_deactivation_reasons` filter.
CUSTOM_DEACTIVATION_REASONS = ["too-expensive", "switched-to-pro", "temporary_deactivation"]


def wp_title(text: str) -> str:
    """A site title as WordPress stores and sends it: HTML-escaped, `'` as `&#039;`."""
    return html.escape(text, quote=True).replace("&#x27;", "&#039;")


def wp_user_name(text: str) -> str:
    """A user name as WordPress sends it: `&`, `<` and `>` escaped."""
    return html.escape(text, quote=False)


def site_url(index: int) -> str:
    return f"https://site-{index}.example.org"


def track_payload(rng: random.Random, project_hash: str, site_index: int, extra: dict[str, Any] | None = None) -> dict:
    """A `track` body as the client builds it, for site number `site_index`."""
    url = site_url(site_index)
    plugins = rng.sample(PLUGINS, rng.randint(2, len(PLUGINS)))
    theme_slug, theme_name = rng.choice(THEMES)
    users = {"total": rng.randint(1, 500), "administrator": rng.randint(1, 3), "subscriber": rng.randint(0, 400)}
    return {
        "url": url,
        "site": wp_title(f"Site {site_index} – {rng.choice(SITE_TITLES)}"),
        "admin_email": f"owner{site_index}@example.org",
        "first_name": wp_user_name(rng.choice(NAMES)),
        "last_name": wp_user_name(rng.choice(NAMES)),
        "hash": project_hash,
        "server": {
            "software": rng.choice(["nginx/1.25.3", "Apache/2.4.58", "LiteSpeed"]),
            "php_version": rng.choice(["7.4.33", "8.1.27", "8.2.10", "8.3.1"]),
            "mysql_version": rng.choice(["8.0.35", "10.6.16", "5.7.44"]),
            "php_max_upload_size": rng.choice(["2 MB", "64 MB", "128 MB"]),
            "php_default_timezone": "UTC",
            "php_soap": rng.choice(["Yes", "No"]),
            "php_fsockopen": "Yes",
            "php_curl": "Yes",
        },
        "wp": {
            "memory_limit": rng.choice(["128M", "256M", "512M"]),
            "debug_mode": rng.choice(["Yes", "No"]),
            "locale": rng.choice(LOCALES),
            "version": rng.choice(["6.3.2", "6.4.2", "6.5.0"]),
            "multisite": rng.choice(["Yes", "No"]),
            "theme_slug": theme_slug,
            "theme_name": theme_name,
            "theme_version": "1.0",
            "theme_uri": f"https://wordpress.org/themes/{theme_slug}/",
            "theme_author": "the WordPress team",
        },
        "users": users,
        "active_plugins": len(plugins),
        "inactive_plugins": rng.randint(0, 10),
        "ip_address": f"203.0.113.{site_index % 250 + 1}",
        "project_version": rng.choice(["2.3.0", "2.3.1", "2.4.0"]),
        "tracking_skipped": False,
        "is_local": rng.random() < 0.05,
        "plugins": {
            slug: {"name": name, "version": f"{rng.randint(1, 9)}.{rng.randint(0, 9)}"} for slug, name in plugins
        },
        "extra": extra
        if extra is not None
        else {"license_type": rng.choice(["free", "pro"]), "orders_count": rng.randint(0, 999)},
        "client": CLIENT_VERSION,
    }


def deactivate_payload(rng: random.Random, project_hash: str, site_index: int) -> dict:
    body = track_payload(rng, project_hash, site_index)
    body["reason_id"] = rng.choice([*sorted(CLIENT_DEACTIVATION_REASONS), *CUSTOM_DEACTIVATION_REASONS])
    body["reason_info"] = rng.choice(["", "Too expensive", "Missing a feature: CSV export", "Ça ne marche pas"])
    return body


def tracking_skipped_payload(rng: random.Random, project_hash: str) -> dict:
    return {"hash": project_hash, "previously_skipped": rng.random() < 0.3, "client": CLIENT_VERSION}


def project_hash(name: str) -> str:
    """A 32-hex project hash, as the dashboard issues them."""
    return hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()
