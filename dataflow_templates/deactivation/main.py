"""Flex Template entry point of the deactivation pipeline: deactivate/ pings to MongoDB
deactivations and sites, BigQuery deactivations and sites.

The pipeline itself is telemetry/pipelines/build.py; this file only names it.
"""

import sys

from telemetry.pipelines.build import main

if __name__ == "__main__":
    sys.exit(main(["deactivation", *sys.argv[1:]]))
