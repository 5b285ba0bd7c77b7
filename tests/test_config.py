"""Configuration: one declaration per variable, all of them documented in docs/configuration.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from telemetry.common import config
from telemetry.ingest.settings import IngestSettings

ROOT = Path(__file__).resolve().parents[1]


def configuration_table() -> str:
    """The table docs/configuration.md holds, written from config.VARIABLES."""
    rows = [f"| `{v.name}` | {f'`{v.default}`' if v.default else '—'} | {v.help} |" for v in config.VARIABLES.values()]
    return "\n".join(["| variable | default | meaning |", "| --- | --- | --- |", *rows])


def test_the_configuration_page_lists_every_variable_as_declared():
    page = (ROOT / "docs" / "configuration.md").read_text()
    table = re.search(r"^\| variable \|.*?\n(?!\|)", page, re.M | re.S).group(0).rstrip("\n")
    assert table == configuration_table(), "docs/configuration.md's table should read:\n" + configuration_table()


def test_no_product_code_reads_the_environment_directly():
    offenders = []
    deployed = [ROOT / "telemetry" / unit for unit in ("common", "ingest", "pipelines", "analytics", "audit", "notify")]
    for path in [*(p for unit in deployed for p in unit.rglob("*.py")), *ROOT.glob("functions/*/main.py")]:
        if path.name != "config.py" and re.search(r"os\.environ|os\.getenv", path.read_text()):
            offenders.append(path.name)
    assert offenders == []


def test_values_defaults_and_errors():
    assert config.get("MAX_BODY_BYTES", {}) == "262144"
    assert config.get("MAX_BODY_BYTES", {"MAX_BODY_BYTES": ""}) == "262144"
    assert config.get_int("MAX_BODY_BYTES", {"MAX_BODY_BYTES": "1024"}) == 1024
    with pytest.raises(ValueError, match="MAX_BODY_BYTES must be an integer"):
        config.get_int("MAX_BODY_BYTES", {"MAX_BODY_BYTES": "lots"})
    with pytest.raises(ValueError, match="at least 1"):
        config.get_int("STORAGE_ATTEMPTS", {"STORAGE_ATTEMPTS": "0"})
    with pytest.raises(ValueError, match="INGEST_URL is not set"):
        config.require("INGEST_URL", {})
    with pytest.raises(KeyError):
        config.get("NOT_A_SETTING", {})


def test_ingest_limits_are_read_from_the_environment_only():
    settings = IngestSettings.from_env({"MAX_KEYS": "5000", "MAX_NESTING_DEPTH": "3"})
    assert (settings.limits.max_keys, settings.limits.max_depth) == (5000, 3)
    defaults = IngestSettings.from_env({}).limits
    assert defaults.max_keys == int(config.VARIABLES["MAX_KEYS"].default)


def test_subscription_names():
    assert config.subscription_name("ping-objects", "tracking-skipped") == "ping-objects-tracking-skipped"
