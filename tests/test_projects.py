"""Unit tests of the project contract (telemetry/common/projects.py) and its command line
(telemetry-admin project, telemetry/admin/projects.py).

Reading and writing MongoDB `projects` is tested against the local stack in tests/integration/test_projects.py.
"""

from __future__ import annotations

import pytest

from telemetry.common import projects
from telemetry.common.projects import InvalidProject

HASH = "0123456789abcdef0123456789abcdef"


def full_document() -> dict:
    """A document with every field of the contract."""
    return {
        "hash": HASH,
        "name": "SEO Toolkit",
        "type": "plugin",
        "custom_fields": ["license_type", "orders_count"],
        "mail_integrations": {"mailchimp": {"enabled": True, "list_id": "L1"}, "mailjet": {"enabled": False}},
        "mail_double_opt_in": False,
        "deactivation_reasons": {"too-expensive": "It is too expensive"},
        "alerts": {"recipients": ["ops@vendor.example"], "include_reasons": [], "exclude_reasons": ["none"]},
        "digest": "weekly",
        "webhooks": [
            {
                "id": "wh_0123456789abcdef",
                "url": "https://hooks.vendor.example/telemetry",
                "events": ["site.activated", "site.deactivated"],
            }
        ],
    }


# --- reading (moved from tests/test_records.py and tests/test_mongodb.py; assertions unchanged) ---


def test_project_reason_labels():
    assert projects.project_reason_labels({"deactivation_reasons": {"a": "Label A"}}) == {"a": "Label A"}
    assert projects.project_reason_labels({"deactivation_reasons": ["a"]}) == {"a": "a"}
    assert projects.project_reason_labels({}) == {}


def test_double_opt_in_unless_the_project_turns_it_off():
    assert projects.mail_double_opt_in({}) and projects.mail_double_opt_in({"mail_double_opt_in": "no"})
    assert not projects.mail_double_opt_in({"mail_double_opt_in": False})


# --- reading ---


def test_a_reason_is_known_when_the_client_or_the_project_lists_it():
    project = {"deactivation_reasons": ["too-expensive"]}
    assert projects.is_known_reason("other", project)  # the client library's own
    assert projects.is_known_reason("too-expensive", project)
    assert not projects.is_known_reason("too-slow", project)
    assert not projects.is_known_reason("too-expensive", {})


def test_only_enabled_integrations_count_and_only_they_flag_a_site_for_mail():
    project = full_document()
    assert projects.enabled_mail_integrations(project) == ["mailchimp"]
    assert projects.enabled_mail_integrations({"mail_integrations": {"wemail": True}}) == []
    assert projects.enabled_mail_integrations({}) == []
    by_hash = {HASH: project, "quiet": {"hash": "quiet", "mail_integrations": {"mailjet": {"enabled": False}}}}
    assert projects.mail_flag({"hash": HASH}, by_hash)
    assert not projects.mail_flag({"hash": "quiet"}, by_hash)
    assert not projects.mail_flag({"hash": "unknown"}, by_hash)


def test_custom_field_keys_default_to_none():
    assert projects.custom_field_keys(full_document()) == ["license_type", "orders_count"]
    assert projects.custom_field_keys({"custom_fields": None}) == []
    assert projects.custom_field_keys({}) == []


# --- the fields and their rules agree ---


def test_every_field_of_the_contract_is_one_validate_checks_and_project_document_writes():
    document = full_document()
    assert set(document) == set(projects.FIELDS)
    assert projects.validate(document) == document
    built = projects.project_document(**document)
    assert built == document
    # The optional fields: left out, mail_double_opt_in means double opt-in; the notification fields, none.
    optional = {projects.MAIL_DOUBLE_OPT_IN, *projects.NOTIFICATION_FIELDS}
    assert set(projects.project_document(HASH, "x")) == set(projects.FIELDS) - optional
    assert projects.mail_double_opt_in(projects.project_document(HASH, "x"))


def test_a_field_outside_the_contract_is_refused():
    with pytest.raises(InvalidProject, match=r"unknown project field.*owner"):
        projects.validate({**full_document(), "owner": "me"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hash": "not a hash"}, "hash must be"),
        ({"hash": "x" * 65}, "hash must be"),
        ({"name": " "}, "name must be"),
        ({"type": "library"}, "type must be one of plugin, theme"),
        ({"custom_fields": "license_type"}, "custom_fields must be a list"),
        ({"custom_fields": ["a.b"]}, "is not an `extra` key"),
        ({"custom_fields": ["$where"]}, "is not an `extra` key"),
        ({"custom_fields": ["a", "a"]}, "lists a key twice"),
        ({"mail_integrations": {"sendgrid": {"enabled": True}}}, "provider 'sendgrid' is not one of"),
        ({"mail_integrations": {"mailchimp": True}}, "must be an object with `enabled`"),
        ({"mail_integrations": {"mailchimp": {"enabled": "yes"}}}, "must be an object with `enabled`"),
        ({"mail_integrations": {"mailchimp": {"enabled": True, "list_id": ""}}}, "list_id must be"),
        ({"mail_double_opt_in": "no"}, "mail_double_opt_in must be true or false"),
        ({"deactivation_reasons": {"too expensive": "x"}}, "is not a slug"),
        ({"deactivation_reasons": {"too-expensive": ""}}, "too-expensive must be"),
        ({"deactivation_reasons": ["a", "a"]}, "lists a slug twice"),
        ({"deactivation_reasons": "too-expensive"}, "must be an object of slug -> label"),
    ],
)
def test_a_broken_rule_is_named(change, message):
    with pytest.raises(InvalidProject, match=message):
        projects.validate({**full_document(), **change})


def test_a_project_needs_hash_name_and_type():
    with pytest.raises(InvalidProject, match="a project needs name, type"):
        projects.validate({"hash": HASH})


def test_the_older_form_of_reasons_is_valid():
    assert projects.validate({**full_document(), "deactivation_reasons": ["too-expensive", "none"]})


def test_command_line_specs():
    assert projects.mail_integration("mailjet=L2") == ("mailjet", {"enabled": True, "list_id": "L2"})
    assert projects.deactivation_reason("too-slow") == ("too-slow", "too-slow")
    assert projects.deactivation_reason("too-slow=It is slow") == ("too-slow", "It is slow")
    for spec in ("mailjet", "mailjet=", "sendgrid=L1"):
        with pytest.raises(InvalidProject, match="PROVIDER=LIST_ID"):
            projects.mail_integration(spec)
    with pytest.raises(InvalidProject, match="SLUG"):
        projects.deactivation_reason("too slow=Slow")


# --- telemetry-admin project (telemetry/admin/projects.py) ---


def _cli_document(*argv: str) -> dict:
    from telemetry.admin import projects as cli

    return cli.project_document(cli.build_parser().parse_args(["add", *argv]))


def test_the_command_line_writes_the_contract_document():
    document = _cli_document(
        "--name", "SEO Toolkit", "--hash", HASH, "--custom-field", "license_type", "--custom-field", "orders_count",
        "--mail", "mailchimp=L1", "--deactivation-reason", "too-expensive=It is too expensive",
        "--single-opt-in",
    )  # fmt: skip
    expected = {k: v for k, v in full_document().items() if k not in projects.NOTIFICATION_FIELDS}
    assert document == {**expected, "mail_integrations": {"mailchimp": {"enabled": True, "list_id": "L1"}}}
    assert "mail_double_opt_in" not in _cli_document("--name", "x", "--hash", HASH)


def test_the_command_line_names_a_broken_rule_and_stops():
    with pytest.raises(SystemExit, match="invalid project: hash must be"):
        _cli_document("--name", "x", "--hash", "no/slash")
    with pytest.raises(SystemExit, match="invalid project: a mail integration is PROVIDER=LIST_ID"):
        _cli_document("--name", "x", "--hash", HASH, "--mail", "sendgrid=L1")
