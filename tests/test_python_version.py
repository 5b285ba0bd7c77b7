"""The Python version has one home, .python-version, read by everything that runs Python:
the Makefile's venv, the template images (build arguments from cloudbuild.yaml) and the
functions' runtime (Terraform). The tests run on it, so what deploys is what was tested."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = (ROOT / ".python-version").read_text().strip()
# A Python version written out: 3.11, python3.11, python311, py311, cp311 ...
NAMED = re.compile(r"(?i)(python|py|cp)[-_ ]?3\.?1[0-9]\b|(?<![\d.])3\.1[0-9](?![\d.])")
# Files where a version-like string is not a Python version (package pins such as pycparser==3.12).
NOT_A_PYTHON_VERSION = re.compile(r"==3\.1[0-9]\b")


def test_the_version_is_a_minor_version_and_the_tests_run_on_it():
    assert re.fullmatch(r"3\.\d+", VERSION), VERSION
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == VERSION


def test_the_makefile_reads_it():
    makefile = (ROOT / "Makefile").read_text()
    assert "PYTHON_VERSION := $(strip $(file < .python-version))" in makefile
    assert "PYTHON ?= python$(PYTHON_VERSION)" in makefile
    printed = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "--eval", "print-python: ; @echo $(PYTHON)", "print-python"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == f"python{VERSION}"


def test_the_images_take_it_as_build_arguments():
    cloudbuild = (ROOT / "dataflow_templates" / "cloudbuild.yaml").read_text()
    assert "< .python-version" in cloudbuild
    assert '--build-arg PYTHON_VERSION="$$version"' in cloudbuild
    assert '--build-arg PYTHON_RUNTIME="$${version//./}"' in cloudbuild
    dockerfile = (ROOT / "dataflow_templates" / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert froms == [
        "apache/beam_python${PYTHON_VERSION}_sdk:2.77.0",
        "gcr.io/dataflow-templates-base/python${PYTHON_RUNTIME}-template-launcher-base:20230622_RC00",
        "python:${PYTHON_VERSION}-slim",
    ]


def test_every_function_runtime_is_read_from_it():
    runtimes = {}
    for path in (ROOT / "terraform").glob("*.tf"):
        for value in re.findall(r"^\s*runtime\s*=\s*(.+)$", path.read_text(), re.M):
            runtimes.setdefault(value.strip(), []).append(path.name)
    assert set(runtimes) == {"local.python_runtime"}, runtimes
    assert sorted(runtimes["local.python_runtime"]) == [
        "analytics.tf",
        "audit.tf",
        "dashboard.tf",
        "functions.tf",
        "notify.tf",
    ]
    functions_tf = (ROOT / "terraform" / "functions.tf").read_text()
    assert (
        'python_runtime = "python${replace(trimspace(file("${local.repo_root}/.python-version")), ".", "")}"'
        in functions_tf
    )


def test_pyproject_asks_for_it_and_names_no_other():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'requires-python = ">={VERSION}"' in pyproject
    assert "target-version" not in pyproject  # ruff takes it from requires-python


def test_no_other_file_names_a_python_version():
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    allowed = {".python-version", "pyproject.toml", "tests/test_python_version.py"}
    offenders = []
    for name in tracked:
        path = ROOT / name
        if name in allowed or name.endswith(".md") or not path.is_file() or path.suffix in {".png", ".whl"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if NAMED.search(NOT_A_PYTHON_VERSION.sub("", line)):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert offenders == []
