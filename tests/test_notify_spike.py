"""The spike rule on hand-checked series (telemetry/notify/spike.py, docs/notify.md "Spike alert").

The rule's defaults: trailing 28 days, at least 10 deactivations, above
max(2 x mean, mean + 3 x stdev), drivers named at 25 % of the rise.
"""

from datetime import UTC, date, datetime, timedelta

import pytest

from telemetry.common import config
from telemetry.notify import events, spike

RULE = spike.SpikeRule.from_env({})
DAY = date(2026, 11, 20)


def flat(total: int, version: str = "3.1.0", reasons: dict[str, int] | None = None) -> spike.DayCounts:
    reasons = reasons if reasons is not None else {"other": total}
    assert sum(reasons.values()) == total
    return spike.DayCounts({version: total} if total else {}, {r: n for r, n in reasons.items() if n})


def test_the_defaults_are_the_documented_rule():
    assert RULE == spike.SpikeRule(trailing_days=28, min_deactivations=10, ratio=2.0, stdevs=3.0, driver_share=0.25)


def test_a_flat_series_never_alerts():
    trailing = [flat(5)] * 28
    assert spike.detect(RULE, DAY, flat(5), trailing) is None
    # Twice the mean is the bar when the series does not vary: 10 is not above it, 11 is.
    assert spike.detect(RULE, DAY, flat(10), trailing) is None
    found = spike.detect(RULE, DAY, flat(11), trailing)
    assert found is not None
    assert (found.deactivations, found.trailing_mean, found.trailing_stdev, found.threshold) == (11, 5.0, 0.0, 10.0)


def test_a_noisy_series_raises_the_bar_to_mean_plus_three_stdevs():
    # 3, 7, 3, 7, ...: mean 5, population stdev 2; the bar is max(10, 5 + 6) = 11.
    trailing = [flat(3 if n % 2 else 7) for n in range(28)]
    assert spike.detect(RULE, DAY, flat(11), trailing) is None
    found = spike.detect(RULE, DAY, flat(12), trailing)
    assert found is not None and found.threshold == pytest.approx(11.0)


def test_small_counts_never_alert():
    quiet = [flat(0)] * 27 + [flat(1)]
    # 9 is 252 times the trailing mean (1/28), but under the minimum of 10.
    assert spike.detect(RULE, DAY, flat(9), quiet) is None
    assert spike.detect(RULE, DAY, flat(10), quiet) is not None
    assert spike.detect(RULE, DAY, flat(0), [flat(0)] * 28) is None


def test_a_spike_names_the_version_and_the_reasons_that_drive_it():
    # Before: 4 a day, all on 3.1.0, 2 found-better-plugin and 2 other.
    before = spike.DayCounts({"3.1.0": 4}, {"found-better-plugin": 2, "other": 2})
    # The day: 3.1.0 as usual, and 14 on the new 3.2.0, 13 of them is-not-working, 1 other.
    day = spike.DayCounts({"3.1.0": 4, "3.2.0": 14}, {"found-better-plugin": 2, "other": 3, "is-not-working": 13})
    found = spike.detect(RULE, DAY, day, [before] * 28)
    assert found is not None
    # Total 18, mean 4: the rise is 14. 3.2.0's excess is 14 (all of it), 3.1.0's 0.
    assert [(d.label, d.count, d.trailing_mean, d.excess) for d in found.versions] == [("3.2.0", 14, 0.0, 14.0)]
    # is-not-working: 13 over a mean of 0; other: 3 - 2 = 1, under 25 % of 14 (3.5).
    assert [(d.label, d.excess) for d in found.reasons] == [("is-not-working", 13.0)]


def test_two_versions_that_share_the_rise_are_both_named_largest_first():
    before = spike.DayCounts({"1.0": 2, "2.0": 2}, {"other": 4})
    # Rise 20 (24 - 4): 2.0 adds 12 (60 %), 1.0 adds 7 (35 %), 3.0 adds 1 (5 %, not named).
    day = spike.DayCounts({"1.0": 9, "2.0": 14, "3.0": 1}, {"other": 4, "too-expensive": 20})
    found = spike.detect(RULE, DAY, day, [before] * 28)
    assert [(d.label, d.excess) for d in found.versions] == [("2.0", 12.0), ("1.0", 7.0)]
    assert [d.label for d in found.reasons] == ["too-expensive"]


def test_when_no_label_reaches_the_share_the_largest_excess_is_named():
    before = spike.DayCounts({"1.0": 1}, {"other": 1})
    day = spike.DayCounts({f"1.{n}": 2 for n in range(1, 7)}, {"other": 12})  # six versions of 2 each
    found = spike.detect(RULE, DAY, day, [before] * 28)
    # Rise 11; each version adds 2 (18 %): none reaches 25 %, the first by excess then name is named.
    assert [(d.label, d.excess) for d in found.versions] == [("1.1", 2.0)]


def test_the_trailing_window_must_hold_the_rules_days():
    with pytest.raises(ValueError, match="27 days"):
        spike.detect(RULE, DAY, flat(5), [flat(5)] * 27)


def test_spikes_reads_missing_days_as_none_and_only_the_days_asked():
    history = {DAY - timedelta(days=n): flat(2) for n in range(1, 29)}
    history[DAY] = flat(30)
    # The next day's window holds DAY's 30: mean 3, stdev 5.196, bar 18.6; 30 is still above it.
    history[DAY + timedelta(days=1)] = flat(30)
    assert [s.day for s in spike.spikes(RULE, [DAY], history)] == [DAY]
    assert [s.day for s in spike.spikes(RULE, [DAY, DAY + timedelta(days=1)], history)] == [
        DAY,
        DAY + timedelta(days=1),
    ]
    assert spike.spikes(RULE, [DAY - timedelta(days=3)], history) == []


def test_day_counts_groups_the_querys_rows_by_project_and_day():
    rows = [
        {"hash": "p", "day": DAY, "dimension": "version", "label": "1.0", "deactivations": 3},
        {"hash": "p", "day": DAY, "dimension": "reason", "label": "other", "deactivations": 3},
        {"hash": "q", "day": DAY, "dimension": "version", "label": "unknown", "deactivations": 1},
        {"hash": "q", "day": DAY, "dimension": "reason", "label": "unknown", "deactivations": 1},
    ]
    counts = spike.day_counts(rows)
    assert counts["p"][DAY] == spike.DayCounts({"1.0": 3}, {"other": 3})
    assert counts["q"][DAY].total == 1
    with pytest.raises(ValueError, match="dimension"):
        spike.day_counts([{**rows[0], "dimension": "country"}])


def test_the_event_has_a_stable_id_per_project_and_day_and_names_the_reasons_by_label():
    before = spike.DayCounts({"3.1.0": 1}, {"other": 1})
    found = spike.detect(RULE, DAY, spike.DayCounts({"3.2.0": 12}, {"too-expensive": 12}), [before] * 28)
    event = spike.spike_event("p1", found, {"too-expensive": "It is too expensive"})
    assert (
        event.id
        == spike.spike_event("p1", found, {}).id
        == events.event_id(events.DEACTIVATION_SPIKE, "p1", "2026-11-20")
    )
    assert event.id != spike.spike_event("p2", found, {}).id
    assert event.type == events.DEACTIVATION_SPIKE
    assert event.occurred_at == datetime(2026, 11, 21, tzinfo=UTC)
    assert event.data["versions"] == [{"version": "3.2.0", "deactivations": 12, "trailing_mean": 0.0, "excess": 12.0}]
    assert event.data["reasons"][0]["label"] == "It is too expensive"
    assert event.data["deactivations"] == 12 and event.data["threshold"] == 2.0


def test_the_settings_refuse_what_the_rule_cannot_use():
    with pytest.raises(ValueError, match="NOTIFY_SPIKE_RATIO"):
        spike.SpikeRule.from_env({"NOTIFY_SPIKE_RATIO": "0.5"})
    with pytest.raises(ValueError, match="NOTIFY_SPIKE_DRIVER_SHARE"):
        spike.SpikeRule.from_env({"NOTIFY_SPIKE_DRIVER_SHARE": "0"})
    with pytest.raises(ValueError, match="NOTIFY_SPIKE_STDEVS"):
        spike.SpikeRule.from_env({"NOTIFY_SPIKE_STDEVS": "nan"})
    with pytest.raises(ValueError, match="NOTIFY_SPIKE_TRAILING_DAYS"):
        spike.SpikeRule.from_env({"NOTIFY_SPIKE_TRAILING_DAYS": "1"})
    assert config.get_float("NOTIFY_SPIKE_RATIO", {"NOTIFY_SPIKE_RATIO": "2.5"}) == 2.5


def test_recent_days_end_on_the_last_final_day():
    assert spike.recent_days(DAY, {}) == [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    assert spike.recent_days(DAY, {"NOTIFY_RECENT_DAYS": "1"}) == [DAY]
