"""The digest's periods, figures and email, and figures.ready's due days (telemetry/notify/digest.py,
figures_ready.py), on hand-checked dates and serving documents."""

from datetime import UTC, date, datetime

import pytest

from telemetry.notify import digest, events, figures_ready
from telemetry.notify.digest import DAILY, MONTHLY, WEEKLY, Period

# 2026-11-30 is a Monday (ISO week 49 of 2026); 2026-12-06 the Sunday after.
MONDAY = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("frequency", "day", "start", "end"),
    [
        (DAILY, date(2026, 12, 1), date(2026, 12, 1), date(2026, 12, 1)),
        (WEEKLY, date(2026, 12, 1), MONDAY, date(2026, 12, 6)),
        (WEEKLY, MONDAY, MONDAY, date(2026, 12, 6)),
        (WEEKLY, date(2026, 12, 6), MONDAY, date(2026, 12, 6)),
        (WEEKLY, date(2027, 1, 1), date(2026, 12, 28), date(2027, 1, 3)),  # ISO week 53 spans the new year
        (MONTHLY, date(2026, 12, 31), date(2026, 12, 1), date(2026, 12, 31)),
        (MONTHLY, date(2028, 2, 10), date(2028, 2, 1), date(2028, 2, 29)),  # a leap year
    ],
)
def test_a_day_falls_in_one_period_of_each_frequency(frequency, day, start, end):
    period = digest.period_of(frequency, day)
    assert (period.start, period.end) == (start, end)
    assert period.days()[0] == start and period.days()[-1] == end
    assert period.following().start == end.fromordinal(end.toordinal() + 1)
    assert period.following().previous() == period


def test_periods_are_labelled_as_a_reader_names_them():
    assert digest.period_of(WEEKLY, MONDAY).label() == "week 49 of 2026 (30 Nov 2026 - 6 Dec 2026)"
    assert digest.period_of(MONTHLY, MONDAY).label() == "November 2026"
    assert digest.period_of(DAILY, MONDAY).label() == "30 Nov 2026"


def test_a_period_refuses_an_unknown_frequency_and_a_start_that_starts_none():
    with pytest.raises(ValueError, match="frequency"):
        Period("hourly", MONDAY)
    with pytest.raises(ValueError, match="does not start"):
        Period(WEEKLY, date(2026, 12, 1))
    with pytest.raises(ValueError, match="does not start"):
        Period(MONTHLY, date(2026, 12, 2))


def test_a_period_is_complete_once_its_last_day_is_final():
    # Final through Saturday 5 Dec: week 49 is not complete, week 48 is; Sunday completes week 49.
    assert digest.latest_complete(WEEKLY, date(2026, 12, 5)).start == date(2026, 11, 23)
    assert digest.latest_complete(WEEKLY, date(2026, 12, 6)).start == MONDAY
    assert digest.latest_complete(MONTHLY, date(2026, 11, 29)).start == date(2026, 10, 1)
    assert digest.latest_complete(MONTHLY, date(2026, 11, 30)).start == date(2026, 11, 1)
    assert digest.latest_complete(DAILY, MONDAY).start == MONDAY


def test_due_periods_skip_none_and_repeat_none():
    week = lambda start: Period(WEEKLY, start)  # noqa: E731
    final = date(2026, 12, 6)  # completes week 49 (30 Nov)
    # Nothing sent yet: only the latest complete week (no back catalogue).
    assert digest.due_periods(WEEKLY, final, None, 35) == [week(MONDAY)]
    # Week 47 (16 Nov) was the last sent: weeks 48 and 49 are both due, oldest first.
    assert digest.due_periods(WEEKLY, final, week(date(2026, 11, 16)), 35) == [
        week(date(2026, 11, 23)),
        week(MONDAY),
    ]
    # Sent already: nothing; the next day (week 50 not complete) still nothing.
    assert digest.due_periods(WEEKLY, final, week(MONDAY), 35) == []
    assert digest.due_periods(WEEKLY, date(2026, 12, 7), week(MONDAY), 35) == []
    # A week that ended more than the catch-up days before the last final day is not sent late:
    # week 48 ended on 29 Nov, 7 days before 6 Dec.
    assert digest.due_periods(WEEKLY, final, week(date(2026, 11, 16)), 7) == [week(date(2026, 11, 23)), week(MONDAY)]
    assert digest.due_periods(WEEKLY, final, week(date(2026, 11, 16)), 6) == [week(MONDAY)]
    with pytest.raises(ValueError, match="monthly"):
        digest.due_periods(WEEKLY, final, Period(MONTHLY, date(2026, 11, 1)), 35)


def test_candidate_periods_reach_back_the_catch_up_days_only():
    starts = [p.start for p in digest.candidate_periods(WEEKLY, date(2026, 12, 6), 13)]
    assert starts == [MONDAY, date(2026, 11, 23)]  # week 47 ended on 22 Nov, 14 days before
    assert len(digest.candidate_periods(WEEKLY, date(2026, 12, 6), 14)) == 3
    # November ended 6 days before 6 Dec: a candidate with 7 days, none with 3.
    assert [p.start for p in digest.candidate_periods(MONTHLY, date(2026, 12, 6), 7)] == [date(2026, 11, 1)]
    assert digest.candidate_periods(MONTHLY, date(2026, 12, 6), 3) == []
    assert len(digest.candidate_periods(DAILY, date(2026, 12, 6), 7)) == 8


def test_the_last_period_sent_is_looked_up_beyond_the_catch_up_days():
    # Week 47 sent when 28 Nov was final; then 6 Dec is: weeks 48 and 49 are due, not 49 alone.
    probed = digest.candidate_periods(WEEKLY, date(2026, 12, 6), figures_ready.lookup_days())
    assert [p.start for p in probed] == [MONDAY, date(2026, 11, 23), date(2026, 11, 16), date(2026, 11, 9)]
    week47 = probed[2]
    assert [p.start for p in digest.due_periods(WEEKLY, date(2026, 12, 6), week47, 7)] == [date(2026, 11, 23), MONDAY]


def test_a_period_past_the_catch_up_days_is_not_sent_even_when_nothing_was():
    # A monthly digest turned on on 20 Dec: November ended 19 days before; December comes in January.
    assert digest.due_periods(MONTHLY, date(2026, 12, 19), None, 7) == []
    assert digest.due_periods(MONTHLY, date(2027, 1, 1), None, 7) == [Period(MONTHLY, date(2026, 12, 1))]


def test_the_catch_up_days_stay_inside_the_outboxs_retention():
    assert figures_ready.catch_up_days({}) == 7
    assert figures_ready.catch_up_days({"NOTIFY_DIGEST_CATCH_UP_DAYS": "27"}) == 27
    with pytest.raises(ValueError, match="at most 27"):
        figures_ready.catch_up_days({"NOTIFY_DIGEST_CATCH_UP_DAYS": "28"})


def doc(day: str, metric: str, value=None, breakdown=None) -> dict:
    d = {"hash": "p1", "metric": metric, "day": day}
    return {**d, "breakdown": breakdown} if breakdown is not None else {**d, "value": value}


# Two weeks of serving documents, worked out by hand below.
DOCUMENTS = [
    # week 48 (23-29 Nov): 100 active at its end; 7 new, 3 deactivations
    doc("2026-11-23", "new_sites", 4),
    doc("2026-11-25", "new_sites", 3),
    doc("2026-11-24", "deactivations", 3),
    doc("2026-11-24", "deactivation_reasons", breakdown={"other": 2, "too-expensive": 1}),
    doc("2026-11-28", "active_sites", 97),
    doc("2026-11-29", "active_sites", 100),
    doc("2026-11-29", "project_version", breakdown={"3.1.0": 100}),
    # week 49 (30 Nov - 6 Dec): 110 active at its end; 15 new, 5 deactivations
    doc("2026-11-30", "new_sites", 10),
    doc("2026-12-06", "new_sites", 5),
    doc("2026-12-01", "deactivations", 2),
    doc("2026-12-03", "deactivations", 3),
    doc("2026-12-01", "deactivation_reasons", breakdown={"too-expensive": 2}),
    doc("2026-12-03", "deactivation_reasons", breakdown={"too-expensive": 1, "is-not-working": 2}),
    doc("2026-12-05", "active_sites", 120),  # not the last day: not the period's figure
    doc("2026-12-06", "active_sites", 110),
    doc("2026-12-05", "project_version", breakdown={"3.1.0": 120}),
    doc("2026-12-06", "project_version", breakdown={"3.2.0": 66, "3.1.0": 33, "unknown": 11}),
    doc("2026-12-07", "new_sites", 99),  # after the period
]


def test_period_figures_sum_the_days_and_read_the_last_day():
    week49 = digest.period_figures(Period(WEEKLY, MONDAY), DOCUMENTS)
    assert (week49.active_sites, week49.new_sites, week49.deactivations) == (110, 15, 5)
    assert week49.reasons == {"too-expensive": 3, "is-not-working": 2}
    assert week49.versions == {"3.2.0": 66, "3.1.0": 33, "unknown": 11}
    week48 = digest.period_figures(Period(WEEKLY, date(2026, 11, 23)), DOCUMENTS)
    assert (week48.active_sites, week48.new_sites, week48.deactivations) == (100, 7, 3)
    empty = digest.period_figures(Period(WEEKLY, date(2026, 11, 16)), DOCUMENTS)
    assert (empty.active_sites, empty.new_sites, empty.deactivations, empty.reasons) == (0, 0, 0, {})


def digest_of_week_49() -> events.Event:
    current = digest.period_figures(Period(WEEKLY, MONDAY), DOCUMENTS)
    previous = digest.period_figures(Period(WEEKLY, date(2026, 11, 23)), DOCUMENTS)
    return digest.digest_event("p1", current, previous, {"too-expensive": "It is too expensive"})


def test_the_digest_event_carries_the_figures_and_the_change():
    event = digest_of_week_49()
    assert event.id == digest.event_id("p1", Period(WEEKLY, MONDAY))
    assert event.id == events.event_id(events.DIGEST, "p1", "weekly", "2026-11-30")
    assert event.type == events.DIGEST and event.occurred_at == datetime(2026, 12, 7, tzinfo=UTC)
    data = event.data
    assert data["period"] == {
        "start": "2026-11-30",
        "end": "2026-12-06",
        "label": "week 49 of 2026 (30 Nov 2026 - 6 Dec 2026)",
    }
    assert (data["active_sites"], data["new_sites"], data["deactivations"]) == (110, 15, 5)
    assert data["change"] == {"active_sites": 10, "new_sites": 8, "deactivations": 2}
    assert data["previous"]["start"] == "2026-11-23"
    assert data["top_reasons"] == [
        {"reason": "too-expensive", "label": "It is too expensive", "deactivations": 3},
        {"reason": "is-not-working", "label": "is-not-working", "deactivations": 2},
    ]
    assert data["top_versions"] == [
        {"version": "3.2.0", "sites": 66, "share": 0.6},
        {"version": "3.1.0", "sites": 33, "share": 0.3},
        {"version": "unknown", "sites": 11, "share": 0.1},
    ]
    assert data["figures_path"] == "/v1/projects/p1/figures?from=2026-11-30&to=2026-12-06"


def test_the_digest_refuses_a_previous_period_that_is_not_the_one_before():
    current = digest.period_figures(Period(WEEKLY, MONDAY), DOCUMENTS)
    with pytest.raises(ValueError, match="not the period before"):
        digest.digest_event("p1", current, current, {})


def test_the_email_states_every_figure():
    mail = digest.render_email(digest_of_week_49(), {"hash": "p1", "name": "SEO <Toolkit>", "type": "plugin"})
    assert (
        mail.subject
        == "SEO <Toolkit>: weekly digest, week 49 of 2026 (30 Nov 2026 - 6 Dec 2026): 110 active sites (+10)"
    )
    for line in (
        "Active sites at the end: 110 (+10 against 100 the weekly period before)",
        "New sites: 15 (+8 against 7 the weekly period before)",
        "Deactivations: 5 (+2 against 3 the weekly period before)",
        "  It is too expensive: 3",
        "  3.2.0: 66 sites (60.0%)",
        "  unknown: 11 sites (10.0%)",
    ):
        assert line in mail.text.splitlines()
    assert "SEO &lt;Toolkit&gt;" in mail.html and "<Toolkit>" not in mail.html
    assert "60.0%" in mail.html and "It is too expensive: 3" in mail.html


def test_figures_ready_days_due_after_the_latest_sent_or_the_latest_alone():
    days = [date(2026, 11, d) for d in (20, 21, 23, 24)]
    assert figures_ready.due_days(days, []) == [date(2026, 11, 24)]
    assert figures_ready.due_days(days, [date(2026, 11, 20)]) == days[1:]
    assert figures_ready.due_days(days, days) == []
    assert figures_ready.due_days([], []) == []


def test_figures_ready_event_names_the_day_and_where_to_read_it():
    event = figures_ready.figures_ready_event("p1", date(2026, 11, 24))
    assert event.id == events.event_id(events.FIGURES_READY, "p1", "2026-11-24")
    assert event.type == events.FIGURES_READY and event.occurred_at == datetime(2026, 11, 25, tzinfo=UTC)
    assert event.data == {
        "project": "p1",
        "day": "2026-11-24",
        "figures_path": "/v1/projects/p1/figures?from=2026-11-24&to=2026-11-24",
    }


def test_a_first_period_is_compared_with_nothing_rather_than_with_zero():
    current = digest.period_figures(Period(WEEKLY, date(2026, 11, 23)), DOCUMENTS)
    nothing_served = digest.period_figures(Period(WEEKLY, date(2026, 11, 16)), DOCUMENTS)
    assert nothing_served.served_days == 0 and current.served_days > 0
    event = digest.digest_event("p1", current, nothing_served, {})
    assert event.data["previous"] is None and event.data["change"] is None
    mail = digest.render_email(event, {"hash": "p1", "name": "SEO Toolkit", "type": "plugin"})
    assert mail.subject == "SEO Toolkit: weekly digest, week 48 of 2026 (23 Nov 2026 - 29 Nov 2026): 100 active sites"
    assert "Active sites at the end: 100 (no figures of the weekly period before)" in mail.text
    assert "+100" not in mail.text and "+100" not in mail.html
