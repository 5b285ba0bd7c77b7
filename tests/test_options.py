"""Pipeline settings that need no service (secret settings: tests/test_secrets.py)."""

from __future__ import annotations

import pytest


def test_the_hourly_mail_bound_defaults_to_its_variable_and_is_at_least_one():
    from telemetry.common import config
    from telemetry.pipelines.options import PipelineOptions, PipelineSettings

    default = PipelineSettings.from_options(PipelineOptions(["--project", "p"]))
    assert default.mail_contacts_per_project_hour == config.get_int("MAIL_CONTACTS_PER_PROJECT_HOUR") == 500
    given = PipelineSettings.from_options(PipelineOptions(["--project", "p", "--mail_contacts_per_project_hour", "7"]))
    assert given.mail_contacts_per_project_hour == 7
    with pytest.raises(ValueError, match="mail_contacts_per_project_hour"):
        PipelineSettings.from_options(PipelineOptions(["--project", "p", "--mail_contacts_per_project_hour", "0"]))
