"""The MongoDB `sites` and `deactivations` documents, as the pipelines write them and the
dashboard reads them: the collections' names, a site's status values, and the indexes
both sides name.

The pipelines (telemetry/pipelines/site_state.py) create every index here on each run;
the dashboard (telemetry/dashboard/queries.py) names them in its queries (`hint`), so a
name lives here once and a renamed index cannot leave a query behind.
"""

from __future__ import annotations

SITES = "sites"
DEACTIVATIONS = "deactivations"

# A site's `status`: its latest ping was a track ping, or a deactivation.
ACTIVE = "active"
DEACTIVATED = "deactivated"

# One document per (hash, url) in each collection; the exports walk it in url order.
UNIQUE_INDEX = "hash_url_unique"
UNIQUE_KEYS = [("hash", 1), ("url", 1)]

# The dashboard's lists: keyset pages in (time desc, url) order, unfiltered and by each
# filter that can bound the range.
SITES_BY_LAST_SEEN = "hash_last_seen_url"
SITES_BY_STATUS = "hash_status_last_seen_url"
SITES_BY_VERSION = "hash_version_last_seen_url"
DEACTIVATIONS_BY_TIME = "hash_received_at_url"
DEACTIVATIONS_BY_REASON = "hash_reason_received_at_url"
LIST_INDEXES = {
    SITES: {
        SITES_BY_LAST_SEEN: [("hash", 1), ("last_seen", -1), ("url", 1)],
        SITES_BY_STATUS: [("hash", 1), ("status", 1), ("last_seen", -1), ("url", 1)],
        SITES_BY_VERSION: [("hash", 1), ("project_version", 1), ("last_seen", -1), ("url", 1)],
    },
    DEACTIVATIONS: {
        DEACTIVATIONS_BY_TIME: [("hash", 1), ("received_at", -1), ("url", 1)],
        DEACTIVATIONS_BY_REASON: [("hash", 1), ("reason_id", 1), ("received_at", -1), ("url", 1)],
    },
}

# Sites of one project by the time of their first ping: notify's `site.activated` reads, per
# project and UTC day, the first sites in (first_seen, url) order up to its daily cap, and counts
# the rest (telemetry/notify/site_events.py, which creates it). `first_seen` only moves earlier
# (telemetry/pipelines/site_state.py).
SITES_BY_FIRST_SEEN = "hash_first_seen_url"
FIRST_SEEN_KEYS = [("hash", 1), ("first_seen", 1), ("url", 1)]
# Its predecessor over every project, (first_seen): dropped where found, since no query uses it.
FORMER_FIRST_SEEN_INDEX = "first_seen"
