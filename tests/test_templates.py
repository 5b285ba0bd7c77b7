"""The Flex Template folders agree with the pipeline code and with each other."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from telemetry.pipelines import template_metadata
from telemetry.pipelines.options import OPTIONS, TelemetryOptions, hour_paths
from telemetry.pipelines.routes import PIPELINES

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(p.name for p in (ROOT / "dataflow_templates").iterdir() if p.is_dir())


def option_names() -> set[str]:
    parser = argparse.ArgumentParser()
    TelemetryOptions._add_argparse_args(parser)
    return {action.dest for action in parser._actions if action.dest != "help"}


def test_one_template_per_pipeline():
    assert TEMPLATES == sorted(PIPELINES)
    for name in TEMPLATES:
        folder = ROOT / "dataflow_templates" / name
        for required in ("metadata.json", "main.py"):
            assert (folder / required).exists(), f"{name}/{required}"
        assert sorted(p.name for p in folder.iterdir()) == ["main.py", "metadata.json"], "the rest is shared"
        assert f'main(["{name}", *sys.argv[1:]])' in (folder / "main.py").read_text()


def test_both_templates_build_from_one_dockerfile_and_one_requirements_file():
    shared = ROOT / "dataflow_templates"
    dockerfile = (shared / "Dockerfile").read_text()
    assert "ARG TEMPLATE" in dockerfile
    assert "COPY dataflow_templates/requirements.txt dataflow_templates/${TEMPLATE}/main.py ./" in dockerfile
    cloudbuild = (shared / "cloudbuild.yaml").read_text()
    assert "-f dataflow_templates/Dockerfile" in cloudbuild
    assert "--build-arg TEMPLATE=${_TEMPLATE}" in cloudbuild


def test_the_metadata_files_are_current():
    """metadata.json is generated from the pipeline options: a new or changed option
    fails here until `python -m telemetry.pipelines.template_metadata` is run."""
    assert template_metadata.stale() == [], "run: python -m telemetry.pipelines.template_metadata"
    for name in TEMPLATES:
        on_disk = json.loads((ROOT / "dataflow_templates" / name / "metadata.json").read_text())
        assert [p["name"] for p in on_disk["parameters"]] == [option.name for option in OPTIONS]
    assert set(template_metadata.DESCRIPTIONS) == set(PIPELINES)


def test_an_option_added_without_regenerating_is_found(monkeypatch):
    from telemetry.pipelines import options

    extra = options.Option("new_option", "New", "A new option.", ("^x$",), optional=True)
    monkeypatch.setattr(template_metadata, "OPTIONS", (*options.OPTIONS, extra))
    assert template_metadata.stale() == TEMPLATES
    assert template_metadata.main(["--check"]) == 1


@pytest.mark.parametrize("name", TEMPLATES)
def test_metadata_describes_every_option_and_validates_it(name):
    metadata = json.loads((ROOT / "dataflow_templates" / name / "metadata.json").read_text())
    parameters = {p["name"]: p for p in metadata["parameters"]}
    assert set(parameters) == option_names()
    for parameter in parameters.values():
        assert parameter["helpText"] and parameter["label"] and parameter["regexes"]
    good = {
        "tracking_bucket": "acme-telemetry-pings",
        "pings_topic": "ping-objects",
        "bq_dataset": "telemetry",
        "mongodb_uri": "projects/acme/secrets/mongodb-uri/versions/latest",
        "mongodb_db": "telemetry",
        "mail_api_url": "https://dashboard.example.com/api/mail",
        "mail_api_token": "projects/acme/secrets/mail-api-token/versions/3",
        "hour": "2026-11-23T11",
        "hour_to": "2026-11-23T23",
        "lease_seconds": "600",
        "max_run_seconds": "21600",
        "mail_contacts_per_project_hour": "500",
        "max_messages_per_run": "30000",
        "ip_prefix_v4": "24",
        "ip_prefix_v6": "128",
        "site_personal_fields": "admin_email,last_name",
        "geo_databases": "gs://geo-data/GeoLite2-Country.mmdb,/opt/geo/GeoIP2-ISP.mmdb",
        "mongodb_timeout_seconds": "30",
        "bigquery_timeout_seconds": "300",
        "pubsub_timeout_seconds": "60",
    }
    bad = {
        "tracking_bucket": "Bad_Bucket!",
        "bq_dataset": "tele-metry",
        "mongodb_uri": "postgres://x",
        "mail_api_url": "ftp://x",
        "mail_api_token": "plain-text-token",
        "hour": "2026-11-23 11:00",
        "lease_seconds": "601",
        "max_run_seconds": "86401",
        "mail_contacts_per_project_hour": "0",
        "max_messages_per_run": "0",
        "ip_prefix_v4": "33",
        "ip_prefix_v6": "129",
        "site_personal_fields": "admin_email,phone",
        "geo_databases": "GeoLite2-Country.csv",
        "mongodb_timeout_seconds": "0",
        "pubsub_timeout_seconds": "-1",
    }
    for key, value in good.items():
        assert any(re.fullmatch(rx, value) for rx in parameters[key]["regexes"]), (key, value)
    for key, value in bad.items():
        assert not any(re.fullmatch(rx, value) for rx in parameters[key]["regexes"]), (key, value)
    assert {k for k, p in parameters.items() if p.get("isOptional")} == {
        "mail_api_url",
        "mail_api_token",
        "hour",
        "hour_to",
        "lease_seconds",
        "max_run_seconds",
        "mail_contacts_per_project_hour",
        "max_messages_per_run",
        "ip_prefix_v4",
        "ip_prefix_v6",
        "site_personal_fields",
        "geo_databases",
        "mongodb_timeout_seconds",
        "bigquery_timeout_seconds",
        "pubsub_timeout_seconds",
    }


@pytest.mark.parametrize("name", TEMPLATES)
def test_one_beam_version_everywhere(name):
    folder = ROOT / "dataflow_templates"
    pinned = re.search(r"^apache-beam\[gcp\]==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert f"apache/beam_python${{PYTHON_VERSION}}_sdk:{pinned} " in (folder / "Dockerfile").read_text()
    dockerfile = (folder / "Dockerfile").read_text()
    assert "COPY pyproject.toml" in dockerfile and "pip install --no-cache-dir --no-deps /src" in dockerfile
    assert f"apache-beam[gcp]=={pinned}" in (folder / "requirements.txt").read_text()
    constraints = (ROOT / "constraints.txt").read_text()
    for line in (folder / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            package = line.split("[")[0].split("==")[0]
            assert re.search(
                rf"^{re.escape(package)}(\[.*\])?=={re.escape(line.split('==')[1])}$", constraints, re.M | re.I
            ), line


def test_hour_paths():
    assert hour_paths("2026-11-23T22", "2026-11-24T01") == [
        "2026/11/23/22",
        "2026/11/23/23",
        "2026/11/24/00",
        "2026/11/24/01",
    ]
    assert hour_paths("2026-11-23T05") == ["2026/11/23/05"]
    with pytest.raises(ValueError, match="YYYY-MM-DDTHH"):
        hour_paths("2026-11-23")
    with pytest.raises(ValueError, match="before"):
        hour_paths("2026-11-23T05", "2026-11-23T04")
    with pytest.raises(ValueError, match="at most"):
        hour_paths("2026-01-01T00", "2026-03-01T00")
