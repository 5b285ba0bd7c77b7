"""`make dashboard`: the demo's data on a local stack of its own, then the dashboard served until interrupted.

1. Fills the stack as `make demo` does (scripts/demo.py `fill`: the three
   projects, a month of pings, the pipelines, the analytics job).
2. Makes one API key per project with telemetry-admin's key functions
   (telemetry/dashboard/keys.py), and prints them.
3. Signs in to the first project's page in headless Chromium, checks that every
   chart is drawn with no error and no request leaving the origin, and saves
   out/dashboard.png.
4. Prints the dashboard's URL and waits; Ctrl-C stops it and the stack.

The keys are printed once and stored only as hashes; the stack is wiped at the
next `make dashboard`, and with it the keys.
"""

from __future__ import annotations

import signal
import sys
import time

import demo

from telemetry.common import config, mongo, progress
from telemetry.dashboard import keys
from telemetry.local import dashboard_browser, population


def main() -> int:
    progress.keep_lines()  # `make dashboard` quiets the logs (LOG_LEVEL=WARNING), not its progress
    base_url = config.require("DASHBOARD_URL").rstrip("/")
    db = mongo.database(config.require("MONGODB_URI"), config.require("MONGODB_DB"))
    demo.fill(db, config.require("INGEST_URL"))

    with demo.Step("an API key per project (telemetry-admin key create)"):
        made = [keys.create(db, project.hash, note="make dashboard") for project in population.PROJECTS]
        for project, new in zip(population.PROJECTS, made, strict=True):
            print(f"    {project.name}: key id {new.id}")

    with demo.Step("the dashboard in headless Chromium"):
        png = demo.OUT / "dashboard.png"
        print(f"    {dashboard_browser.screenshot(base_url, made[0].key, png)}")
        print(f"    {png}")

    print(f"\nThe dashboard: {base_url}/sign-in")
    for project, new in zip(population.PROJECTS, made, strict=True):
        print(f"  {project.name} ({project.hash}): sign in with")
        print(f"    {new.key}")
    print("Serving until interrupted (Ctrl-C).", flush=True)
    # Set here, not inherited: a shell that starts this in the background ignores SIGINT for it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopped")
    finally:
        db.client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
