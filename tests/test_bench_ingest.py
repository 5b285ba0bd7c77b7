"""The ingest benchmark's paired estimate of the CPU ratio (scripts/bench_ingest.py, `make bench-ingest`)."""

from __future__ import annotations

import pytest

from scripts import bench_ingest


@pytest.fixture(scope="module")
def bench():
    """The script as a module (scripts/ is importable from the repository root, as tests/ is)."""
    return bench_ingest


def test_each_round_is_the_ratio_of_its_own_pair_and_the_figure_their_median(bench):
    # The floor's CPU swings from round to round (the machine), the endpoint's with it.
    endpoint = [1.2, 2.4, 1.32, 0.65, 1.26]
    floor = [1.0, 2.0, 1.0, 0.5, 1.0]
    paired = bench.paired_ratios(endpoint, floor)
    assert paired.ratios == pytest.approx((1.2, 1.2, 1.32, 1.3, 1.26))
    assert paired.median == pytest.approx(1.26)
    assert (paired.lowest, paired.highest) == pytest.approx((1.2, 1.32))
    assert (paired.lower_quartile, paired.upper_quartile) == pytest.approx((1.2, 1.3))
    # Best run against best run would pair the endpoint's quiet round with the floor's.
    assert min(endpoint) / min(floor) == pytest.approx(1.3)


def test_one_noisy_round_in_either_direction_does_not_move_the_median_much(bench):
    floor = [1.0] * 8
    steady = bench.paired_ratios([1.2] * 8, floor)
    noisy = bench.paired_ratios([1.2] * 6 + [1.9, 0.7], floor)
    assert steady.median == noisy.median == pytest.approx(1.2)
    assert (noisy.lowest, noisy.highest) == pytest.approx((0.7, 1.9))


def test_one_round_and_mismatched_runs(bench):
    one = bench.paired_ratios([1.5], [1.0])
    assert (one.median, one.lowest, one.lower_quartile, one.upper_quartile, one.highest) == (1.5,) * 5
    with pytest.raises(ValueError):
        bench.paired_ratios([1.0, 1.1], [1.0])
    with pytest.raises(ValueError):
        bench.paired_ratios([], [])
