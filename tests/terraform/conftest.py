"""The Terraform under terraform/, parsed once per session (no test changes it)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.terraform.hcl import _merge_config


@pytest.fixture(scope="session")
def tf() -> dict[str, Any]:
    return _merge_config()


@pytest.fixture(scope="session")
def routes(tf: dict[str, Any]) -> dict[str, dict[str, str]]:
    return tf["locals"]["routes"]


@pytest.fixture(scope="session")
def templates(tf: dict[str, Any]) -> dict[str, dict[str, str]]:
    return tf["locals"]["templates"]
