"""Each Flex Template's metadata.json, generated from the pipeline options.

    python -m telemetry.pipelines.template_metadata          # rewrite dataflow_templates/*/metadata.json
    python -m telemetry.pipelines.template_metadata --check  # exit 1 if a file is not current

A template's parameters are the pipeline options (telemetry.pipelines.options.OPTIONS),
in that order, with their labels, help texts and validation regexes; a new option is
one entry there, then a run of this module. Terraform reads the files at plan time
(terraform/pipelines.tf), and tests/test_templates.py fails while one is not current.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from telemetry.pipelines.options import OPTIONS
from telemetry.pipelines.routes import PIPELINES

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "dataflow_templates"
# What each pipeline does, as the Dataflow console shows it.
DESCRIPTIONS = {
    "tracking": "Hourly: new track/ pings to MongoDB sites and BigQuery sites, tracking-skipped/ pings to "
    "BigQuery tracking_skipped; rejected records to BigQuery rejected.",
    "deactivation": "Hourly: new deactivate/ pings to MongoDB deactivations and sites (status deactivated), "
    "BigQuery deactivations and sites; rejected records to BigQuery rejected.",
}


def metadata(pipeline: str) -> dict:
    """The template's metadata: its name, description and one parameter per option."""
    return {
        "name": f"WordPress telemetry: {pipeline}",
        "description": DESCRIPTIONS[pipeline],
        "parameters": [option.parameter() for option in OPTIONS],
    }


def text(pipeline: str) -> str:
    return json.dumps(metadata(pipeline), indent=2, ensure_ascii=False) + "\n"


def path(pipeline: str) -> Path:
    return TEMPLATES_DIR / pipeline / "metadata.json"


def stale() -> list[str]:
    """The pipelines whose metadata.json is missing or differs from what the options make."""
    return [
        name
        for name in sorted(PIPELINES)
        if not path(name).is_file() or path(name).read_text(encoding="utf-8") != text(name)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not current")
    args = parser.parse_args(argv)
    if args.check:
        for name in stale():
            print(f"{path(name)} is not current: run python -m telemetry.pipelines.template_metadata", file=sys.stderr)
        return 1 if stale() else 0
    for name in sorted(PIPELINES):
        path(name).write_text(text(name), encoding="utf-8")
        print(f"wrote {path(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
