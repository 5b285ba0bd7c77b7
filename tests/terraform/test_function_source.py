"""functions.tf: each function's zip is its deploy unit's folders, and those folders import nothing else.

The zip holds main.py, requirements.txt and the telemetry package's `common/`
and `ingest/` folders. These tests walk the imports (at any depth, lazy ones
included) so that the folder boundary is the import boundary: ingest never
imports pipeline or local-stack code, and the pipelines never import the
ingest writer.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.terraform.hcl import ROOT, _expr

TELEMETRY = ROOT / "telemetry"
FUNCTION_PACKAGES = {"common", "ingest"}


def test_archive_holds_main_requirements_and_the_deploy_unit_folders(tf):
    archive = tf["data"]["archive_file"]["function_source"]
    assert archive["type"] == "zip"
    assert _expr(archive["for_each"]) == "local.routes"
    (dynamic,) = archive["dynamic"]
    source = dynamic["source"]
    assert _expr(source["for_each"]) == "local.function_files[each.key]"
    (content,) = source["content"]
    assert _expr(content["filename"]) == "source.key"
    assert _expr(content["content"]) == "file(source.value)"

    function_files = _expr(tf["locals"]["function_files"])
    assert '"main.py" = "${local.repo_root}/functions/${route.source_dir}/main.py"' in function_files
    assert '"requirements.txt" = "${local.repo_root}/functions/requirements.txt"' in function_files
    assert "local.telemetry_files" in function_files
    assert set(tf["locals"]["function_packages"]) == FUNCTION_PACKAGES
    telemetry_files = _expr(tf["locals"]["telemetry_files"])
    assert '"telemetry/__init__.py" = "${local.repo_root}/telemetry/__init__.py"' in telemetry_files
    assert 'fileset("${local.repo_root}/telemetry/${package}", "*.py")' in telemetry_files
    assert '"telemetry/${package}/${f}" => "${local.repo_root}/telemetry/${package}/${f}"' in telemetry_files
    assert tf["locals"]["repo_root"] == "${path.module}/.."
    assert (ROOT / "functions" / "requirements.txt").is_file()
    for package in FUNCTION_PACKAGES:  # fileset("*.py") takes no sub-folders: there must be none
        assert not [p for p in (TELEMETRY / package).iterdir() if p.is_dir() and p.name != "__pycache__"]


def imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it, as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def telemetry_packages_imported(path: Path) -> set[str]:
    """The telemetry sub-packages (`common`, `ingest`, `pipelines`, `local`) a file imports from."""
    return {
        name.split(".")[1]
        for name in imports(path)
        if name.startswith("telemetry.") and (TELEMETRY / name.split(".")[1]).is_dir()
    }


def test_function_code_imports_only_the_deploy_unit_folders():
    """Every module of the zip, lazy imports included, stays inside common/ and ingest/."""
    files = [*(TELEMETRY / p / f for p in FUNCTION_PACKAGES for f in sorted((TELEMETRY / p).glob("*.py")))]
    files += [ROOT / "functions" / route / "main.py" for route in ("track", "deactivate", "tracking_skipped")]
    for path in files:
        assert telemetry_packages_imported(path) <= FUNCTION_PACKAGES, path


def test_function_code_imports_only_what_its_requirements_install():
    """Module-level imports of the zip's code: the standard library or functions/requirements.txt."""
    installed = {
        "functions_framework",
        "flask",
        "werkzeug",
        "google",
        "urllib3",
        "pythonjsonlogger",
        "orjson",
        "telemetry",
    }
    requirements = (ROOT / "functions" / "requirements.txt").read_text()
    for package in ("functions-framework", "google-auth", "urllib3", "python-json-logger", "orjson"):
        assert f"{package}==" in requirements
    for package in FUNCTION_PACKAGES:
        for path in sorted((TELEMETRY / package).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            top = set()
            for node in tree.body:  # not inside functions: those run only where they are called
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    top.add(node.module.split(".")[0])
                elif isinstance(node, ast.Import):
                    top |= {alias.name.split(".")[0] for alias in node.names}
            unknown = top - installed - set(sys.stdlib_module_names) - {"__future__"}
            assert not unknown, (path, unknown)


def test_pipelines_never_import_the_ingest_writer():
    for path in sorted((TELEMETRY / "pipelines").glob("*.py")):
        assert "ingest" not in telemetry_packages_imported(path), path
        assert "local" not in telemetry_packages_imported(path), path


ANALYTICS_PACKAGES = {"common", "analytics"}


def test_analytics_function_code_imports_only_its_deploy_unit_and_requirements():
    """analytics.tf zips common/ and analytics/ with functions/analytics/: nothing else may be imported."""
    files = sorted((TELEMETRY / "analytics").rglob("*.py")) + [ROOT / "functions" / "analytics" / "main.py"]
    installed = {"functions_framework", "flask", "werkzeug", "google", "pymongo", "pythonjsonlogger", "telemetry"}
    requirements = (ROOT / "functions" / "analytics" / "requirements.txt").read_text()
    # orjson: telemetry/common/logs.py's formatter, which the analytics job logs through.
    for package in ("functions-framework", "google-cloud-bigquery", "pymongo", "python-json-logger", "orjson"):
        assert f"{package}==" in requirements
    for path in files:
        assert telemetry_packages_imported(path) <= ANALYTICS_PACKAGES, path
        third_party = {name.split(".")[0] for name in imports(path)} - set(sys.stdlib_module_names) - {"__future__"}
        assert third_party <= installed, (path, third_party - installed)


AUDIT_PACKAGES = {"common", "audit"}


def test_audit_function_code_imports_only_its_deploy_unit_and_requirements():
    """audit.tf zips common/ and audit/ with functions/audit/. The one import from outside is
    the pipelines' entry point inside reprocess.LocalPipelines, which `make audit` uses and
    the deployed function never reaches (audit_from_env(deployed=True) takes the Dataflow
    launches, or refuses to run)."""
    files = [*sorted((TELEMETRY / "audit").glob("*.py")), ROOT / "functions" / "audit" / "main.py"]
    installed = {"functions_framework", "flask", "werkzeug", "google", "requests", "pythonjsonlogger", "telemetry"}
    requirements = (ROOT / "functions" / "audit" / "requirements.txt").read_text()
    # python-json-logger and orjson: telemetry/common's logs.py and stored_ping.py, which the zip ships.
    for package in (
        "functions-framework",
        "google-cloud-bigquery",
        "google-cloud-storage",
        "google-auth",
        "requests",
        "python-json-logger",
        "orjson",
    ):
        assert f"{package}==" in requirements
    for path in files:
        outside = telemetry_packages_imported(path) - AUDIT_PACKAGES
        if path.name == "reprocess.py":
            assert outside == {"pipelines"}, path
            assert "telemetry.pipelines.build" in imports(path)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            (local,) = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "LocalPipelines"]
            assert any(isinstance(n, ast.ImportFrom) and n.module == "telemetry.pipelines" for n in ast.walk(local))
            assert not any(
                isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("telemetry.pipelines")
                for n in tree.body
            )
        else:
            assert not outside, path
        third_party = {name.split(".")[0] for name in imports(path)} - set(sys.stdlib_module_names) - {"__future__"}
        assert third_party <= installed, (path, third_party - installed)


def test_function_requirements_pin_the_versions_the_tests_ran_with():
    pinned = {}
    for name in ("requirements.txt", "constraints.txt"):
        for line in (ROOT / name).read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                package, _, version = line.partition("==")
                pinned[package.strip().lower()] = version.split()[0]
    for requirements in (
        ROOT / "functions" / "requirements.txt",
        ROOT / "functions" / "analytics" / "requirements.txt",
        ROOT / "functions" / "audit" / "requirements.txt",
        ROOT / "functions" / "dashboard" / "requirements.txt",
    ):
        for line in requirements.read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                package, _, version = line.partition("==")
                assert pinned.get(package.strip().lower()) == version.strip(), (requirements, line)


# analytics/: the serving copy's contract and the job's progress, read by the digest,
# figures.ready and the spike alert.
NOTIFY_PACKAGES = {"common", "notify", "analytics"}


def test_notify_function_code_imports_only_its_deploy_unit_and_requirements():
    """notify.tf zips common/, notify/ and analytics/ with functions/notify/: nothing else may be imported."""
    files = [
        *sorted((TELEMETRY / "notify").glob("*.py")),
        *sorted((TELEMETRY / "analytics").glob("*.py")),
        ROOT / "functions" / "notify" / "main.py",
    ]
    installed = {
        "functions_framework", "flask", "werkzeug", "google", "pymongo", "pythonjsonlogger", "telemetry",
        "standardwebhooks", "email_validator", "urllib3",
    }  # fmt: skip
    requirements = (ROOT / "functions" / "notify" / "requirements.txt").read_text()
    for package in (
        "functions-framework", "google-cloud-bigquery", "pymongo", "python-json-logger", "orjson",
        "standardwebhooks", "email-validator", "urllib3",
    ):  # fmt: skip
        assert f"{package}==" in requirements
    for path in files:
        assert telemetry_packages_imported(path) <= NOTIFY_PACKAGES, path
        third_party = {name.split(".")[0] for name in imports(path)} - set(sys.stdlib_module_names) - {"__future__"}
        assert third_party <= installed, (path, third_party - installed)
