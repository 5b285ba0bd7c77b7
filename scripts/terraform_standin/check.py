"""`make check-terraform`: terraform fmt, validate and plan of terraform/ with the real binary.

Where the provider registry answers, the real providers are installed (`terraform init`,
its data dir under .local/). Where it does not, each provider the configuration
requires runs as the schema-only stand-in (provider.py) through `dev_overrides` in a
CLI configuration written here, which needs no `init`. Either way plan runs with
-refresh=false -lock=false -input=false and the example tfvars, against no state, and
writes nothing into terraform/: the data dir, the plan file and its log go under
.local/terraform-check/. Where there is no `terraform` binary this says so and skips.

Standard library only: the tests import it from the project venv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STANDIN_DIR = ROOT / ".local" / "terraform-standin"  # schemas/ (made by the Makefile)
STANDIN_PYTHON = ROOT / ".local" / "terraform-venv" / "bin" / "python"
WORK_DIR = ROOT / ".local" / "terraform-check"
PROVIDER_SCRIPT = Path(__file__).resolve().parent / "provider.py"
REGISTRY_PROBE = "https://registry.terraform.io/.well-known/terraform.json"

_SOURCE = re.compile(r'^\s*source\s*=\s*"([^"]+)"', re.M)


@dataclass
class Result:
    ok: bool
    step: str  # the step that failed, or "plan"
    output: str  # that step's output
    addresses: list[str] = field(default_factory=list)  # planned resource instances
    summary: str = ""  # "Plan: N to add, ..."
    planned: dict[str, Any] = field(default_factory=dict)  # address => planned values (`after`) of each


def terraform_binary() -> str | None:
    return shutil.which("terraform")


def registry_reachable(timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(REGISTRY_PROBE, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def required_providers(tf_dir: Path) -> list[str]:
    """Source addresses ("hashicorp/google") in the required_providers of tf_dir's .tf files."""
    sources = set()
    for path in tf_dir.glob("*.tf"):
        sources.update(_SOURCE.findall(path.read_text(encoding="utf-8")))
    return sorted(sources)


def standin_cli_config(tf_dir: Path, work: Path) -> Path:
    """A CLI configuration whose dev_overrides run a stand-in for each required provider."""
    overrides = []
    missing = []
    for source in required_providers(tf_dir):
        name = source.rsplit("/", 1)[-1]
        schema = STANDIN_DIR / "schemas" / f"{name}.json"
        if not schema.is_file():
            missing.append(source)
            continue
        address = source if source.count("/") == 2 else f"registry.terraform.io/{source}"
        plugin_dir = work / "providers" / name
        plugin_dir.mkdir(parents=True, exist_ok=True)
        plugin = plugin_dir / f"terraform-provider-{name}"
        plugin.write_text(
            f'#!/bin/sh\nexec "{STANDIN_PYTHON}" "{PROVIDER_SCRIPT}" "{address}" "{schema}" "$@"\n',
            encoding="utf-8",
        )
        plugin.chmod(0o755)
        overrides.append(f'    "{source}" = "{plugin_dir}"')
    if missing:
        raise SystemExit(
            f"no stand-in schema for {', '.join(missing)} under {STANDIN_DIR / 'schemas'}: "
            "add its cdktf-cdktf-provider-* package to TF_SCHEMA_PACKAGES in the Makefile "
            "(or run make check-terraform, which installs them)"
        )
    config = work / "terraformrc"
    config.write_text(
        "provider_installation {\n  dev_overrides {\n" + "\n".join(overrides) + "\n  }\n  direct {}\n}\n",
        encoding="utf-8",
    )
    return config


def _env(work: Path, cli_config: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TF_DATA_DIR=str(work / "data"), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    env.pop("TF_CLI_ARGS", None)
    if cli_config is None:
        if not Path(env.get("TF_CLI_CONFIG_FILE", "/")).is_file():
            env.pop("TF_CLI_CONFIG_FILE", None)  # one that names no file only warns
    else:
        env["TF_CLI_CONFIG_FILE"] = str(cli_config)
    return env


def _run(terraform: str, tf_dir: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [terraform, f"-chdir={tf_dir}", *args, "-no-color"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def validate_and_plan(
    tf_dir: Path, var_file: str | None = None, work: Path = WORK_DIR, standin: bool = True, terraform: str = ""
) -> Result:
    """terraform validate, then plan, of tf_dir (fmt is the caller's). standin=False: init from the registry."""
    terraform = terraform or terraform_binary() or "terraform"
    tf_dir = tf_dir.resolve()
    work = work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = _env(work, standin_cli_config(tf_dir, work) if standin else None)

    if not standin:
        lock = tf_dir / ".terraform.lock.hcl"
        had_lock = lock.exists()
        done = _run(terraform, tf_dir, ["init", "-input=false"], env)
        if not had_lock:
            lock.unlink(missing_ok=True)  # init's lock file is for a real deploy to commit, not for this
        if done.returncode:
            return Result(False, "init", done.stdout + done.stderr)

    done = _run(terraform, tf_dir, ["validate"], env)
    if done.returncode:
        return Result(False, "validate", done.stdout + done.stderr)

    plan_file = work / "plan.bin"
    args = ["plan", "-refresh=false", "-lock=false", "-input=false", f"-out={plan_file}"]
    if var_file:
        args.append(f"-var-file={var_file}")
    done = _run(terraform, tf_dir, args, env)
    output = done.stdout + done.stderr
    (work / "plan.log").write_text(output, encoding="utf-8")
    if done.returncode:
        return Result(False, "plan", output)
    summary = next((line.strip() for line in output.splitlines() if line.startswith("Plan: ")), "")

    shown = _run(terraform, tf_dir, ["show", "-json", str(plan_file)], env)
    if shown.returncode:
        return Result(False, "show", shown.stdout + shown.stderr)
    changes = json.loads(shown.stdout).get("resource_changes", [])
    created = [c for c in changes if c.get("mode") == "managed" and "create" in c["change"]["actions"]]
    addresses = [c["address"] for c in created]
    planned = {c["address"]: c["change"].get("after") or {} for c in created}
    return Result(True, "plan", output, addresses, summary, planned)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / "terraform")
    parser.add_argument("--var-file", default="terraform.tfvars.example", help="relative to --dir")
    parser.add_argument("--provider", choices=["auto", "standin", "registry"], default="auto")
    args = parser.parse_args(argv)

    terraform = terraform_binary()
    if terraform is None:
        print("check-terraform: no terraform binary on PATH: skipping fmt, validate and plan (checkov still runs)")
        return 0

    started = time.monotonic()
    fmt = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "-no-color", str(args.dir)],
        env=_env(WORK_DIR, None),
        check=False,
    )
    if fmt.returncode:
        print("check-terraform: terraform fmt -check failed: run terraform fmt -recursive terraform", file=sys.stderr)
        return 1

    standin = args.provider == "standin" or (args.provider == "auto" and not registry_reachable())
    how = "schema-only stand-in providers (registry not reachable)" if standin else "the real providers"
    print(f"check-terraform: validate and plan with {how}")
    result = validate_and_plan(args.dir, args.var_file, standin=standin, terraform=terraform)
    if not result.ok and result.step == "init" and args.provider == "auto":
        # The registry answered but the providers did not download (a mirror, a proxy...).
        print("check-terraform: terraform init failed; validate and plan with the stand-ins instead")
        result = validate_and_plan(args.dir, args.var_file, standin=True, terraform=terraform)
    if not result.ok:
        print(result.output, file=sys.stderr)
        print(f"check-terraform: terraform {result.step} failed", file=sys.stderr)
        return 1
    for address in result.addresses:
        print(f"  + {address}")
    print(f"check-terraform: {result.summary} ({len(result.addresses)} resources planned)")
    print(
        f"check-terraform: fmt, validate and plan took {time.monotonic() - started:.1f}s; plan log: "
        f"{WORK_DIR.relative_to(ROOT) / 'plan.log'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
