"""The personal-data policy (telemetry/common/privacy.py) and where the pipelines apply it."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime

import pytest

from telemetry.admin import erase
from telemetry.common import privacy
from telemetry.common.stored_ping import StoredPing
from telemetry.ingest.settings import IngestSettings, privacy_policy
from telemetry.pipelines import records
from telemetry.pipelines.options import PipelineOptions, PipelineSettings

BODY = {
    "hash": "abc",
    "url": "https://example.org",
    "admin_email": "ada@example.org",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "ip_address": "203.0.113.77",
}


@pytest.mark.parametrize(
    ("value", "v4", "v6", "expected"),
    [
        ("203.0.113.77", 24, 48, "203.0.113.0"),
        (" 203.0.113.77 ", 16, 48, "203.0.0.0"),
        ("203.0.113.77", 32, 48, "203.0.113.77"),
        ("203.0.113.77", 0, 48, None),
        ("2001:db8:abcd:12:1:2:3:4", 24, 48, "2001:db8:abcd::"),
        ("2001:db8:abcd:12:1:2:3:4", 24, 128, "2001:db8:abcd:12:1:2:3:4"),
        ("2001:db8:abcd:12:1:2:3:4", 24, 0, None),
        ("::ffff:198.51.100.9", 24, 48, "198.51.100.0"),  # IPv4-mapped: as IPv4
        ("localhost", 24, 48, None),
        ("", 24, 48, None),
        (None, 24, 48, None),
        (17, 24, 48, None),
    ],
)
def test_truncate_ip(value, v4, v6, expected):
    assert privacy.truncate_ip(value, v4, v6) == expected
    if isinstance(value, str) and expected is not None:  # an address ingest already read: the same result
        parsed = ipaddress.ip_address(value.strip())
        assert privacy.truncate_ip(parsed, v4, v6) == expected
        assert privacy.Policy(v4, v6).ip(value, parsed) == privacy.Policy(v4, v6).ip(value) == expected


def test_whole_ips_keep_what_was_sent():
    policy = privacy.Policy(32, 128)
    assert policy.ip("not an address") == "not an address"
    assert privacy.DEFAULT.ip("not an address") is None


def test_settings_parse_and_refuse_nonsense():
    assert privacy_policy({}) == privacy.DEFAULT
    assert privacy.DEFAULT.kept_fields == set(privacy.CONTACT_FIELDS)
    policy = privacy_policy({"IP_PREFIX_V4": "0", "IP_PREFIX_V6": "64", "SITE_PERSONAL_FIELDS": "admin_email"})
    assert policy == privacy.Policy(0, 64, frozenset({"admin_email"}))
    assert privacy_policy({"SITE_PERSONAL_FIELDS": " none "}).kept_fields == frozenset()
    for bad in (
        {"IP_PREFIX_V4": "33"},
        {"IP_PREFIX_V6": "-1"},
        {"IP_PREFIX_V4": "x"},
        {"SITE_PERSONAL_FIELDS": "phone"},
    ):
        with pytest.raises(ValueError):
            privacy_policy(bad)
    assert IngestSettings.from_env({"IP_PREFIX_V4": "16"}).privacy.ip_prefix_v4 == 16


def test_pipeline_options_carry_the_policy():
    settings = PipelineSettings.from_options(
        PipelineOptions(["--project", "p", "--ip_prefix_v6", "128", "--site_personal_fields", "first_name,last_name"])
    )
    assert settings.privacy == privacy.Policy(24, 128, frozenset({"first_name", "last_name"}))
    with pytest.raises(ValueError):
        PipelineSettings.from_options(PipelineOptions(["--project", "p", "--ip_prefix_v4", "40"]))


def _ping(body: dict) -> StoredPing:
    return StoredPing("p-1", "track", datetime(2026, 11, 23, 11, tzinfo=UTC), body, client_ip="198.51.100.9")


def test_site_record_by_default_truncates_the_ip_and_keeps_the_contact():
    record = records.site_record(_ping(BODY), {})
    assert record["ip_address"] == "203.0.113.0"
    assert (record["admin_email"], record["first_name"], record["last_name"]) == ("ada@example.org", "Ada", "Lovelace")
    assert "198.51.100.9" not in repr(record)  # the request's address is never in a record


def test_site_record_keeps_only_what_the_policy_names():
    record = records.site_record(_ping(BODY), {}, policy=privacy.Policy(0, 0, frozenset({"first_name"})))
    assert record["ip_address"] is record["admin_email"] is record["last_name"] is None
    assert record["first_name"] == "Ada"
    whole = records.site_record(_ping(BODY), {}, policy=privacy.Policy(32, 128))
    assert whole["ip_address"] == "203.0.113.77"


def test_rejected_rows_never_hold_a_personal_field():
    row = records.rejected_row("track/2026/11/23/11/p-1.json", "unknown_project", "d", _ping(BODY).received_at, BODY)
    for field in privacy.PERSONAL_FIELDS:
        assert str(BODY[field]) not in repr(row)


# --- erase (telemetry/admin/erase.py): which URLs, rows and payloads are a site's ----------


def test_site_urls_are_every_form_the_pipelines_store():
    forms = erase.site_urls("HTTPS://WWW.Example.org:443/shop/?a=1")
    assert forms == tuple(
        sorted(
            f"{scheme}://{www}example.org{port}/shop?a=1"
            for scheme, default in (("http", ":80"), ("https", ":443"))
            for www in ("", "www.")
            for port in ("", default)
        )
    )
    for form in ("http://example.org/shop?a=1", "https://www.EXAMPLE.org/shop/?a=1"):
        assert records.normalize_url(form) in forms
    assert "https://example.org/shop" not in forms  # another query is another page
    assert erase.site_key("https://example.org") != erase.site_key("https://wwwexample.org")
    assert erase.site_urls("https://example.org:8443") == (
        "http://example.org:8443",
        "http://www.example.org:8443",
        "https://example.org:8443",
        "https://www.example.org:8443",
    )
    with pytest.raises(ValueError):
        erase.site_urls("https://[@x.org")


def test_rejected_rows_match_by_payload_url_even_cut_short():
    target = erase.Target.site("h", "https://example.org")
    whole = json.dumps({"hash": "h", "url": "http://www.example.org/", "extra": {"x": 1}})
    assert target.matches_rejected({"hash": "h", "payload": whole})
    assert target.matches_rejected({"hash": "h", "payload": whole[:-5]})  # not JSON any more: the member is read
    assert not target.matches_rejected({"hash": "other", "payload": whole})
    assert not target.matches_rejected({"hash": "h", "payload": '{"url": "https://[@x.org"}'})  # no URL: no crash
    assert not target.matches_rejected({"hash": "h", "payload": None})
    assert erase.Target("h").matches_rejected({"hash": "h", "payload": None})  # a project's: all of its rows


def test_erase_row_nulls_the_targets_staged_rows_only():
    target = erase.Target.site("h", "https://example.org")
    row = {"hash": "h", "url": "https://www.example.org", "admin_email": "a@example.org", "custom_fields": "{}"}
    assert erase.erase_row("sites", row, target) and row["admin_email"] is None and row["custom_fields"] is None
    assert not erase.erase_row("sites", row, target)  # nothing left to null
    other = {"hash": "h", "url": "https://example.com", "admin_email": "b@example.org"}
    assert not erase.erase_row("sites", other, target) and other["admin_email"] == "b@example.org"
    assert not erase.erase_row("tracking_skipped", {"hash": "h"}, erase.Target("h"))  # nothing personal
    assert erase.staged_table_of("_staging_tracking_skipped_abc123") == "tracking_skipped"
    assert erase.staged_table_of("sites") is None
    assert erase.staged_table_of("loads/abc/rejected/part-0.ndjson", erase.STAGING_OBJECT_PREFIX) == "rejected"
    assert erase.staged_table_of("loads/abc/rejected/part-0.json", erase.STAGING_OBJECT_PREFIX) is None
