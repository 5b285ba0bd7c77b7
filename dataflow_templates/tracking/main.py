"""Flex Template entry point of the tracking pipeline: track/ pings to MongoDB and BigQuery sites,
tracking-skipped/ pings to BigQuery tracking_skipped.

The pipeline itself is telemetry/pipelines/build.py; this file only names it.
"""

import sys

from telemetry.pipelines.build import main

if __name__ == "__main__":
    sys.exit(main(["tracking", *sys.argv[1:]]))
