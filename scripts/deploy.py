"""Deploy the whole product to one Google Cloud project, in order, on an empty project or over
a running one:

    scripts/deploy --project P --region R --tfvars terraform/terraform.tfvars [--image-tag T] ...
    scripts/deploy --dry-run ...   # print every command, numbered, in order; run none

Steps: terraform init; a first targeted apply of what the image builds need (APIs,
the Artifact Registry repository, the build service account and its grants); the two
template images (skipped where the tag already exists: tags are immutable, and
rolling back is deploying an older tag); the full terraform apply (it also builds and
uploads the function zips itself); the secret versions; resuming the schedules; the
dashboard's URL (and that it answers); a smoke test that posts one ping to each
endpoint and finds the object it became.

Each command is printed before it runs, and runs as an argument list (no shell).
Secret values are read from the files given and passed on stdin, never printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = ROOT / "terraform"
TEMPLATES = ("tracking", "deactivation")
ROUTES = ("track", "deactivate", "tracking-skipped")
SCHEDULER_JOBS = (
    "telemetry-tracking", "telemetry-deactivation", "telemetry-analytics", "telemetry-audit", "telemetry-notify",
)  # fmt: skip
SECRETS = {
    "mongodb-uri": "mongodb_uri_file",
    "mail-api-token": "mail_api_token_file",
    # The dashboard's own credential: a read-only MongoDB user (terraform/dashboard.tf).
    "dashboard-mongodb-uri": "dashboard_mongodb_uri_file",
    # The key that signs the dashboard page's sign-in cookies (telemetry/dashboard/sessions.py).
    "dashboard-session-secret": "dashboard_session_secret_file",
    # The SMTP relay's password or API key, for the notify function's alerts (terraform/notify.tf).
    "smtp-password": "smtp_password_file",
}
# What the image builds need before the first full apply (terraform/apis.tf, pipelines.tf).
BOOTSTRAP_TARGETS = ("google_project_service.enabled", "google_artifact_registry_repository.pipelines")
# Terraform outputs read (terraform/outputs.tf).
OUT_IMAGES, OUT_BUILD_ACCOUNT, OUT_BUILD_BUCKET = "template_images", "build_service_account", "build_bucket"
OUT_BASE_URL, OUT_BUCKET, OUT_PARAMETERS = "ingest_base_url", "pings_bucket", "launch_parameters"
OUT_DASHBOARD = "dashboard_url"
# md5("deploy-smoke-test"), the form of a project hash; no project has it, so the smoke pings
# end in BigQuery `rejected` (reason unknown_project).
SMOKE_PROJECT = hashlib.md5(b"deploy-smoke-test", usedforsecurity=False).hexdigest()


# The headings of Deployer.deploy, the smoke test last. Each heading says how far the
# deploy has got; the long waits inside a step (terraform apply, Cloud Build) print
# their own progress, which a bar of ours would tear.
STEPS = 9


class Deployer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dry_run = args.dry_run
        self.number = 0
        self.step = 0
        self.steps = STEPS - 1 if args.skip_smoke_test else STEPS
        self.started = time.monotonic()

    # --- printing and running -------------------------------------------------------------

    def heading(self, title: str, note: str = "") -> None:
        self.step += 1
        elapsed = "" if self.dry_run else f", {timedelta(seconds=round(time.monotonic() - self.started))} elapsed"
        print(f"\n== Step {self.step}: {title}   [{self.step}/{self.steps}{elapsed}]", flush=True)
        if note:
            print(f"   {note}", flush=True)

    def _show(self, argv: list[str], stdin_from: str | None, note: str) -> None:
        self.number += 1
        line = " ".join(_quote(a) for a in argv)
        if stdin_from:
            line += f" < {stdin_from}"
        print(f"[{self.number}] {line}" + (f"   # {note}" if note else ""), flush=True)

    def run(self, argv: list[str], stdin_from: str | None = None, data: bytes | None = None, note: str = "") -> None:
        self._show(argv, stdin_from, note)
        if not self.dry_run:
            subprocess.run(argv, check=True, input=data, cwd=ROOT)

    def output(self, argv: list[str], placeholder: str, note: str = "") -> str:
        """A command whose standard output the next commands use; in a dry run, `placeholder`."""
        self._show(argv, None, note)
        if self.dry_run:
            return placeholder
        return subprocess.run(argv, check=True, cwd=ROOT, capture_output=True, text=True).stdout.strip()

    def succeeds(self, argv: list[str], note: str) -> bool:
        """A check: whether the command exits 0 (its output is not shown). A dry run assumes no."""
        self._show(argv, None, note)
        if self.dry_run:
            return False
        return subprocess.run(argv, cwd=ROOT, capture_output=True).returncode == 0

    # --- commands ---------------------------------------------------------------------------

    def terraform(self, *args: str) -> list[str]:
        return ["terraform", f"-chdir={TERRAFORM_DIR.relative_to(ROOT)}", *args]

    def variables(self, paused: bool) -> list[str]:
        a = self.args
        tfvars = Path(a.tfvars).resolve()
        return [
            f"-var-file={tfvars}",
            f"-var=project_id={a.project}",
            f"-var=region={a.region}",
            f"-var=template_image_tag={self.tag}",
            # Paused until the images and the secrets exist; the last apply unpauses them,
            # so that Terraform's state and the schedules agree (no drift to undo).
            f"-var=pipeline_schedules_paused={'true' if paused else 'false'}",
        ]

    def apply(self, *extra: str, paused: bool = True) -> list[str]:
        return self.terraform(
            "apply",
            "-input=false",
            *self.variables(paused),
            *extra,
            *(["-auto-approve"] if self.args.auto_approve else []),
        )

    def tf_output(self, name: str, raw: bool = True) -> str:
        return self.output(
            self.terraform("output", "-raw" if raw else "-json", name), f"<{name} from terraform output>"
        )

    def gcloud(self, *args: str) -> list[str]:
        return ["gcloud", *args, f"--project={self.args.project}"]

    # --- the deployment ---------------------------------------------------------------------

    def deploy(self) -> int:
        a = self.args
        self.tag = a.image_tag or (_git_short_sha() if not self.dry_run else "<git short sha of HEAD>")
        print(
            f"Deploying image tag {self.tag} and the function sources of this checkout to {a.project} ({a.region})"
            + (" -- dry run, nothing is executed" if self.dry_run else "")
        )

        self.heading("terraform init", "a remote state backend is configured with --backend-config (docs/deploying.md)")
        self.run(self.terraform("init", "-input=false", *[f"-backend-config={c}" for c in a.backend_config]))

        self.heading(
            "what the image builds need, before anything else exists",
            "a targeted apply: the APIs, the Artifact Registry repository, the build service account and its grants",
        )
        targets = [*BOOTSTRAP_TARGETS, *build_account_targets(), *a.bootstrap_target]
        self.run(self.apply(*[f"-target={t}" for t in targets]), note="changes nothing once they exist")

        self.heading(
            "function sources",
            "nothing to run: Terraform zips functions/ and telemetry/ itself (data.archive_file in "
            "terraform/functions.tf, analytics.tf and audit.tf) and uploads each zip under its MD5 during the full "
            "terraform apply (step 5)",
        )

        self.heading(
            f"template images (tag {self.tag}) and their specs",
            "built by Cloud Build as the build service account; the specs are written by Terraform "
            "(google_storage_bucket_object.template_spec) in step 5",
        )
        images = self.tf_output(OUT_IMAGES, raw=False)
        images = (
            json.loads(images)
            if not self.dry_run
            else {t: f"<{OUT_IMAGES}[{t}] from terraform output>" for t in TEMPLATES}
        )
        account = a.build_service_account or self.tf_output(OUT_BUILD_ACCOUNT)
        build_bucket = self.tf_output(OUT_BUILD_BUCKET)
        for template in TEMPLATES:
            image = images[template]
            if self.succeeds(
                self.gcloud("artifacts", "docker", "images", "describe", image),
                note="exists already (tags are immutable): skip its build",
            ):
                print(f"   {image} exists: not rebuilt")
                continue
            self.run(
                self.gcloud(
                    "builds",
                    "submit",
                    ".",
                    "--config=dataflow_templates/cloudbuild.yaml",
                    f"--region={a.region}",
                    f"--service-account=projects/{a.project}/serviceAccounts/{account}",
                    f"--gcs-source-staging-dir=gs://{build_bucket}/source",
                    f"--gcs-log-dir=gs://{build_bucket}/logs",
                    f"--substitutions=_TEMPLATE={template},_IMAGE={image}",
                ),
                note="unless it exists",
            )

        self.heading(
            "terraform apply", "everything: functions (zips built here), specs naming the new images, scheduler jobs"
        )
        self.run(self.apply())

        self.heading("secret versions", "values read from the files given, trailing newline dropped, passed on stdin")
        parameters = self.tf_output(OUT_PARAMETERS, raw=False)
        # Mail is configured when the runs are given a mail_api_token (mail_api_url set).
        mail = "mail_api_token" in json.loads(parameters) if not self.dry_run else True
        for name, option in SECRETS.items():
            path = getattr(a, option)
            if name == "mail-api-token" and not (mail or path):
                print("   mail-api-token: mail is not configured (mail_api_url empty), no version needed")
                continue
            when = "only if mail_api_url is set" if name == "mail-api-token" and self.dry_run else ""
            if path:
                data = b"" if self.dry_run else Path(path).read_bytes().rstrip()
                if not self.dry_run and not data:
                    raise SystemExit(f"{path} is empty")
                self.run(
                    self.gcloud("secrets", "versions", "add", name, "--data-file=-"),
                    stdin_from=path,
                    data=data,
                    note=when,
                )
            else:
                versions = self.output(
                    self.gcloud(
                        "secrets",
                        "versions",
                        "list",
                        name,
                        "--filter=state:ENABLED",
                        "--limit=1",
                        "--format=value(name)",
                    ),
                    "<an enabled version>",
                    note=f"{when + '; ' if when else ''}no --{option.replace('_', '-')}: it must hold a version",
                )
                if not versions:
                    raise SystemExit(f"secret {name} has no enabled version: pass --{option.replace('_', '-')}")

        self.heading(
            "unpause the schedules",
            f"the earlier applies kept {', '.join(SCHEDULER_JOBS)} paused until the images and secrets existed; "
            "this apply changes only that",
        )
        self.run(self.apply(paused=False))

        self.heading("the dashboard", "its URL; the API is under /v1, each project's key from telemetry-admin")
        dashboard = self.tf_output(OUT_DASHBOARD)
        print(f"   dashboard: {dashboard}")
        print("   a key for a project: MONGODB_URI=<read-write URI> telemetry-admin key create --project HASH")
        if not a.skip_smoke_test and not self.dashboard_answers(dashboard):
            return 1

        if a.skip_smoke_test:
            print("\n(smoke test skipped)")
            return 0
        self.heading(
            "smoke test",
            f"one ping to each endpoint (project hash {SMOKE_PROJECT}: lands in BigQuery rejected); "
            "then the object it became",
        )
        base = self.tf_output(OUT_BASE_URL)
        bucket = self.tf_output(OUT_BUCKET)
        return self.smoke_test(base, bucket)

    def smoke_test(self, base: str, bucket: str) -> int:
        failures = 0
        for route in ROUTES:
            before = datetime.now(UTC)
            ping_id = self.post(f"{base.rstrip('/')}/{route}", route)
            after = datetime.now(UTC)
            if ping_id is None:
                failures += 1
                continue
            hours = sorted({before.strftime("%Y/%m/%d/%H"), after.strftime("%Y/%m/%d/%H")})
            if self.dry_run:
                hours = ["<YYYY/MM/DD/HH of the post>"]
            listed = False
            for hour in hours:
                argv = [
                    "gcloud",
                    "storage",
                    "ls",
                    f"gs://{bucket}/{route}/{hour}/{ping_id}.json",
                    f"--project={self.args.project}",
                ]
                listed = self.succeeds(argv, note="where the ping landed") or listed
                if listed and not self.dry_run:
                    print(f"   landed: gs://{bucket}/{route}/{hour}/{ping_id}.json")
                    break
            if not listed and not self.dry_run:
                print(f"   NOT FOUND: {route} ping {ping_id} in gs://{bucket}/{route}/", file=sys.stderr)
                failures += 1
        if failures:
            print(f"\nsmoke test: {failures} of {len(ROUTES)} endpoints failed", file=sys.stderr)
            return 1
        print("\nsmoke test: every endpoint stored its ping" if not self.dry_run else "")
        return 0

    def dashboard_answers(self, base: str) -> bool:
        """Its description answers 200, and a list without a key 401."""
        checks = (("/v1/openapi.json", 200), (f"/v1/projects/{SMOKE_PROJECT}/sites", 401))
        ok = True
        for path, expected in checks:
            url = f"{base.rstrip('/')}{path}"
            self._show(["GET", url], None, f"expect {expected}")
            if self.dry_run:
                continue
            import requests

            try:
                status = requests.get(url, timeout=60).status_code
            except requests.RequestException as e:
                print(f"   {url}: {e}", file=sys.stderr)
                ok = False
                continue
            print(f"   {path}: HTTP {status}")
            if status != expected:
                print(f"   {path}: expected {expected}", file=sys.stderr)
                ok = False
        return ok

    def post(self, url: str, route: str) -> str | None:
        self._show(["POST", url], None, f"one {route} ping (application/x-www-form-urlencoded)")
        if self.dry_run:
            return "<id answered>"
        import random

        import requests

        from telemetry.local import samples

        rng = random.Random(uuid.uuid4().int)
        body = {
            "track": lambda: samples.track_payload(rng, SMOKE_PROJECT, 0),
            "deactivate": lambda: samples.deactivate_payload(rng, SMOKE_PROJECT, 0),
            "tracking-skipped": lambda: samples.tracking_skipped_payload(rng, SMOKE_PROJECT),
        }[route]()
        try:
            response = requests.post(
                url,
                data=samples.http_build_query(body),
                headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
                timeout=60,
            )
        except requests.RequestException as e:
            print(f"   {route}: {e}", file=sys.stderr)
            return None
        if response.status_code != 200 or "id" not in response.text:
            print(f"   {route}: HTTP {response.status_code} {response.text[:300]}", file=sys.stderr)
            return None
        ping_id = response.json()["id"]
        print(f"   {route}: HTTP 200, id {ping_id}")
        return ping_id


def build_account_targets() -> list[str]:
    """The build service account and every resource naming it (its grants), read from terraform/*.tf:
    a google_service_account whose name contains "build"."""
    blocks = {}
    for path in sorted(TERRAFORM_DIR.glob("*.tf")):
        parts = re.split(r'^resource "([\w-]+)" "([\w-]+)"', path.read_text(), flags=re.M)
        for i in range(1, len(parts) - 1, 3):
            blocks[f"{parts[i]}.{parts[i + 1]}"] = parts[i + 2]
    accounts = [a for a in blocks if a.startswith("google_service_account.") and "build" in a.split(".", 1)[1]]
    found = []
    for address, body in blocks.items():
        if address in accounts or any(re.search(rf"\b{re.escape(a)}\b", body) for a in accounts):
            found.append(address)
    return found


def _git_short_sha() -> str:
    sha = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, check=True, capture_output=True, text=True)
    if dirty.stdout.strip():
        raise SystemExit(
            "the checkout has uncommitted changes: commit them (the image tag is the commit, and tags are immutable), "
            "or give --image-tag"
        )
    return sha.stdout.strip()


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./<>\[\]-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/deploy",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Roll back: check out the release to return to and run this again (its image tag exists, so it is "
        "reused; Terraform puts back its functions, specs and schedules).",
    )
    parser.add_argument(
        "--project", required=True, help="Google Cloud project id (overrides project_id of the tfvars)."
    )
    parser.add_argument("--region", required=True, help="Region (overrides region of the tfvars), e.g. europe-west1.")
    parser.add_argument("--tfvars", default=str(TERRAFORM_DIR / "terraform.tfvars"), help="Terraform variables file.")
    parser.add_argument("--image-tag", help="Tag of the two template images. Default: the checkout's short commit id.")
    parser.add_argument("--mongodb-uri-file", help="File holding the MongoDB URI: added as a new mongodb-uri version.")
    parser.add_argument("--mail-api-token-file", help="File holding the mail API token (only with mail_api_url set).")
    parser.add_argument(
        "--smtp-password-file",
        help="File holding the SMTP relay's password or API key (smtp_relay, smtp_username in the tfvars): added as "
        "an smtp-password version. The notify function mounts it, so it must hold a version.",
    )
    parser.add_argument(
        "--dashboard-mongodb-uri-file",
        help="File holding the dashboard's MongoDB URI (a read-only user): added as a dashboard-mongodb-uri version.",
    )
    parser.add_argument(
        "--dashboard-session-secret-file",
        help="File holding at least 32 random characters (e.g. `openssl rand -base64 48`) that sign the dashboard's "
        "sign-in cookies: added as a dashboard-session-secret version. A new version signs everyone out.",
    )
    parser.add_argument(
        "--build-service-account", help=f"Email Cloud Build runs as. Default: terraform output {OUT_BUILD_ACCOUNT}."
    )
    parser.add_argument("--backend-config", action="append", default=[], help="Passed to terraform init; repeatable.")
    parser.add_argument("--bootstrap-target", action="append", default=[], help="One more -target of the first apply.")
    parser.add_argument("--auto-approve", action="store_true", help="Apply without Terraform's confirmation prompt.")
    parser.add_argument("--skip-smoke-test", action="store_true", help="Do not post the three smoke-test pings.")
    parser.add_argument("--dry-run", action="store_true", help="Print every command in order, numbered; run none.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run:
        missing = [tool for tool in ("terraform", "gcloud", "git") if shutil.which(tool) is None]
        if missing:
            raise SystemExit(f"not on PATH: {', '.join(missing)}")
        if not Path(args.tfvars).is_file():
            raise SystemExit(f"no such tfvars file: {args.tfvars}")
    started = time.monotonic()
    try:
        code = Deployer(args).deploy()
    except subprocess.CalledProcessError as e:
        print(f"\nFAILED: {' '.join(map(str, e.cmd))} exited {e.returncode}", file=sys.stderr)
        return e.returncode or 1
    if not args.dry_run:
        print(f"done in {timedelta(seconds=round(time.monotonic() - started))}")
    return code


if __name__ == "__main__":
    sys.exit(main())
