"""The namespace of the pipelines' Beam counters.

Every step counts what it does under this one namespace (`rejected_<reason>` for
each record set aside, `objects_read_<route>`, `staged_<table>_<scope>`, ...), and
the reconciliation report of a local run is read back from it
(reconciliation.report_from_metrics). The pure transforms (transforms.py) and
the steps that talk to services (connectors.py) both count here, so neither
imports the other for it.
"""

from __future__ import annotations

NAMESPACE = "telemetry"
