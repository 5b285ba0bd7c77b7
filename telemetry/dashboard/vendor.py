"""The JavaScript the dashboard's page loads, vendored in static/vendor/ (see its README.md), in load order.

Pinned by SHA-256: a test reads each file and compares. The Vega-Lite version
is the one Altair writes (`alt.SCHEMA_VERSION`), so the specs of
telemetry/report/charts.py compile with the compiler they were written for.
"""

from __future__ import annotations

VEGA = "6.2.0"
VEGA_LITE = "6.4.1"
VEGA_EMBED = "7.1.0"

# static/ path -> SHA-256 of the file, in the order the page loads them.
SCRIPTS = {
    f"vendor/vega-{VEGA}.min.js": "ea6a5936381d06f912466354e2b6a20eb66c4d41f1ca9dff1e0236dfee6ee392",
    f"vendor/vega-lite-{VEGA_LITE}.min.js": "6d5035fdd429b4bc6f91f3754426c3f516f3dbd8e08b105cfc2496bed4ebd254",
    f"vendor/vega-embed-{VEGA_EMBED}.min.js": "c36254270219eee58fb9b1d954decad954fb07bfc9ab780c5d4401bd445cd50c",
}
