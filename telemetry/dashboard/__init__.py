"""The vendor's dashboard: the `telemetry-dashboard` function (functions/dashboard/main.py).

Reads MongoDB only (`projects`, `sites`, `deactivations`, the serving copy
`analytics`, and `api_keys`), through a read-only database user in production.

- `app.py`      the Flask app: blueprints and the JSON error envelope
- `api.py`      the JSON API under /v1 (Bearer keys, or the page's session)
- `pages.py`    the pages: sign-in, sign-out, a project's page (templates/, static/)
- `sessions.py` the page's sign-in sessions: signed cookies, CSRF tokens
- `vendor.py`   the vendored Vega libraries the page loads (static/vendor/)
- `keys.py`     API keys: made, hashed, checked, revoked
- `paging.py`   keyset pagination: limits and opaque cursors
- `queries.py`  the MongoDB queries and the indexes they use
- `csv_export.py` streamed CSV, safe to open in a spreadsheet
- `openapi.py`  the API's OpenAPI description, served at /v1/openapi.json
"""
