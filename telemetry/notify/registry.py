"""Every producer of events and every email renderer the notify run uses: adding one is one line.

PRODUCERS run in order at each run (telemetry/notify/run.py); RENDERERS name, per
event type, how its mail is written (an event type without a renderer is never
mailed, only posted to webhooks). The signatures are in telemetry/notify/contract.py.
"""

from __future__ import annotations

from telemetry.notify import emails, events, site_events
from telemetry.notify.contract import Producer, Renderer

PRODUCERS: dict[str, Producer] = {
    "site_events": site_events.collect,  # site.activated, site.deactivated
}

RENDERERS: dict[str, Renderer] = {
    events.SITE_DEACTIVATED: emails.render_deactivation,
}
