"""The project contract against the local MongoDB: `telemetry-admin project` writes through it, and
every reader (pipelines, report) reads through `load_projects`."""

from __future__ import annotations

import json
import uuid

import pytest

from telemetry.admin import cli as admin
from telemetry.common import projects, webhook_secrets
from telemetry.report import page as report


@pytest.fixture
def project_hash(db):
    value = f"contract-{uuid.uuid4().hex[:12]}"
    yield value
    db[projects.PROJECTS].delete_many({"hash": value})
    db[webhook_secrets.WEBHOOK_SECRETS].delete_many({"project": value})


def test_the_command_line_saves_a_valid_project_and_lists_it(db, stack_env, project_hash, capsys):
    argv = ["add", "--name", "Contract Plugin", "--hash", project_hash, "--custom-field", "license_type"]
    argv += ["--mail", "wemail=W1", "--deactivation-reason", "too-slow=It is slow", "--single-opt-in"]
    assert admin.main(["project", *argv]) == 0
    assert f"project 'Contract Plugin' ({project_hash}) saved" in capsys.readouterr().out
    stored = projects.load_projects(db, [project_hash])[project_hash]
    assert stored == {
        "hash": project_hash,
        "name": "Contract Plugin",
        "type": "plugin",
        "custom_fields": ["license_type"],
        "mail_integrations": {"wemail": {"enabled": True, "list_id": "W1"}},
        "mail_double_opt_in": False,
        "deactivation_reasons": {"too-slow": "It is slow"},
    }
    assert "hash_unique" in db[projects.PROJECTS].index_information()

    # `add` again with the same hash replaces the project whole.
    assert admin.main(["project", "add", "--name", "Renamed", "--hash", project_hash, "--type", "theme"]) == 0
    assert db[projects.PROJECTS].count_documents({"hash": project_hash}) == 1
    renamed = projects.load_projects(db, [project_hash])[project_hash]
    assert (renamed["name"], renamed["type"], renamed["mail_integrations"]) == ("Renamed", "theme", {})
    assert projects.mail_double_opt_in(renamed)

    capsys.readouterr()
    assert admin.main(["project", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert renamed in listed


def test_an_invalid_project_is_refused_before_anything_is_written(db, stack_env, project_hash):
    with pytest.raises(SystemExit, match="invalid project: custom_fields"):
        admin.main(["project", "add", "--name", "x", "--hash", project_hash, "--custom-field", "a.b"])
    with pytest.raises(projects.InvalidProject, match="type must be one of"):
        projects.save_project(db, {"hash": project_hash, "name": "x", "type": "library"})
    assert db[projects.PROJECTS].count_documents({"hash": project_hash}) == 0


def test_readers_get_the_contract_fields_only_whatever_the_dashboard_stored(db, stack_env, project_hash):
    """The dashboard may keep more in a document (and older forms): the pipelines and the report
    read the contract's fields, through the one reader."""
    db[projects.PROJECTS].insert_one(
        {"hash": project_hash, "name": "Dashboard's", "type": "theme", "deactivation_reasons": ["a"], "owner": 7}
    )
    loaded = projects.load_projects(db, [project_hash])
    assert loaded == {
        project_hash: {"hash": project_hash, "name": "Dashboard's", "type": "theme", "deactivation_reasons": ["a"]}
    }
    assert project_hash in projects.load_projects(db)
    assert projects.project_reason_labels(loaded[project_hash]) == {"a": "a"}
    shown, _ = report.load(db, hashes=iter([project_hash]))
    assert shown == loaded


def test_the_notification_commands(db, stack_env, project_hash, capsys, monkeypatch):
    """telemetry-admin alerts|digest|webhook: strict, the secret printed once, never listed;
    `project add` replacing the project keeps them."""
    assert admin.main(["project", "add", "--name", "Notified", "--hash", project_hash]) == 0
    assert (
        admin.main(["alerts", "set", "--project", project_hash, "--to", "Ops@Vendor.example", "--exclude", "none"]) == 0
    )
    assert admin.main(["digest", "set", "--project", project_hash, "weekly"]) == 0
    with pytest.raises(SystemExit, match="invalid setting: alert recipient 'nobody' is not an email address"):
        admin.main(["alerts", "set", "--project", project_hash, "--to", "nobody"])
    monkeypatch.delenv("NOTIFY_ALLOW_PRIVATE_WEBHOOKS", raising=False)
    with pytest.raises(SystemExit, match="must use https"):
        admin.main(
            ["webhook", "add", "--project", project_hash, "--url", "http://h.example/", "--event", "site.activated"]
        )
    capsys.readouterr()
    url = "https://hooks.vendor.example/telemetry"
    assert admin.main(["webhook", "add", "--project", project_hash, "--url", url, "--event", "site.deactivated"]) == 0
    secret = capsys.readouterr().out.splitlines()[-1]
    stored = projects.load_project(db, project_hash)
    (endpoint,) = projects.webhook_endpoints(stored)
    assert set(endpoint) == {"id", "url", "events"} and secret.startswith("whsec_")
    # The secret is in `webhook_secrets` alone, not in the project's document (which the dashboard reads).
    assert webhook_secrets.load(db, project_hash, endpoint["id"])["secret"] == secret
    assert secret not in repr(db[projects.PROJECTS].find_one({"hash": project_hash}))
    assert projects.alert_recipients(stored) == ["Ops@vendor.example"] and projects.digest_frequency(stored) == "weekly"

    assert admin.main(["webhook", "list", "--project", project_hash]) == 0
    assert admin.main(["project", "list"]) == 0
    listed = capsys.readouterr().out
    assert endpoint["id"] in listed and url in listed and secret not in listed and "whsec_" not in listed

    assert admin.main(["webhook", "rotate-secret", "--project", project_hash, endpoint["id"]]) == 0
    rotated = capsys.readouterr().out.splitlines()[-1]
    after = webhook_secrets.load(db, project_hash, endpoint["id"])
    assert rotated != secret and after["secret"] == rotated and after["previous_secret"] == secret
    assert "whsec_" not in repr(db[projects.PROJECTS].find_one({"hash": project_hash}))
    assert admin.main(["webhook", "list", "--project", project_hash]) == 0
    assert "whsec_" not in capsys.readouterr().out

    assert admin.main(["project", "add", "--name", "Renamed", "--hash", project_hash]) == 0
    kept = projects.load_project(db, project_hash)
    assert kept["name"] == "Renamed" and projects.webhook_endpoints(kept) and projects.alert_recipients(kept)

    assert admin.main(["webhook", "remove", "--project", project_hash, endpoint["id"]]) == 0
    assert webhook_secrets.load(db, project_hash, endpoint["id"]) is None  # the secret went with it
    with pytest.raises(SystemExit, match="has no webhook"):
        admin.main(["webhook", "rotate-secret", "--project", project_hash, endpoint["id"]])
    assert admin.main(["alerts", "clear", "--project", project_hash]) == 0
    assert admin.main(["digest", "set", "--project", project_hash, "off"]) == 0
    cleared = projects.load_project(db, project_hash)
    assert projects.notification_settings(cleared) == {}
    with pytest.raises(SystemExit, match="no project"):
        admin.main(["digest", "set", "--project", "no-such-project", "daily"])
