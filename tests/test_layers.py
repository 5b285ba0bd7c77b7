"""The import layers and the homes of shared facts, read from the code itself (ast, nothing imported).

- The I/O steps (pipelines/connectors.py) sit beside the pure transforms (transforms.py), not above them.
- The report and the analytics job never reach into the pipelines' package.
- The project document has one home, telemetry/common/projects.py: no other module defines its
  names, lists its fields (a projection or a document literal), reads a field of it by name, or
  opens the `projects` collection.
- The webhook signing secrets have one home, telemetry/common/webhook_secrets.py, and only notify
  and the operator's tools (telemetry/notify/, telemetry/admin/) import it: the dashboard, the
  pipelines and every other unit cannot reach a secret. No other module opens `webhook_secrets`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.common import projects, webhook_secrets

ROOT = Path(__file__).resolve().parents[1]
TELEMETRY = ROOT / "telemetry"
PROJECTS_MODULE = TELEMETRY / "common" / "projects.py"
SECRETS_MODULE = TELEMETRY / "common" / "webhook_secrets.py"
SECRETS_MODULE_NAME = "telemetry.common.webhook_secrets"
# The only packages that may read or write the signing secrets (besides their home).
SECRETS_READERS = (TELEMETRY / "notify", TELEMETRY / "admin")
# Everything that runs: the package, the scripts, the functions' and the templates' entry points.
CODE_DIRS = (TELEMETRY, ROOT / "scripts", ROOT / "functions", ROOT / "dataflow_templates")

# The names of the project contract, each defined once (in PROJECTS_MODULE).
CONTRACT_NAMES = (
    "PROJECTS",
    "load_projects",
    "enabled_mail_integrations",
    "mail_double_opt_in",
    "mail_flag",
    "project_reason_labels",
    "is_known_reason",
    "REASON_SLUG",
    "MAIL_PROVIDERS",
)
# Fields only a project document has (`hash` and `custom_fields` are also a site record's).
PROJECT_ONLY_FIELDS = set(projects.FIELDS) - {projects.HASH, projects.CUSTOM_FIELDS}
# Fields a reader must ask the contract about (custom_field_keys, enabled_mail_integrations, ...).
PROJECT_READ_FIELDS = {
    projects.CUSTOM_FIELDS,
    projects.MAIL_INTEGRATIONS,
    projects.MAIL_DOUBLE_OPT_IN,
    projects.DEACTIVATION_REASONS,
    projects.ALERTS,
    projects.DIGEST,
    projects.WEBHOOKS,
}


def python_files(*dirs: Path) -> list[Path]:
    return sorted(path for d in dirs for path in d.rglob("*.py") if ".venv" not in path.parts)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Every module an import statement of the file names, at any depth (a lazy import counts)."""
    return imports_of(parse(path), module_name(path).rsplit(".", 1)[0])


def imports_of(tree: ast.AST, package: str) -> Iterator[str]:
    """The modules `tree`'s imports name, relative ones resolved against `package`;
    `from a import b` as both `a` and `a.b` (b may be a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def literal_string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


# --- import layers ---------------------------------------------------------------------------


def test_connectors_imports_nothing_from_transforms():
    names = set(imported_modules(TELEMETRY / "pipelines" / "connectors.py"))
    assert "telemetry.pipelines.transforms" not in names
    assert not any(name.startswith("telemetry.pipelines.transforms.") for name in names)


@pytest.mark.parametrize("package", ["report", "analytics"])
def test_report_and_analytics_import_nothing_from_the_pipelines(package):
    files = python_files(TELEMETRY / package)
    assert files
    for path in files:
        reached = [name for name in imported_modules(path) if name.split(".")[:2] == ["telemetry", "pipelines"]]
        assert not reached, f"{path.relative_to(ROOT)} imports {reached}"


def test_the_layer_check_sees_lazy_and_relative_imports():
    """The checks above catch what they are meant to: an import inside a function, and a relative one."""
    probe = ast.parse(
        "def f():\n    from telemetry.pipelines.transforms import NAMESPACE\n    from ..pipelines import x\n"
    )
    assert set(imports_of(probe, "telemetry.report")) == {
        "telemetry.pipelines.transforms",
        "telemetry.pipelines.transforms.NAMESPACE",
        "telemetry.pipelines",
        "telemetry.pipelines.x",
    }


# --- the project contract has one home --------------------------------------------------------


def test_the_contract_defines_each_of_its_names():
    tree = parse(PROJECTS_MODULE)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)} | {
        t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    assert set(CONTRACT_NAMES) <= defined


def test_no_other_module_defines_a_name_of_the_project_contract():
    for path in python_files(*CODE_DIRS):
        if path == PROJECTS_MODULE:
            continue
        for node in parse(path).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = {node.name}
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
            else:
                continue
            clash = names & set(CONTRACT_NAMES)
            # population.PROJECTS and the scripts' PROJECTS are demo/bench/soak projects, not the collection.
            if clash == {"PROJECTS"} and not _assigns_collection_name(node):
                continue
            assert not clash, f"{path.relative_to(ROOT)}:{node.lineno} defines {clash}: it lives in {PROJECTS_MODULE}"


def _assigns_collection_name(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and literal_string(node.value) == projects.PROJECTS


def project_field_listings(tree: ast.AST) -> Iterator[tuple[int, set[str]]]:
    """Dict literals (a projection or a document) naming `hash` and a field only a project has."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {literal_string(k) for k in node.keys if k is not None}
            if projects.HASH in keys and keys & PROJECT_ONLY_FIELDS:
                yield node.lineno, keys & set(projects.FIELDS)


def project_field_reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """`x.get("<field>")` and `x["<field>"]` of a field the contract reads."""
    for node in ast.walk(tree):
        field = None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            field = literal_string(node.args[0])
        elif isinstance(node, ast.Subscript):
            field = literal_string(node.slice)
        if field in PROJECT_READ_FIELDS:
            yield node.lineno, field


def collection_opens(tree: ast.AST) -> Iterator[int]:
    """`db[<...>.PROJECTS]`, `db[PROJECTS]` or `db["projects"]`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            index = node.slice
            if (
                (isinstance(index, ast.Attribute) and index.attr == "PROJECTS")
                or (isinstance(index, ast.Name) and index.id == "PROJECTS")
                or literal_string(index) == projects.PROJECTS
            ):
                yield node.lineno


def test_the_checks_find_what_the_contract_module_itself_does():
    """Each check below finds what it looks for: in the contract module, and in a probe."""
    assert list(collection_opens(parse(PROJECTS_MODULE)))
    probe = ast.parse('db["projects"].find({}, {"hash": 1, "name": 1}); p.get("mail_integrations"); db[m.PROJECTS]')
    assert len(list(collection_opens(probe))) == 2
    assert [keys for _, keys in project_field_listings(probe)] == [{"hash", "name"}]
    assert [field for _, field in project_field_reads(probe)] == ["mail_integrations"]


def test_no_other_module_lists_reads_or_opens_the_project_document():
    found = []
    for path in python_files(*CODE_DIRS):
        if path == PROJECTS_MODULE:
            continue
        tree = parse(path)
        where = path.relative_to(ROOT)
        found += [f"{where}:{line} lists project fields {sorted(keys)}" for line, keys in project_field_listings(tree)]
        found += [f"{where}:{line} reads project field {field!r}" for line, field in project_field_reads(tree)]
        found += [f"{where}:{line} opens the `projects` collection" for line in collection_opens(tree)]
    assert not found, "the project document's home is telemetry/common/projects.py:\n" + "\n".join(found)


# --- the counter namespace ----------------------------------------------------------------------


def test_the_counter_namespace_has_one_home():
    homes = [
        path.relative_to(ROOT)
        for path in python_files(TELEMETRY / "pipelines")
        for node in parse(path).body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "NAMESPACE" for t in node.targets)
    ]
    assert homes == [Path("telemetry/pipelines/counters.py")]


# --- the webhook signing secrets: one home, read by notify and admin only ---------------------


def secrets_imports(path: Path) -> list[str]:
    """The imports of the file that reach the secrets module (`from telemetry.common import
    webhook_secrets` names it as `telemetry.common.webhook_secrets`)."""
    return [
        name
        for name in imported_modules(path)
        if name == SECRETS_MODULE_NAME or name.startswith(f"{SECRETS_MODULE_NAME}.")
    ]


def secrets_collection_opens(tree: ast.AST) -> Iterator[int]:
    """`db[<...>.WEBHOOK_SECRETS]`, `db[WEBHOOK_SECRETS]` or `db["webhook_secrets"]`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            index = node.slice
            if (
                (isinstance(index, ast.Attribute) and index.attr == "WEBHOOK_SECRETS")
                or (isinstance(index, ast.Name) and index.id == "WEBHOOK_SECRETS")
                or literal_string(index) == webhook_secrets.WEBHOOK_SECRETS
            ):
                yield node.lineno


def test_the_secrets_checks_find_what_they_look_for():
    assert list(secrets_collection_opens(parse(SECRETS_MODULE)))
    probe = ast.parse('db["webhook_secrets"].find_one({}); db[w.WEBHOOK_SECRETS]; db[WEBHOOK_SECRETS]')
    assert len(list(secrets_collection_opens(probe))) == 3
    assert secrets_imports(TELEMETRY / "notify" / "deliver.py") and secrets_imports(TELEMETRY / "admin" / "notify.py")


def test_only_notify_and_admin_reach_the_signing_secrets():
    found = []
    for path in python_files(*CODE_DIRS):
        if path == SECRETS_MODULE:
            continue
        where = path.relative_to(ROOT)
        if secrets_imports(path) and not any(path.is_relative_to(reader) for reader in SECRETS_READERS):
            found.append(f"{where} imports {SECRETS_MODULE_NAME}")
        found += [
            f"{where}:{line} opens the `webhook_secrets` collection" for line in secrets_collection_opens(parse(path))
        ]
    assert not found, "only telemetry/notify/ and telemetry/admin/ read the secrets, through their home:\n" + "\n".join(
        found
    )


def test_the_dashboard_reaches_the_secrets_through_nothing_it_imports():
    """Not even indirectly: no module the dashboard imports (transitively, within the package)
    imports the secrets module, so its process never loads it."""
    seen: set[str] = set()
    todo = [module_name(path) for path in python_files(TELEMETRY / "dashboard")]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = ROOT / Path(*name.split("."))
        file = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
        if not file.exists():
            continue
        todo += [n for n in imported_modules(file) if n.startswith("telemetry.")]
    assert SECRETS_MODULE_NAME not in seen
