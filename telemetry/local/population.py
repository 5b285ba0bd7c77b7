"""A month in the life of a vendor's sites, for the demo: about 2,000 sites of
three projects, with real-world shares of WordPress, PHP, database, server,
locale, theme and plugins, pinging weekly; some stop, some deactivate with a
reason (the plugin authors' own slugs among them) and a few come back, some
decline to share. One release is faulty (SEO Toolkit 3.3.0, out on day 16): a
fifth of the sites that update to it deactivate within two days, most saying it
is not working, so release health and the spike alert have something to show.
Seeded: the same seed and end hour give the same pings.

The shares follow the public WordPress.org statistics of late 2026 in shape
(WordPress 7.1 about half, PHP 8.2/8.3 leading, MariaDB a little ahead of
MySQL, en_US under half); they are illustrations, not measurements.
"""

from __future__ import annotations

import ipaddress
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from telemetry.common.projects import project_document
from telemetry.local.samples import CLIENT_VERSION, wp_title, wp_user_name

T = TypeVar("T")

HISTORY_DAYS = 30
PING_INTERVAL = timedelta(days=7)


@dataclass(frozen=True)
class FaultyRelease:
    """A release that breaks some sites: of the sites still installed when they update to it,
    `share` deactivate within two days of updating, most with the first of `reasons`;
    the project's next release fixes it (a site that has it by then is no longer at risk)."""

    version: str
    share: float
    reasons: tuple[tuple[str, int], ...]  # (reason slug, weight)
    texts: tuple[str, ...]


@dataclass(frozen=True)
class DemoProject:
    name: str
    hash: str
    type: str  # plugin | theme
    sites: int
    releases: tuple[tuple[int, str], ...]  # (day of the month it came out, version)
    custom_fields: tuple[str, ...] = ()
    mail_integrations: dict[str, Any] = field(default_factory=dict)
    deactivation_reasons: dict[str, str] = field(default_factory=dict)
    faulty_release: FaultyRelease | None = None
    digest: str | None = None  # the vendor's digest frequency (docs/notify.md, "Digest")

    def release_day(self, version: str) -> int:
        return next(day for day, released in self.releases if released == version)

    def fix_day(self, version: str) -> int | None:
        """The day of the release after `version`, None if it is the last."""
        days = [day for day, _ in self.releases]
        index = days.index(self.release_day(version))
        return days[index + 1] if index + 1 < len(days) else None

    def document(self) -> dict[str, Any]:
        """The project as the dashboard stores it in MongoDB `projects` (validated)."""
        return project_document(
            hash=self.hash,
            name=self.name,
            type=self.type,
            custom_fields=self.custom_fields,
            mail_integrations=self.mail_integrations,
            deactivation_reasons=self.deactivation_reasons,
            digest=self.digest,
        )


PROJECTS = (
    DemoProject(
        name="SEO Toolkit",
        hash="5e0c7a1d2b3f4e5a8c9d0e1f2a3b4c5d",
        type="plugin",
        sites=1000,
        releases=((-60, "3.1.0"), (8, "3.2.0"), (16, "3.3.0")),
        custom_fields=("license_type",),
        mail_integrations={"mailchimp": {"enabled": True, "list_id": "demo-list"}},
        deactivation_reasons={"too-expensive": "It is too expensive", "switched-to-pro": "Switched to SEO Toolkit Pro"},
        # 3.3.0, out mid-month, breaks sitemaps on some hosts and is not fixed within the month:
        # release health and the spike alert show it.
        faulty_release=FaultyRelease(
            version="3.3.0",
            share=0.2,
            reasons=(("is-not-working", 75), ("did-not-work-as-expected", 15), ("found-better-plugin", 10)),
            texts=("Sitemap is empty since the update", "White screen after updating", "", ""),
        ),
        digest="weekly",
    ),
    DemoProject(
        name="Forms Pro",
        hash="f0a1b2c3d4e5f60718293a4b5c6d7e8f",
        type="plugin",
        sites=650,
        releases=((-90, "1.8.2"), (14, "1.9.0")),
        custom_fields=("orders_count",),
        digest="daily",
    ),
    DemoProject(
        name="Aurora Theme",
        hash="a0b0c0d0e0f0a1b1c1d1e1f1a2b2c2d2",
        type="theme",
        sites=350,
        releases=((-30, "2.0.0"), (18, "2.0.1")),
        digest="monthly",
    ),
)

# (value as sites send it, weight)
WP_VERSIONS = [
    ("7.1.1", 30), ("7.1", 22), ("7.0.2", 11), ("7.0", 5), ("6.9.4", 8), ("6.8.3", 6),
    ("6.7.2", 6), ("6.6.2", 4), ("6.5.5", 3), ("6.4.5", 2), ("6.2.6", 2), ("5.9.10", 1),
]  # fmt: skip
PHP_VERSIONS = [
    ("8.3.14", 25), ("8.2.26", 25), ("8.1.31", 12), ("8.4.2", 9), ("7.4.33", 17), ("8.0.30", 10), ("7.3.33", 2),
]  # fmt: skip
# MariaDB 54 %, MySQL 45 %, unknown 1 %, in the shapes sites really send.
DB_VERSIONS = [
    ("10.11.10-MariaDB", 14), ("10.11.9", 8), ("10.6.20-MariaDB-log", 11), ("5.5.5-10.6.18-MariaDB", 7),
    ("10.5.27-MariaDB", 6), ("11.4.4-MariaDB", 8),
    ("8.0.40", 22), ("8.0.36-0ubuntu0.22.04.1", 8), ("5.7.44-log", 12), ("8.4.3", 3),
    ("", 1),
]  # fmt: skip
SERVERS = [
    ("Apache/2.4.62 (Ubuntu)", 30), ("Apache", 15), ("nginx/1.26.2", 25), ("nginx", 8), ("LiteSpeed", 17),
    ("openresty/1.25.3.2", 3), ("Microsoft-IIS/10.0", 2),
]  # fmt: skip
LOCALES = [
    ("en_US", 44), ("de_DE", 9), ("ja", 8), ("es_ES", 7), ("fr_FR", 6), ("en_GB", 5), ("pt_BR", 4),
    ("it_IT", 4), ("nl_NL", 3), ("ru_RU", 3), ("pl_PL", 2), ("tr_TR", 2), ("sv_SE", 1), ("id_ID", 1),
]  # fmt: skip
THEMES = [
    (("astra", "Astra"), 20), (("hello-elementor", "Hello Elementor"), 15), (("kadence", "Kadence"), 10),
    (("generatepress", "GeneratePress"), 10), (("twentytwentyfive", "Twenty Twenty-Five"), 10),
    (("Divi", "Divi"), 8), (("oceanwp", "OceanWP"), 6), (("blocksy", "Blocksy"), 6), (("neve", "Neve"), 6),
    (("twentytwentyfour", "Twenty Twenty-Four"), 5), (("storefront", "Storefront"), 4),
]  # fmt: skip
# (slug, name, share of sites that have it)
PLUGINS = [
    ("akismet", "Akismet Anti-spam", 0.48), ("wordpress-seo", "Yoast SEO", 0.42),
    ("contact-form-7", "Contact Form 7", 0.40), ("woocommerce", "WooCommerce", 0.38),
    ("elementor", "Elementor", 0.33), ("updraftplus", "UpdraftPlus", 0.26), ("wp-mail-smtp", "WP Mail SMTP", 0.25),
    ("wordfence", "Wordfence Security", 0.24), ("really-simple-ssl", "Really Simple Security", 0.22),
    ("google-site-kit", "Site Kit by Google", 0.22), ("wpforms-lite", "WPForms Lite", 0.20),
    ("jetpack", "Jetpack", 0.18), ("all-in-one-wp-migration", "All-in-One WP Migration", 0.18),
    ("classic-editor", "Classic Editor", 0.16), ("seo-by-rank-math", "Rank Math SEO", 0.14),
    ("duplicate-post", "Yoast Duplicate Post", 0.12), ("redirection", "Redirection", 0.10),
    ("complianz-gdpr", "Complianz", 0.09), ("wp-super-cache", "WP Super Cache", 0.08),
]  # fmt: skip
DEACTIVATION_REASONS = [
    ("temporary_deactivation", 20), ("found-better-plugin", 14), ("did-not-work-as-expected", 12),
    ("not-have-that-feature", 11), ("too-expensive", 10), ("is-not-working", 9), ("switched-to-pro", 6),
    ("could-not-understand", 5), ("looking-for-other", 5), ("other", 8),
]  # fmt: skip
REASON_TEXTS = ["", "", "Too expensive for a small site", "Missing CSV export", "Ça ne marche pas avec mon thème"]
FIRST_NAMES = ["Zoë", "Łukasz", "María", "Chen", "Ngozi", "Søren", "Aiko", "Ahmed", "Olivia", "Kenji"]
LAST_NAMES = ["O'Brien", "Müller", "García", "Smith & Sons", "Nakamura", "Okafor", "Dubois", "Kowalski"]
SITE_WORDS = ["Bakery & Café", 'Studio "Ñandú"', "L'Atelier", "Shop", "Travel Notes", "Agentur Müller", "Dental Care"]

# Of the sites that exist when the month starts, and of those that install during it.
EXISTING_SHARE = 0.6
DECLINE_SHARE = 0.25  # of new installs: the admin declined to share (a tracking-skipped ping)
ASKED_AGAIN_SHARE = 0.3  # of those: asked again later, declined again
STOP_SHARE = 0.12  # stop pinging without a word (site gone, plugin deleted)
DEACTIVATE_SHARE = 0.09  # send a deactivate ping, then stop
COME_BACK_SHARE = 0.2  # of the deactivated: activate again days later
UPGRADE_WP_CHANCE = 0.05  # per ping of a 7.0 site: WordPress updated to 7.1 since the last ping

# Where the sites are hosted: (network, weight), a network of each hosting company that the bundled
# geo data (telemetry/pipelines/geo.py, GeoLite2 of 2024-06-18) places in the country noted, weighted
# roughly as WordPress hosting shares go. A site's server address (`ip_address`) is one of its network's.
HOSTING_NETWORKS = [
    ("162.241.0.0/18", 12),  # Newfold Digital (Bluehost/HostGator), US
    ("23.229.128.0/17", 10),  # GoDaddy, US
    ("145.14.144.0/23", 9),  # Hostinger, DE
    ("34.120.0.0/14", 9),  # Google Cloud, US (Kinsta, WP Engine and SiteGround run there)
    ("35.214.0.0/17", 5),  # Google Cloud, GB
    ("52.0.0.0/21", 8),  # Amazon Web Services, US
    ("82.118.240.0/24", 6),  # SiteGround, BG
    ("5.39.0.0/17", 7),  # OVH, FR
    ("5.9.0.0/16", 7),  # Hetzner, DE
    ("5.101.96.0/20", 5),  # DigitalOcean, NL
    ("77.68.0.0/17", 4),  # IONOS, GB
    ("81.169.128.0/19", 4),  # STRATO, DE
    ("5.249.128.0/19", 3),  # Aruba, IT
    ("5.189.128.0/18", 3),  # Contabo, DE
    ("23.92.16.0/20", 3),  # Linode/Akamai, US
    ("64.90.32.0/19", 2),  # DreamHost, US
    ("45.4.172.0/22", 2),  # A2 Hosting, US
    ("87.128.0.0/16", 1),  # Deutsche Telekom AG (an ISP: no hosting company), DE
]


def pick(rng: random.Random, table: Sequence[tuple[T, int]]) -> T:
    values, weights = zip(*table, strict=True)
    return rng.choices(values, weights=weights)[0]


@dataclass
class Site:
    project: DemoProject
    index: int
    rng: random.Random
    attributes: dict[str, Any] = field(init=False)
    update_lag: timedelta = field(init=False)
    ip_address: str = field(init=False)

    def __post_init__(self) -> None:
        rng = self.rng
        theme_slug, theme_name = pick(rng, THEMES)
        if self.project.type == "theme":
            theme_slug, theme_name = "aurora", "Aurora"
        server = pick(rng, SERVERS)
        plugins = [(slug, name) for slug, name, share in PLUGINS if rng.random() < share]
        if server == "LiteSpeed" and rng.random() < 0.7:
            plugins.append(("litespeed-cache", "LiteSpeed Cache"))
        self.attributes = {
            "wp_version": pick(rng, WP_VERSIONS),
            "php_version": pick(rng, PHP_VERSIONS),
            "mysql_version": pick(rng, DB_VERSIONS),
            "server": server,
            "locale": pick(rng, LOCALES),
            "multisite": "Yes" if rng.random() < 0.04 else "No",
            "theme": (theme_slug, theme_name),
            "plugins": plugins,
            "title": wp_title(f"{rng.choice(SITE_WORDS)} {self.index}"),
            "first_name": wp_user_name(rng.choice(FIRST_NAMES)),
            "last_name": wp_user_name(rng.choice(LAST_NAMES)),
            "license_type": rng.choice(["free", "free", "pro"]),
        }
        self.update_lag = timedelta(hours=rng.expovariate(1 / 96))  # updates a release ~4 days after it is out
        # Drawn from a generator of its own, so the site's other draws are the same as without it.
        host_rng = random.Random(f"host:{self.project.hash}:{self.index}")
        network = ipaddress.ip_network(pick(host_rng, HOSTING_NETWORKS))
        self.ip_address = str(network[host_rng.randrange(1, network.num_addresses - 1)])

    @property
    def url(self) -> str:
        return f"https://{self.project.type}-{self.project.hash[:4]}-{self.index}.example.org"

    def project_version(self, at: datetime, month_start: datetime) -> str:
        version = self.project.releases[0][1]
        for day, release in self.project.releases:
            if month_start + timedelta(days=day) + self.update_lag <= at:
                version = release
        return version

    def track(self, at: datetime, month_start: datetime) -> dict[str, Any]:
        a = self.attributes
        if a["wp_version"].startswith("7.0") and self.rng.random() < UPGRADE_WP_CHANCE:
            a["wp_version"] = WP_VERSIONS[0][0]
        slug, name = a["theme"]
        body: dict[str, Any] = {
            "url": self.url,
            "site": a["title"],
            "admin_email": f"admin@{self.url.removeprefix('https://')}",
            "first_name": a["first_name"],
            "last_name": a["last_name"],
            "hash": self.project.hash,
            "server": {
                "software": a["server"],
                "php_version": a["php_version"],
                "mysql_version": a["mysql_version"],
                "php_max_upload_size": "64 MB",
                "php_default_timezone": "UTC",
                "php_soap": "Yes",
                "php_fsockopen": "Yes",
                "php_curl": "Yes",
            },
            "wp": {
                "memory_limit": "256M",
                "debug_mode": "No",
                "locale": a["locale"],
                "version": a["wp_version"],
                "multisite": a["multisite"],
                "theme_slug": slug,
                "theme_name": name,
                "theme_version": "2.0.1" if self.project.type == "theme" else "4.1",
                "theme_uri": f"https://wordpress.org/themes/{slug}/",
                "theme_author": "Theme authors",
            },
            "users": {"total": 3, "administrator": 1, "subscriber": 2},
            "active_plugins": len(a["plugins"]) + 1,
            "inactive_plugins": 2,
            "ip_address": self.ip_address,
            "project_version": self.project_version(at, month_start),
            "tracking_skipped": False,
            "is_local": False,
            "plugins": {s: {"name": n, "version": "1.0"} for s, n in a["plugins"]},
            "client": CLIENT_VERSION,
        }
        if "license_type" in self.project.custom_fields:
            body["extra"] = {"license_type": a["license_type"]}
        if "orders_count" in self.project.custom_fields:
            body["extra"] = {"orders_count": self.rng.randint(0, 500)}
        return body

    def deactivate(self, at: datetime, month_start: datetime, broken_by: FaultyRelease | None = None) -> dict[str, Any]:
        """A deactivate ping; `broken_by`: the faulty release the site leaves, and its reasons."""
        body = self.track(at, month_start)
        reasons, texts = (broken_by.reasons, broken_by.texts) if broken_by else (DEACTIVATION_REASONS, REASON_TEXTS)
        body["reason_id"] = pick(self.rng, reasons)
        body["reason_info"] = self.rng.choice(texts)
        return body

    def broken_at(self, seed: int, span_hours: float) -> float | None:
        """The hour (from the month's start) at which the project's faulty release breaks this site,
        or None: it updates to the release, is in the unlucky `share`, and gives up within two
        days, before it gets the fix. Drawn from a generator seeded by the site alone, so a site's
        fate does not depend on the order the sites are drawn in."""
        faulty = self.project.faulty_release
        if faulty is None:
            return None
        rng = random.Random(f"{seed}/{self.project.hash}/{self.index}/{faulty.version}")
        lag_hours = self.update_lag / timedelta(hours=1)
        updated = 24 * self.project.release_day(faulty.version) + lag_hours
        fix_day = self.project.fix_day(faulty.version)
        fixed = 24 * fix_day + lag_hours if fix_day is not None else float("inf")
        if rng.random() >= faulty.share:
            return None
        at = updated + rng.uniform(1, 48)
        return at if 0 <= at < min(fixed, span_hours) else None


@dataclass(frozen=True)
class Ping:
    route: str
    received_at: datetime
    body: dict[str, Any]
    id: str


@dataclass
class Month:
    start: datetime
    pings: list[Ping]
    # Sites still installed and sharing at the end of the month (they send the live pings).
    sites_still_sharing: list[Site]


def month(seed: int, end: datetime, days: int = HISTORY_DAYS) -> Month:
    """Every ping of the `days` before `end` (an hour boundary), and the sites still sharing at its end."""
    still_sharing: list[Site] = []
    pings = list(_history(seed, end, days, still_sharing))
    return Month(end - timedelta(days=days), pings, still_sharing)


def _history(seed: int, end: datetime, days: int, still_sharing: list[Site]) -> Iterator[Ping]:
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    span_hours = days * 24

    def ping_id(*parts: object) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, (seed, *parts)))))

    def at(hours: float) -> datetime:
        return start + timedelta(hours=hours)

    for project in PROJECTS:
        for index in range(project.sites):
            site = Site(project, index, random.Random(rng.random()))
            if rng.random() < EXISTING_SHARE:
                first = rng.uniform(0, 24 * 7)  # installed before the month: its weekly ping falls anywhere in week one
                new = False
            else:
                first = rng.triangular(0, span_hours, span_hours * 0.7)  # installs grow a little over the month
                new = True
            if new and rng.random() < DECLINE_SHARE:
                yield Ping("tracking-skipped", at(first), _skipped(project, False), ping_id(project.hash, index, "s"))
                again = first + rng.uniform(24, 24 * 10)
                if rng.random() < ASKED_AGAIN_SHARE and again < span_hours:
                    yield Ping(
                        "tracking-skipped", at(again), _skipped(project, True), ping_id(project.hash, index, "s2")
                    )
                continue
            fate = rng.random()
            end_hours = span_hours
            deactivate_at = None
            if fate < STOP_SHARE:
                end_hours = rng.uniform(first, span_hours)
            elif fate < STOP_SHARE + DEACTIVATE_SHARE:
                deactivate_at = rng.uniform(first + 1, span_hours + 24 * 7)
            broken = site.broken_at(seed, span_hours)
            # Broken while still installed and pinging: it leaves then, whatever it would have done later.
            if broken is not None and first < broken < end_hours and (deactivate_at is None or broken < deactivate_at):
                deactivate_at = broken
            else:
                broken = None
            hours, n = first, 0
            while hours < end_hours:
                if deactivate_at is not None and hours > deactivate_at:
                    break
                yield Ping("track", at(hours), site.track(at(hours), start), ping_id(project.hash, index, n))
                n += 1
                hours += 24 * 7 + rng.uniform(-6, 6)  # WP-Cron's weekly event waits for a visit
            if deactivate_at is None and end_hours == span_hours:
                still_sharing.append(site)
            if deactivate_at is not None and deactivate_at < span_hours:
                broken_by = project.faulty_release if broken is not None else None
                yield Ping(
                    "deactivate",
                    at(deactivate_at),
                    site.deactivate(at(deactivate_at), start, broken_by),
                    ping_id(project.hash, index, "d"),
                )
                back = deactivate_at + rng.uniform(24, 24 * 6)
                if rng.random() < COME_BACK_SHARE and back < span_hours:
                    yield Ping("track", at(back), site.track(at(back), start), ping_id(project.hash, index, "b"))
                    still_sharing.append(site)


def _skipped(project: DemoProject, previously: bool) -> dict[str, Any]:
    return {"hash": project.hash, "previously_skipped": "true" if previously else "false", "client": CLIENT_VERSION}
