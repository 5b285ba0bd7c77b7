"""The demo's month (telemetry/local/population.py): seeded, and with a release that drives
deactivations, which the spike rule (telemetry/notify/spike.py) finds and names."""

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

from telemetry.local import population
from telemetry.notify import spike

END = datetime(2026, 12, 1, tzinfo=UTC)
SEED = 2026
SEO, FORMS, AURORA = population.PROJECTS
FAULTY = SEO.faulty_release


def deactivations(month: population.Month) -> list[population.Ping]:
    return [p for p in month.pings if p.route == "deactivate"]


def history(month: population.Month, project: population.DemoProject) -> dict[date, spike.DayCounts]:
    by_day: dict[date, tuple[Counter, Counter]] = defaultdict(lambda: (Counter(), Counter()))
    for ping in deactivations(month):
        if ping.body["hash"] == project.hash:
            versions, reasons = by_day[ping.received_at.date()]
            versions[ping.body["project_version"]] += 1
            reasons[ping.body["reason_id"]] += 1
    return {day: spike.DayCounts(dict(v), dict(r)) for day, (v, r) in by_day.items()}


def test_the_month_is_the_same_for_the_same_seed_and_end():
    first, second = population.month(SEED, END), population.month(SEED, END)
    assert [(p.id, p.route, p.received_at, p.body) for p in first.pings] == [
        (p.id, p.route, p.received_at, p.body) for p in second.pings
    ]
    assert len(first.pings) > 5000


def test_the_faulty_release_drives_the_months_deactivations_with_one_dominant_reason():
    month = population.month(SEED, END)
    released = month.start + timedelta(days=SEO.release_day(FAULTY.version))
    seo = [p for p in deactivations(month) if p.body["hash"] == SEO.hash]
    faulty = [p for p in seo if p.body["project_version"] == FAULTY.version]
    assert all(p.received_at > released for p in faulty)
    assert len(faulty) > 2 * (len(seo) - len(faulty))  # most of the project's deactivations
    reasons = Counter(p.body["reason_id"] for p in faulty)
    assert reasons.most_common(1)[0][0] == FAULTY.reasons[0][0] == "is-not-working"
    assert reasons["is-not-working"] > len(faulty) / 2
    # The other projects deactivate at the usual pace.
    for project in (FORMS, AURORA):
        assert max(c.total for c in history(month, project).values()) < 10


def test_the_spike_rule_alerts_on_the_release_and_names_it_and_only_there():
    month = population.month(SEED, END)
    rule = spike.SpikeRule.from_env({})
    days = [month.start.date() + timedelta(days=n) for n in range(population.HISTORY_DAYS)]
    released = month.start.date() + timedelta(days=SEO.release_day(FAULTY.version))
    found = spike.spikes(rule, days, history(month, SEO))
    assert found, "the faulty release should set off the spike alert"
    assert all(s.day >= released for s in found)
    assert found[0].day <= released + timedelta(days=2)
    for alert in found:
        assert alert.versions[0].label == FAULTY.version
        assert alert.reasons[0].label == "is-not-working"
    for project in (FORMS, AURORA):
        assert spike.spikes(rule, days, history(month, project)) == []
