"""How the audit has an unbalanced range of hours processed again: the one seam
between `make audit` and the deployed audit.

- `LocalPipelines` (`make audit`, tests): the pipeline in hour mode in this
  process, on Beam's local runner (`telemetry.pipelines.build`, `--hour` and
  `--hour_to`); it returns when the run has committed, so the audit can check
  the hours again at once.
- `DataflowLaunches` (the deployed function): the pipeline's Flex Template
  launched through the Dataflow API (`flexTemplates.launch`) with the
  parameters and runtime environment Cloud Scheduler's hourly launches pass
  (terraform/audit.tf writes them into AUDIT_LAUNCH from the same locals as
  terraform/pipelines.tf), plus `hour` and `hour_to`. It returns once Dataflow
  has accepted the job; the next audit checks the hours again.

Either way the reprocess is the ordinary hour mode: it lists the hour folders
and writes what is missing, and what is there already stays as it is (MERGE
on ping_id, ordered MongoDB updates), so a reprocessed hour is never doubled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from telemetry.common.stored_ping import HOUR_ARGUMENT

DATAFLOW_API = "https://dataflow.googleapis.com/v1b3"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass(frozen=True)
class HourRange:
    """Hours `first` to `last` (inclusive, UTC) of one pipeline to process again."""

    pipeline: str
    first: datetime
    last: datetime

    @property
    def hour(self) -> str:
        return self.first.strftime(HOUR_ARGUMENT)

    @property
    def hour_to(self) -> str:
        return self.last.strftime(HOUR_ARGUMENT)

    @property
    def job_name(self) -> str:
        """The Dataflow job name of this range's reprocess: the same for the same range, so a
        repeated launch (a retried audit) finds the job already there instead of starting a second."""
        return f"audit-{self.pipeline}-{self.first:%Y%m%d%H}-{self.last:%Y%m%d%H}"

    def as_log(self) -> dict[str, str]:
        return {"pipeline": self.pipeline, "hour": self.hour, "hour_to": self.hour_to}


class Reprocessor(Protocol):
    # Whether `reprocess` returns after the run has committed (the audit then checks again).
    synchronous: bool

    def reprocess(self, hours: HourRange) -> dict[str, Any]: ...


class LocalPipelines:
    """The pipeline in hour mode, in this process (Beam's local runner)."""

    synchronous = True

    def __init__(self, extra_args: tuple[str, ...] = ()):
        self.extra_args = extra_args

    def reprocess(self, hours: HourRange) -> dict[str, Any]:
        from telemetry.pipelines import build

        argv = [hours.pipeline, "--runner", build.LOCAL_RUNNER, "--hour", hours.hour, "--hour_to", hours.hour_to]
        code = build.main([*argv, *self.extra_args])
        return {**hours.as_log(), "outcome": "reconciled" if code == 0 else "does_not_reconcile"}


class LaunchError(RuntimeError):
    """Dataflow refused a launch (anything but a created job or one of the same name already there)."""


@dataclass(frozen=True)
class LaunchSpec:
    """AUDIT_LAUNCH: where to launch, and per pipeline what the hourly launches pass."""

    project: str
    region: str
    templates: Mapping[str, Mapping[str, Any]]  # pipeline -> containerSpecGcsPath, parameters, environment

    @classmethod
    def parse(cls, text: str) -> LaunchSpec:
        try:
            spec = json.loads(text)
            templates = spec["templates"]
            for name, template in templates.items():
                missing = {"containerSpecGcsPath", "parameters", "environment"} - set(template)
                if missing:
                    raise ValueError(f"template {name} lacks {sorted(missing)}")
            return cls(project=spec["project"], region=spec["region"], templates=templates)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"AUDIT_LAUNCH is not a launch description: {e}") from e

    @property
    def url(self) -> str:
        return f"{DATAFLOW_API}/projects/{self.project}/locations/{self.region}/flexTemplates:launch"

    def request(self, hours: HourRange) -> dict[str, Any]:
        """The flexTemplates.launch body (LaunchFlexTemplateRequest) of one range's reprocess."""
        template = self.templates.get(hours.pipeline)
        if template is None:
            raise ValueError(f"AUDIT_LAUNCH has no template for pipeline {hours.pipeline!r}")
        return {
            "launchParameter": {
                "jobName": hours.job_name,
                "containerSpecGcsPath": template["containerSpecGcsPath"],
                "parameters": {**template["parameters"], "hour": hours.hour, "hour_to": hours.hour_to},
                "environment": dict(template["environment"]),
            }
        }


class DataflowLaunches:
    """The pipeline's Flex Template, launched through the Dataflow API."""

    synchronous = False

    def __init__(self, spec: LaunchSpec, session=None, timeout_seconds: float = 60):
        self.spec = spec
        self.timeout_seconds = timeout_seconds
        self._session = session

    @property
    def session(self):
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
            self._session = AuthorizedSession(credentials)
        return self._session

    def reprocess(self, hours: HourRange) -> dict[str, Any]:
        response = self.session.post(self.spec.url, json=self.spec.request(hours), timeout=self.timeout_seconds)
        if response.status_code == 409:
            # "There is already an active job named ...": an earlier audit launched this range.
            return {**hours.as_log(), "outcome": "already_running", "job_name": hours.job_name}
        if not 200 <= response.status_code < 300:
            raise LaunchError(
                f"flexTemplates.launch {hours.job_name}: HTTP {response.status_code} {response.text[:500]}"
            )
        job = response.json().get("job", {})
        return {**hours.as_log(), "outcome": "launched", "job_name": hours.job_name, "job_id": job.get("id")}
