"""Secret settings: the one reader (telemetry.common.secrets), used by every deploy unit.

Secret Manager has no local stand-in: what is tested here is the decoding of a
version's payload (`secrets.setting_value`) and that a plain value is passed
through; reading a version is the client library's one call, mocked here.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

from telemetry.common import secrets
from telemetry.common.secrets import setting_value

ROOT = Path(__file__).resolve().parents[1]


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
    assert setting_value(payload) == "mongodb+srv://u:p@cluster0.example.net/?retryWrites=true"


def test_a_secret_keeps_everything_else():
    assert setting_value("  tök€n with inner spaces\n".encode()) == "  tök€n with inner spaces"
    assert setting_value(b"") == ""


def test_a_plain_value_is_passed_through_without_its_trailing_whitespace():
    assert secrets.resolve("mongodb://127.0.0.1:27017\n") == "mongodb://127.0.0.1:27017"
    assert secrets.resolve(None) is None
    assert secrets.resolve("") == ""


def test_a_version_name_is_read_from_secret_manager(monkeypatch):
    asked = []

    class FakeClient:  # Secret Manager has no local stand-in
        def access_secret_version(self, request):
            asked.append(request["name"])
            return SimpleNamespace(payload=SimpleNamespace(data=b"mongodb+srv://u:p@x.example.net/\n"))

    monkeypatch.setattr("telemetry.common.cloud.secret_manager_client", FakeClient)
    name = "projects/acme/secrets/mongodb-uri/versions/latest"
    assert secrets.resolve(name) == "mongodb+srv://u:p@x.example.net/"
    assert asked == [name]
    # Not a version name: a value, never sent to Secret Manager.
    assert secrets.resolve("projects/acme/secrets/mongodb-uri") == "projects/acme/secrets/mongodb-uri"
    assert asked == [name]


def test_every_secret_setting_is_read_through_the_one_reader(monkeypatch):
    """The pipelines, the analytics job and the erasure get the same value from the same
    setting; and no other module reads Secret Manager or strips a setting itself."""
    from telemetry.analytics.job import AnalyticsSettings
    from telemetry.pipelines.options import PipelineOptions, PipelineSettings

    uri = "mongodb://127.0.0.1:27017/?appName=x \n"
    pipeline = PipelineSettings.from_options(PipelineOptions(["--project", "p", "--mongodb_uri", uri]))
    analytics = AnalyticsSettings.from_env({"GCP_PROJECT": "p", "MONGODB_URI": uri})
    assert pipeline.mongodb_uri() == analytics.mongodb_uri == secrets.resolve(uri) == uri.rstrip()

    home = ROOT / "telemetry" / "common" / "secrets.py"
    offenders = []
    for path in [*(ROOT / "telemetry").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        if path == home:
            continue
        text = path.read_text()
        if "secretmanager." in text.replace("cloud.secret_manager_client", "") and path.name != "cloud.py":
            offenders.append(f"{path.name}: reads Secret Manager")
        if "/secrets/[^/]+/versions/" in text:
            offenders.append(f"{path.name}: matches version names")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and node.attr == "_resolve":
                offenders.append(f"{path.name}: calls a private resolver")
    assert offenders == []
