"""The one table of readings: shapes per kind, roundness spreads, options."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from estimates.errors import OptionError
from estimates.interpret import Interpretation, roundness_sd, roundness_unit, shape_of

NAN = float("nan")
DEFAULTS = Interpretation()


@pytest.mark.parametrize(
    "x,unit",
    [
        (10_000, 5000),
        (2_000, 1000),
        (1_900, 100),
        (54, 2),
        (7_000, 1000),
        (25_000, 5000),
        (2.84, 0.02),
        (2, 1),
        (150, 50),
    ],
)
def test_roundness_unit(x, unit):
    assert roundness_unit(x) == pytest.approx(unit)


def test_about_spread_follows_roundness_without_large_jumps():
    """Neighbouring numbers differ in spread only as much as their roundness does."""
    assert roundness_sd(2_000, DEFAULTS) > roundness_sd(1_900, DEFAULTS) >= DEFAULTS.about_floor_sd
    assert roundness_sd(10_000, DEFAULTS) == pytest.approx(roundness_sd(2_000, DEFAULTS))  # both: half-unit of 25%
    # 1,999 and 2,001 are precise numbers: the floor applies, no jump beyond roundness
    assert roundness_sd(1_999, DEFAULTS) == roundness_sd(2_001, DEFAULTS) == DEFAULTS.about_floor_sd
    # all spreads within [floor, a 25% half-unit at about_coverage]
    top = 0.5 * math.log(1.25 / 0.75) / stats.norm.ppf(0.5 + DEFAULTS.about_coverage / 2)
    for x in range(100, 20_000, 37):
        assert DEFAULTS.about_floor_sd <= roundness_sd(x, DEFAULTS) <= top + 1e-12


def test_range_is_central_interval_with_stated_coverage():
    shape, a, b, sd = shape_of("range", 6000, 8000, NAN, 0.9, DEFAULTS)
    assert shape == "normal" and a == b
    lo, hi = stats.norm.ppf([0.05, 0.95], loc=a, scale=sd)
    assert math.exp(lo) == pytest.approx(6000) and math.exp(hi) == pytest.approx(8000)
    _, _, _, sd95 = shape_of("range", 6000, 8000, NAN, 0.95, DEFAULTS)
    assert sd95 < sd  # the same range meant with more confidence is a tighter reading


def test_range_with_best_value_is_centred_on_it():
    _, a, _, _ = shape_of("range", 10_000, 20_000, 15_000, 0.9, DEFAULTS)
    assert a == pytest.approx(math.log(15_000))


@pytest.mark.parametrize("bounds", ["soft", "censored"])
def test_bounds(bounds):
    interp = Interpretation(bounds=bounds, bound_factor=2.0)
    lo = shape_of("at_least", 4000, NAN, NAN, 0.9, interp)
    hi = shape_of("at_most", NAN, 4000, NAN, 0.9, interp)
    if bounds == "soft":
        assert lo[0] == "box" and lo[1] == pytest.approx(math.log(4000)) and lo[2] == pytest.approx(math.log(8000))
        assert hi[0] == "box" and hi[1] == pytest.approx(math.log(2000)) and hi[2] == pytest.approx(math.log(4000))
    else:
        assert lo[0] == "lower" and lo[1] == pytest.approx(math.log(4000))
        assert hi[0] == "upper" and hi[2] == pytest.approx(math.log(4000))


def test_exact_is_tight_and_about_is_not():
    assert shape_of("exact", NAN, NAN, 54, 0.9, DEFAULTS)[3] == DEFAULTS.exact_sd
    assert shape_of("about", NAN, NAN, 54, 0.9, DEFAULTS)[3] == DEFAULTS.about_floor_sd > DEFAULTS.exact_sd


def test_unknown_interpretation_option_lists_valid_ones():
    with pytest.raises(OptionError, match="valid ones are: .*coverage"):
        Interpretation.from_options({"coverge": 0.8})


@pytest.mark.parametrize(
    "kw",
    [{"coverage": 1.0}, {"bound_factor": 1.0}, {"bounds": "hard"}, {"exact_sd": 0.0}, {"robust_weight": 0}],
)
def test_out_of_range_options_raise(kw):
    with pytest.raises(OptionError):
        Interpretation(**kw)


def test_overrides_reach_the_reading():
    interp = Interpretation.from_options({"coverage": 0.5})
    assert interp.coverage == 0.5
    assert (
        shape_of("range", 6000, 8000, NAN, interp.coverage, interp)[3]
        > shape_of("range", 6000, 8000, NAN, 0.9, DEFAULTS)[3]
    )


def test_default_probability_has_one_home():
    import inspect

    import estimates as est
    from estimates.interpret import DEFAULT_PROB

    assert inspect.signature(est.reconcile).parameters["prob"].default == DEFAULT_PROB == est.DEFAULT_PROB
