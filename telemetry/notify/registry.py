"""Every producer of events and every email renderer the notify run uses: adding one is one line.

PRODUCERS run in order at each run (telemetry/notify/run.py); RENDERERS name, per
event type, how its mail is written (an event type without a renderer is never
mailed, only posted to webhooks). The signatures are in telemetry/notify/contract.py.
"""

from __future__ import annotations

from telemetry.notify import digest, emails, events, figures_ready, site_events, spike
from telemetry.notify.contract import Producer, Renderer

PRODUCERS: dict[str, Producer] = {
    "site_events": site_events.collect,  # site.activated, site.deactivated and their days' summaries
    "deactivation_spike": spike.collect,
    "figures_ready": figures_ready.collect,
    "digest": digest.collect,
}

RENDERERS: dict[str, Renderer] = {
    events.SITE_DEACTIVATED: emails.render_deactivation,
    events.SITE_DEACTIVATED_OVERFLOW: emails.render_deactivations_held_back,
    events.DEACTIVATION_SPIKE: spike.render_email,
    events.DIGEST: digest.render_email,
}
