"""scripts/deploy --dry-run: the whole plan, in order, and nothing run.

The dry run is given a PATH whose gcloud, terraform and git only leave a mark when
called: the plan must print every command, numbered, and none of them may run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dry_run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    bin_dir, mark = tmp_path / "bin", tmp_path / "called"
    bin_dir.mkdir()
    for tool in ("gcloud", "terraform", "git", "docker", "curl"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {mark}\nexit 1\n')
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))  # the wrapper's only helper
    result = subprocess.run(
        [
            str(ROOT / "scripts" / "deploy"),
            "--dry-run",
            "--project",
            "my-project",
            "--region",
            "europe-west1",
            "--tfvars",
            "terraform/terraform.tfvars.example",
            *extra,
        ],
        cwd=ROOT,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, mark


def commands(stdout: str) -> list[str]:
    found = re.findall(r"^\[(\d+)\] (.*)$", stdout, re.M)
    assert [int(n) for n, _ in found] == list(range(1, len(found) + 1)), "numbered 1..N in order"
    return [line for _, line in found]


def test_dry_run_prints_the_whole_plan_in_order_and_runs_nothing(tmp_path):
    result, mark = dry_run(tmp_path, "--mongodb-uri-file", "/secure/mongodb-uri", "--image-tag", "v1.2.3")
    assert result.returncode == 0, result.stderr
    assert not mark.exists(), mark.read_text()  # no gcloud, terraform or git was called
    plan = commands(result.stdout)

    def index(pattern: str, after: int = -1) -> int:
        hits = [i for i, line in enumerate(plan) if i > after and re.search(pattern, line)]
        assert hits, f"no command matches {pattern!r}:\n" + "\n".join(plan)
        return hits[0]

    init = index(r"^terraform -chdir=terraform init ")
    bootstrap = index(
        r"^terraform -chdir=terraform apply .*-target=google_artifact_registry_repository\.pipelines", init
    )
    assert "-target=google_project_service.enabled" in plan[bootstrap]
    images = index(r"^terraform -chdir=terraform output -json template_images$", bootstrap)
    build_tracking = index(
        r"^gcloud builds submit \. --config=dataflow_templates/cloudbuild\.yaml .*_TEMPLATE=tracking", images
    )
    assert "--service-account=projects/my-project/serviceAccounts/<build_service_account from" in plan[build_tracking]
    assert "--gcs-source-staging-dir=gs://<build_bucket from terraform output>/source" in plan[build_tracking]
    build_deactivation = index(r"^gcloud builds submit .*_TEMPLATE=deactivation", build_tracking)
    apply = index(r"^terraform -chdir=terraform apply ", build_deactivation)
    assert "-target" not in plan[apply] and "-var=template_image_tag=v1.2.3" in plan[apply]
    assert "-var=project_id=my-project" in plan[apply] and "-var=region=europe-west1" in plan[apply]
    secret = index(
        r"^gcloud secrets versions add mongodb-uri --data-file=- --project=my-project < /secure/mongodb-uri$", apply
    )
    mail = index(r"^gcloud secrets versions list mail-api-token .*only if mail_api_url is set", secret)
    assert "-var=pipeline_schedules_paused=true" in plan[apply]
    unpause = index(r"^terraform -chdir=terraform apply .*-var=pipeline_schedules_paused=false", mail)
    index(r"^gcloud secrets versions list dashboard-mongodb-uri ", mail)  # the dashboard's own, read-only user
    dashboard = index(r"^terraform -chdir=terraform output -raw dashboard_url$", unpause)
    index(r"^GET '?<dashboard_url from terraform output>/v1/openapi\.json'?\s+# expect 200$", dashboard)
    assert "dashboard: <dashboard_url from terraform output>" in result.stdout
    base_url = index(r"^terraform -chdir=terraform output -raw ingest_base_url$", dashboard)
    last = base_url
    for route in ("track", "deactivate", "tracking-skipped"):
        post = index(rf"^POST .*/{route}'", last)
        last = index(rf"^gcloud storage ls 'gs://<pings_bucket from terraform output>/{route}/", post)
    assert last == len(plan) - 1
    assert "Step 3: function sources" in result.stdout and "data.archive_file" in result.stdout


def test_each_image_build_is_skipped_where_its_tag_exists_and_the_smoke_test_can_be(tmp_path):
    result, mark = dry_run(tmp_path, "--skip-smoke-test")
    assert result.returncode == 0 and not mark.exists(), result.stderr
    plan = commands(result.stdout)
    describes = [i for i, line in enumerate(plan) if line.startswith("gcloud artifacts docker images describe")]
    builds = [i for i, line in enumerate(plan) if line.startswith("gcloud builds submit")]
    assert len(describes) == len(builds) == 2 and all(d + 1 == b for d, b in zip(describes, builds, strict=True))
    assert "<git short sha of HEAD>" in result.stdout  # not even git runs in a dry run
    assert not any(line.startswith("POST") for line in plan) and "smoke test skipped" in result.stdout
    # Without a MongoDB URI file, the deploy checks that the secret already holds a version.
    assert any(line.startswith("gcloud secrets versions list mongodb-uri") for line in plan)


def test_help_runs_with_the_venv_python():
    result = subprocess.run([str(ROOT / "scripts" / "deploy"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--dry-run" in result.stdout and "--image-tag" in result.stdout
    assert os.access(ROOT / "scripts" / "deploy", os.X_OK)


def test_each_step_heading_says_how_many_steps_there_are(tmp_path):
    for extra in ((), ("--skip-smoke-test",)):
        run_dir = tmp_path / ("skip" if extra else "all")
        run_dir.mkdir()
        result, _ = dry_run(run_dir, *extra)
        assert result.returncode == 0, result.stderr
        headings = re.findall(r"^== Step (\d+): .*\[(\d+)/(\d+)\]$", result.stdout, re.M)
        total = len(headings)
        assert total == (8 if extra else 9)
        assert [(int(n), int(again), int(of)) for n, again, of in headings] == [
            (n, n, total) for n in range(1, total + 1)
        ]
