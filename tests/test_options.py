"""Pipeline settings that need no service.

Secret Manager has no local stand-in, so what is tested here is the decoding of
a version's payload (`options.secret_value`), the pure half of `read_secret`.
"""

from __future__ import annotations

import pytest

from telemetry.pipelines.options import secret_value


@pytest.mark.parametrize(
    "payload",
    [
        b"mongodb+srv://u:p@cluster0.example.net/?retryWrites=true",
        b"mongodb+srv://u:p@cluster0.example.net/?retryWrites=true\n",  # echo ... | gcloud secrets versions add
        b"mongodb+srv://u:p@cluster0.example.net/?retryWrites=true\r\n",  # a file saved on Windows
        b"mongodb+srv://u:p@cluster0.example.net/?retryWrites=true \t\n\n",
    ],
)
def test_a_secret_loses_its_trailing_whitespace(payload):
    assert secret_value(payload) == "mongodb+srv://u:p@cluster0.example.net/?retryWrites=true"


def test_a_secret_keeps_everything_else():
    assert secret_value("  tök€n with inner spaces\n".encode()) == "  tök€n with inner spaces"
    assert secret_value(b"") == ""


def test_the_hourly_mail_bound_defaults_to_its_variable_and_is_at_least_one():
    from telemetry.common import config
    from telemetry.pipelines.options import PipelineOptions, PipelineSettings

    default = PipelineSettings.from_options(PipelineOptions(["--project", "p"]))
    assert default.mail_contacts_per_project_hour == config.get_int("MAIL_CONTACTS_PER_PROJECT_HOUR") == 500
    given = PipelineSettings.from_options(PipelineOptions(["--project", "p", "--mail_contacts_per_project_hour", "7"]))
    assert given.mail_contacts_per_project_hour == 7
    with pytest.raises(ValueError, match="mail_contacts_per_project_hour"):
        PipelineSettings.from_options(PipelineOptions(["--project", "p", "--mail_contacts_per_project_hour", "0"]))
