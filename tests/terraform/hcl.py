"""Pure helpers for the static Terraform checks: parse terraform/*.tf with python-hcl2 and read it.

Resources declared with `for_each = local.routes` are expanded here the way
Terraform would: `each.key` / `each.value.*` and `var.*` defaults are
substituted in the few strings under test, and anything else left unrendered
fails the test instead of passing silently.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"

TEMPLATES_DIR = ROOT / "dataflow_templates"


# Values for the variables that have no default, to render names.
SAMPLE_VARS = {"project_id": "sample-project", "tracking_bucket": "sample-pings", "template_image_tag": "v1"}


PARSE_OPTIONS = SerializationOptions(
    strip_string_quotes=True,  # "track" rather than '"track"'
    with_comments=False,
    explicit_blocks=False,
    preserve_heredocs=False,
)


# --- Parsing --------------------------------------------------------------------------


def _parse(path: Path) -> dict[str, Any]:
    return hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=PARSE_OPTIONS)


def _merge_config() -> dict[str, Any]:
    """Every .tf file as one module: kind -> (type ->) name -> body; duplicates fail."""
    merged: dict[str, Any] = {
        "resource": {},
        "data": {},
        "variable": {},
        "locals": {},
        "output": {},
        "terraform": [],
        "provider": [],
        "check": {},
    }
    for path in sorted(TF_DIR.glob("*.tf")):
        parsed = _parse(path)
        unknown = set(parsed) - set(merged)
        assert not unknown, f"{path.name}: unexpected top-level blocks {unknown}"
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        table = merged[kind].setdefault(rtype, {})
                        assert name not in table, f"{kind} {rtype}.{name} declared twice"
                        table[name] = body
        for kind in ("variable", "output", "check"):
            for block in parsed.get(kind, []):
                for name, body in block.items():
                    assert name not in merged[kind], f"{kind} {name} declared twice"
                    merged[kind][name] = body
        for block in parsed.get("locals", []):
            for name, value in block.items():
                assert name not in merged["locals"], f"local {name} declared twice"
                merged["locals"][name] = value
        merged["terraform"].extend(parsed.get("terraform", []))
        merged["provider"].extend(parsed.get("provider", []))
    return merged


def _resource(tf: dict[str, Any], rtype: str, name: str) -> dict[str, Any]:
    assert name in tf["resource"].get(rtype, {}), f"resource {rtype}.{name} is not declared"
    return tf["resource"][rtype][name]


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a resource body."""
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block, got {blocks!r}"
    return blocks[0]


def _expr(value: Any) -> str:
    """`${foo.bar}` -> `foo.bar`; anything else unchanged, as text."""
    text = str(value)
    match = re.fullmatch(r"\$\{(.*)\}", text, re.S)
    return match.group(1) if match else text


def _render(
    text: str,
    tf: dict[str, Any],
    key: str | None = None,
    value: dict[str, Any] | None = None,
    refs: dict[str, str] | None = None,
) -> str:
    """Substitute each.key, each.value.<attr>, var.<name> and the given resource references as Terraform would."""

    def substitute(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if refs and expr in refs:
            return refs[expr]
        if expr == "each.key" and key is not None:
            return key
        if expr.startswith("each.value.") and value is not None:
            return str(value[expr.removeprefix("each.value.")])
        if expr.startswith("var."):
            name = expr.removeprefix("var.")
            default = tf["variable"][name].get("default")
            return str(default if default is not None else SAMPLE_VARS[name])
        raise AssertionError(f"cannot render ${{{expr}}} in {text!r}")

    return re.sub(r"\$\{([^${}]+)\}", substitute, text)


def _strings(node: Any):
    """Every string anywhere in a parsed structure (keys included)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _iam_grants(tf: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every IAM grant resource."""
    return [
        (rtype, name, body)
        for rtype, named in tf["resource"].items()
        if re.search(r"_iam_(member|binding|policy)$", rtype)
        for name, body in named.items()
    ]


def _members(body: dict[str, Any]) -> list[str]:
    if "member" in body:
        return [str(body["member"])]
    return [str(m) for m in body.get("members", [])]


def _call_argument(value: Any, *functions: str) -> Any:
    """`${f(g(<arg>))}` -> <arg>, parsed as HCL: the object literal inside nested calls."""
    text = _expr(value)
    for function in functions:
        assert text.startswith(f"{function}(") and text.endswith(")"), f"expected {function}(...), got {text!r}"
        text = text[len(function) + 1 : -1]
    return hcl2.loads(f"argument = {text}", serialization_options=PARSE_OPTIONS)["argument"]


def _squash(text: Any) -> str:
    """An expression without whitespace, to compare its text."""
    return re.sub(r"\s+", "", _expr(text))


# The scope each IAM member resource grants on, by resource type.
GRANT_TARGET = {
    "google_project_iam_member": "project",
    "google_storage_bucket_iam_member": "bucket",
    "google_bigquery_dataset_iam_member": "dataset_id",
    "google_bigquery_table_iam_member": "table_id",
    "google_pubsub_subscription_iam_member": "subscription",
    "google_pubsub_topic_iam_member": "topic",
    "google_secret_manager_secret_iam_member": "secret_id",
    "google_artifact_registry_repository_iam_member": "repository",
    "google_service_account_iam_member": "service_account_id",
    "google_cloud_run_service_iam_member": "service",
}


def _grants_to(tf: dict[str, Any], account: str) -> set[tuple[str, str, str]]:
    """(type, role, scope) of every grant to google_service_account.<account>."""
    member = f"serviceAccount:${{google_service_account.{account}.email}}"
    grants = set()
    for rtype, name, body in _iam_grants(tf):
        members = _members(body)
        for m in members:
            if f"google_service_account.{account}." in m:
                assert m == member, f"{rtype}.{name}: member {m!r} is not {member!r}"
        if member in members:
            assert rtype in GRANT_TARGET, f"{rtype}.{name}: unexpected kind of grant"
            grants.add((rtype, body["role"], _expr(body[GRANT_TARGET[rtype]])))
    return grants


def _metadata(template: str) -> dict[str, Any]:
    return json.loads((TEMPLATES_DIR / template / "metadata.json").read_text(encoding="utf-8"))
