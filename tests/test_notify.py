"""The notify unit's pure parts: the retry schedule, the SSRF check, the settings and
their validation, the targets of an event, the Standard Webhooks signature, the mail."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from telemetry.common import projects, webhook_secrets
from telemetry.common.projects import InvalidProject
from telemetry.notify import addresses, emails, events, mailer, outbox, registry, retry, webhooks
from telemetry.notify.addresses import RefusedAddress
from telemetry.notify.settings import NotifySettings, SmtpSettings

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SECRET = webhook_secrets.new_secret()


def project(**fields) -> dict:
    return projects.project_document("p1", "SEO Toolkit", deactivation_reasons={"too-pricey": "Too pricey"}, **fields)


def deactivation(reason: str | None = "too-pricey") -> events.Event:
    return events.Event(
        id=events.event_id(events.SITE_DEACTIVATED, "ping-1"),
        project="p1",
        type=events.SITE_DEACTIVATED,
        occurred_at=T0,
        data={"url": "https://a.example", "reason_id": reason, "reason_label": "Too pricey", "reason_info": "€9 <b>"},
    )


# --- retry schedule ---


def test_the_backoff_doubles_from_the_first_wait_up_to_the_longest():
    first, longest = timedelta(seconds=60), timedelta(hours=4)
    assert [retry.backoff(n, first, longest).total_seconds() for n in range(1, 10)] == [
        60, 120, 240, 480, 960, 1920, 3840, 7680, 14400,
    ]  # fmt: skip
    assert retry.backoff(10_000, first, longest) == longest
    with pytest.raises(ValueError):
        retry.backoff(0, first, longest)


def test_a_retry_waits_between_half_and_all_of_its_backoff():
    rng = random.Random(7)
    first, longest, window = timedelta(seconds=60), timedelta(hours=4), timedelta(hours=24)
    for failures in range(1, 12):
        ceiling = retry.backoff(failures, first, longest)
        for _ in range(50):
            due = retry.next_try(failures, T0, T0, first, longest, window, rng)
            assert due is not None and T0 + ceiling / 2 <= due <= T0 + ceiling


def test_a_delivery_is_set_aside_once_its_next_try_would_leave_the_window():
    first, longest, window = timedelta(seconds=60), timedelta(hours=4), timedelta(hours=24)
    rng = random.Random(1)
    assert retry.next_try(3, T0, T0 + 23 * HOUR, first, longest, window, rng) is not None
    assert retry.next_try(9, T0, T0 + 23 * HOUR, first, longest, window, rng) is None  # 2 to 4 h on: past 24 h
    assert retry.next_try(1, T0, T0 + window, first, longest, window, rng) is None


def test_the_documented_schedule_with_the_defaults():
    offsets = retry.schedule(timedelta(seconds=60), timedelta(hours=4), timedelta(hours=24))
    minutes = [round(o.total_seconds() / 60) for o in offsets]
    assert minutes == [0, 1, 3, 7, 15, 31, 63, 127, 255, 495, 735, 975, 1215]
    assert offsets[-1] < timedelta(hours=24)


# --- SSRF ---


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1",  # noqa: S104
     "fd00:ec2::254", "fe80::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "224.0.0.1", "192.0.2.1"],
)  # fmt: skip
def test_loopback_private_link_local_metadata_and_reserved_addresses_are_refused(address):
    assert not addresses.is_public(ipaddress.ip_address(address))
    with pytest.raises(RefusedAddress, match="not a public address"):
        addresses.checked_address(address, 443)


def test_public_addresses_pass_and_the_local_setting_lets_loopback_through():
    assert addresses.checked_address("8.8.8.8", 443) == "8.8.8.8"
    assert addresses.checked_address("2001:4860:4860::8888", 443) == "2001:4860:4860::8888"
    assert addresses.checked_address("127.0.0.1", 8080, allow_private=True) == "127.0.0.1"


def test_a_name_is_judged_by_what_it_resolves_to():
    with pytest.raises(RefusedAddress, match=r"127\.0\.0\.1"):
        addresses.checked_address("localhost", 443)
    with pytest.raises(RefusedAddress, match="does not resolve"):
        addresses.checked_address("no-such-host.invalid", 443)


def test_a_delivery_to_a_refused_url_is_a_failure_not_a_request():
    outcome = webhooks.post("https://127.0.0.1:1/hook", b"{}", {}, 1, 1, allow_private=False)
    assert not outcome.ok and outcome.error.startswith("refused:")
    outcome = webhooks.post("http://public.example/hook", b"{}", {}, 1, 1, allow_private=False)
    assert not outcome.ok and "must use https" in outcome.error


# --- settings and their validation ---


def test_settings_from_the_environment_and_their_errors():
    settings = NotifySettings.from_env({"SMTP_RELAY": "smtp.sendgrid.net:587", "SMTP_PASSWORD": "key \n"})
    assert settings.overlap == timedelta(hours=24) and settings.retry_window == timedelta(hours=24)
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.tls) == ("smtp.sendgrid.net", 587, "starttls")
    assert settings.smtp.password == "key" and not settings.allow_private_webhooks
    assert SmtpSettings.from_env({}).host is None
    for bad in ("smtp.example", "smtp.example:0", "smtp.example:x", ":587"):
        with pytest.raises(ValueError, match="SMTP_RELAY must be host:port"):
            SmtpSettings.from_env({"SMTP_RELAY": bad})
    with pytest.raises(ValueError, match="SMTP_TLS must be one of"):
        SmtpSettings.from_env({"SMTP_TLS": "none"})
    with pytest.raises(ValueError, match="NOTIFY_RETRY_MAX_SECONDS"):
        NotifySettings.from_env({"NOTIFY_RETRY_FIRST_SECONDS": "600", "NOTIFY_RETRY_MAX_SECONDS": "60"})
    with pytest.raises(ValueError, match="must stay under the outbox's 30 days"):
        NotifySettings.from_env({"NOTIFY_OVERLAP_HOURS": "700"})
    for cap in ("0", "-5"):
        with pytest.raises(ValueError, match="NOTIFY_MAX_SITE_EVENTS_PER_DAY must be at least 1"):
            NotifySettings.from_env({"NOTIFY_MAX_SITE_EVENTS_PER_DAY": cap})
    assert NotifySettings.from_env({"NOTIFY_MAX_SITE_EVENTS_PER_DAY": "1"}).max_site_events_per_day == 1
    from telemetry.notify import settings as settings_module

    assert settings_module.OUTBOX_KEEP_SECONDS == outbox.KEEP.total_seconds()


def test_alert_settings_are_validated_and_normalized():
    alerts = projects.with_alerts(project(), ["Ops@Vendor.Example", "ops@Vendor.example"], exclude=["none"])
    assert projects.alert_recipients(alerts) == ["Ops@vendor.example", "ops@vendor.example"]
    for bad, match in [
        (["not an address"], "is not an email address"),
        (["a@b"], "is not an email address"),
        ([], "non-empty list"),
        ([f"a{n}@vendor.example" for n in range(21)], "at most 20"),
    ]:
        with pytest.raises(InvalidProject, match=match):
            projects.with_alerts(project(), bad)
    with pytest.raises(InvalidProject, match="not both"):
        projects.with_alerts(project(), ["a@vendor.example"], include=["x"], exclude=["y"])
    with pytest.raises(InvalidProject, match="reason slugs"):
        projects.with_alerts(project(), ["a@vendor.example"], include=["no spaces"])


def test_the_alerted_reasons():
    everything = projects.with_alerts(project(), ["a@vendor.example"])
    assert projects.alerts_reason(everything, "too-pricey") and projects.alerts_reason(everything, None)
    only = projects.with_alerts(project(), ["a@vendor.example"], include=["too-pricey"])
    assert projects.alerts_reason(only, "too-pricey") and not projects.alerts_reason(only, "other")
    but = projects.with_alerts(project(), ["a@vendor.example"], exclude=["none"])
    assert not projects.alerts_reason(but, None) and not projects.alerts_reason(but, "none")
    assert projects.alerts_reason(but, "other")


def test_digest_frequency():
    assert projects.digest_frequency(projects.with_digest(project(), "weekly")) == "weekly"
    assert projects.digest_frequency(projects.with_digest(project(digest="daily"), "off")) is None
    with pytest.raises(InvalidProject, match="digest must be one of"):
        projects.validate({**project(), "digest": "hourly"})


def test_webhook_endpoints_are_validated():
    added, endpoint = projects.with_webhook(project(), "https://hooks.vendor.example/t", ["site.deactivated"])
    assert projects.WEBHOOK_ID_PATTERN.fullmatch(endpoint["id"])
    assert set(endpoint) == {"id", "url", "events"}  # the secret is webhook_secrets', never the project's
    assert projects.webhook_endpoints(added, events.SITE_DEACTIVATED) == [endpoint]
    assert projects.webhook_endpoints(added, events.SITE_ACTIVATED) == []
    for url, match in [
        ("http://hooks.vendor.example/t", "must use https"),
        ("https://user:pw@hooks.vendor.example/t", "no user, password"),
        ("https:///t", "needs a host"),
        ("ftp://hooks.vendor.example", "must use https"),
        ("https://hooks.vendor.example:99999/", "does not parse"),
        ("https://hooks.vendor.example/a b", "whitespace"),
    ]:
        with pytest.raises(InvalidProject, match=match):
            projects.with_webhook(project(), url, ["site.deactivated"])
    assert projects.with_webhook(project(), "http://127.0.0.1:9/t", ["site.activated"], allow_http=True)
    with pytest.raises(InvalidProject, match="non-empty list of"):
        projects.with_webhook(project(), "https://h.example/", ["site.renamed"])
    for secret, match in [("abc", "starts with"), ("whsec_!!", "base64"), ("whsec_QUJD", "24 to 64 bytes")]:
        with pytest.raises(InvalidProject, match=match):
            webhook_secrets.secret_value(secret)


def test_a_project_document_refuses_a_secret_in_an_endpoint():
    """The secrets live in `webhook_secrets`: a writer cannot put one back into the project."""
    added, endpoint = projects.with_webhook(project(), "https://h.example/", ["site.activated"])
    legacy = {**endpoint, "secret": SECRET}
    with pytest.raises(InvalidProject, match="id, url, events and nothing else"):
        projects.validate({**added, "webhooks": [legacy]})
    # The readers ask MongoDB for an endpoint's public keys only.
    assert projects.PROJECTION["_id"] == 0 and "webhooks" not in projects.PROJECTION
    assert {k for k in projects.PROJECTION if k.startswith("webhooks.")} == {
        "webhooks.id",
        "webhooks.url",
        "webhooks.events",
    }


def test_rotating_a_secret_and_removing_an_endpoint():
    added, endpoint = projects.with_webhook(project(), "https://h.example/", ["site.activated"])
    first = webhook_secrets.secret_document("p1", endpoint["id"], SECRET, T0)
    assert webhook_secrets.signing_secrets(first, T0) == [SECRET]
    rotated, secret = webhook_secrets.rotated(first, T0)
    assert secret != SECRET and rotated["secret"] == secret and rotated["rotated_at"] == T0
    # The old secret signs beside the new one for a day, then no more (naive, as MongoDB gives it back, too).
    assert webhook_secrets.signing_secrets(rotated, T0 + 23 * HOUR) == [secret, SECRET]
    assert webhook_secrets.signing_secrets(rotated, T0 + 24 * HOUR) == [secret]
    naive = {**rotated, "previous_secret_until": rotated["previous_secret_until"].replace(tzinfo=None)}
    assert webhook_secrets.signing_secrets(naive, T0 + 23 * HOUR) == [secret, SECRET]
    assert projects.webhook_endpoints(projects.without_webhook(added, endpoint["id"])) == []
    with pytest.raises(InvalidProject, match="has no webhook"):
        projects.without_webhook(added, "wh_00000000")


def test_a_secret_document_keeps_its_shape():
    good = webhook_secrets.secret_document("p1", "wh_0123456789abcdef", SECRET, T0)
    assert webhook_secrets.validate({**good, "_id": "x"}) == good
    for broken, match in [
        ({**good, "url": "https://h.example/"}, "unknown webhook secret field"),
        ({k: v for k, v in good.items() if k != "secret"}, "needs secret"),
        ({**good, "project": "a b"}, "not a project hash"),
        ({**good, "endpoint": "hook1"}, "not a webhook id"),
        ({**good, "secret": "whsec_QUJD"}, "24 to 64 bytes"),
        ({**good, "previous_secret": SECRET}, "both previous_secret and previous_secret_until"),
        ({**good, "previous_secret": "x", "previous_secret_until": T0}, "starts with"),
        ({**good, "created_at": "today"}, "created_at must be a date"),
    ]:
        with pytest.raises(InvalidProject, match=match):
            webhook_secrets.validate(broken)


def test_a_webhook_is_never_posted_unsigned():
    endpoint = {"id": "wh_0123456789abcdef", "url": "https://h.example/", "events": ["site.deactivated"]}
    with pytest.raises(ValueError, match="never posted unsigned"):
        webhooks.deliver(deactivation(), endpoint, [], None)


def test_the_project_contract_names_the_webhook_types_of_the_events_module():
    assert projects.WEBHOOK_EVENT_TYPES == events.WEBHOOK_TYPES


# --- targets ---


def test_a_deactivation_goes_to_the_recipients_its_reason_reaches_and_to_subscribed_endpoints():
    with_hooks, hook = projects.with_webhook(project(), "https://h.example/", ["site.deactivated"])
    with_two, other = projects.with_webhook(with_hooks, "https://i.example/", ["site.activated"])
    alerted = projects.with_alerts(with_two, ["a@vendor.example", "b@vendor.example"], exclude=["none"])
    mailed = tuple(registry.RENDERERS)
    assert outbox.targets(deactivation(), alerted, mailed) == [
        ("email", "a@vendor.example"), ("email", "b@vendor.example"), ("webhook", hook["id"]),
    ]  # fmt: skip
    assert outbox.targets(deactivation(None), alerted, mailed) == [("webhook", hook["id"])]
    assert outbox.targets(deactivation(), None, mailed) == []
    activated = events.Event("evt_a", "p1", events.SITE_ACTIVATED, T0, {})
    assert outbox.targets(activated, alerted, mailed) == [("webhook", other["id"])]  # not mailed


# --- signature and mail ---


def test_the_webhook_is_signed_as_standard_webhooks_verifies():
    event = deactivation()
    payload = webhooks.body(event)
    sent_at = datetime.now(UTC)
    headers = webhooks.headers(event.id, payload, [SECRET], sent_at)
    assert headers["webhook-id"] == event.id and headers["webhook-timestamp"] == str(int(sent_at.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(payload, headers)["data"]["reason_id"] == "too-pricey"
    assert webhooks.body(event) == payload  # the same bytes on every try
    tampered = payload.replace(b"too-pricey", b"too-cheap!")
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(SECRET).verify(tampered, headers)


def test_during_a_rotation_each_try_carries_a_signature_per_secret_and_either_verifies():
    event, new = deactivation(), webhook_secrets.new_secret()
    payload = webhooks.body(event)
    headers = webhooks.headers(event.id, payload, [new, SECRET], datetime.now(UTC))
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(payload, headers) and Webhook(SECRET).verify(payload, headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(webhook_secrets.new_secret()).verify(payload, headers)


def test_the_deactivation_mail_carries_the_reason_label_and_the_text_escaped_in_html():
    content = emails.render_deactivation(deactivation(), project())
    assert content.subject == "SEO Toolkit deactivated on https://a.example: Too pricey"
    assert "Reason: Too pricey" in content.text and "Their words: €9 <b>" in content.text
    assert "€9 &lt;b&gt;" in content.html
    mail = mailer.message(deactivation(), "a@vendor.example", content, "notify@vendor.example")
    again = mailer.message(deactivation(), "a@vendor.example", content, "notify@vendor.example")
    assert (
        mail["Message-ID"]
        == again["Message-ID"]
        != mailer.message(deactivation(), "b@x.example", content, "n@x")["Message-ID"]
    )
    assert mail.get_body(("plain",)).get_content().startswith("SEO Toolkit was deactivated")


def test_a_subject_is_one_line():
    assert emails.one_line("a\r\nb\tc", 10) == "a b c"
    assert len(emails.one_line("x" * 500)) == emails.MAX_SUBJECT_CHARS
