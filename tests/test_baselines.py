"""What analysts do today: each baseline on hand-made tables with known answers; pooling against metafor."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

import estimates as est
from estimates.baselines import (
    BASELINE_COLUMNS,
    BASELINES,
    dersimonian_laird,
    envelope,
    inverse_variance,
    midpoint,
    pool_dersimonian_laird,
    pool_fixed,
)
from estimates.datasets import load_counts
from estimates.errors import OptionError
from estimates.interpret import Interpretation, roundness_sd

Z90 = stats.norm.ppf(0.95)
# the UN and US readings of ISIS fighters in Iraq and Syria (the article example)
UN = {"region": "Iraq and Syria", "low": 6000, "high": 8000, "source": "UN"}
US = {"region": "Iraq and Syria", "low": 8000, "high": 16000, "source": "US"}


def one(table: pd.DataFrame) -> pd.Series:
    """The single row of a baseline's table."""
    assert len(table) == 1, table
    return table.iloc[0]


def range_shape(low: float, high: float, coverage: float = 0.9) -> tuple[float, float]:
    """Hand formula: a range's centre and variance on the log scale (its spread is the half-width over z)."""
    z = stats.norm.ppf(0.5 + coverage / 2)
    return 0.5 * (math.log(low) + math.log(high)), ((math.log(high) - math.log(low)) / (2 * z)) ** 2


def hand_fixed(y, v):
    w = 1 / np.asarray(v)
    return float(np.sum(w * y) / w.sum()), float(1 / math.sqrt(w.sum()))


# ----------------------------------------------------------------------------- midpoint


def test_midpoint_of_the_two_fighter_ranges():
    row = one(midpoint([UN, US]))
    assert (row["quantity"], row["region"], row["time"]) == ("count", "Iraq and Syria", None)
    assert (row["median"], row["lower"], row["upper"], row["n_claims"]) == (9500, 7000, 12000, 2)


@pytest.mark.parametrize(
    "claim,mid",
    [
        ({"low": 6000, "high": 8000}, 7000),
        ({"low": 10_000, "high": 20_000, "value": 15_000}, 15_000),  # low-best-high: the best value
        ({"claim": "about 7,000"}, 7000),
        ({"value": 54, "kind": "exact"}, 54),
        ({"claim": "more than 4,000"}, 4000),
        ({"claim": "up to 300"}, 300),
    ],
)
def test_midpoint_of_each_kind_and_a_single_claim_has_zero_width(claim, mid):
    row = one(midpoint([{"region": "A", **claim}]))
    assert row["median"] == row["lower"] == row["upper"] == mid
    assert row["n_claims"] == 1


def test_midpoint_mixes_bounds_and_points_arithmetically():
    claims = [{"region": "A", "low": 4000}, {"region": "A", "high": 10_000}, {"region": "A", "value": 7000}]
    row = one(midpoint(claims))
    assert row["median"] == pytest.approx(7000) and (row["lower"], row["upper"]) == (4000, 10_000)


# ----------------------------------------------------------------------------- envelope


def test_envelope_of_the_two_fighter_ranges():
    row = one(envelope([UN, US]))
    assert (row["lower"], row["upper"], row["n_claims"]) == (6000, 16_000, 2)
    assert row["median"] == pytest.approx(math.sqrt(6000 * 16_000))


@pytest.mark.parametrize(
    "claims,lower,upper",
    [
        ([{"low": 4000}], 4000, math.inf),  # at least, nothing above it
        ([{"low": 20_000}, {"low": 6000, "high": 8000}], 6000, math.inf),  # a bound above every high
        ([{"low": 5000}, {"low": 6000, "high": 8000}], 5000, 8000),  # a bound inside: capped by the high
        ([{"high": 3000}, {"low": 6000, "high": 8000}], 0, 8000),  # at most, below every low
        ([{"high": 7000}, {"low": 6000, "high": 8000}], 6000, 8000),
        ([{"high": 3000}], 0, 3000),
        ([{"value": 5000}, {"low": 6000, "high": 8000}], 5000, 8000),  # points count with their value
        ([{"value": 9000, "kind": "exact"}, {"low": 6000, "high": 8000}], 6000, 9000),
    ],
)
def test_envelope_bounds_and_points(claims, lower, upper):
    row = one(envelope([{"region": "A", **c} for c in claims]))
    assert (row["lower"], row["upper"], row["n_claims"]) == (lower, upper, len(claims))
    if 0 < lower and math.isfinite(upper):
        assert row["median"] == pytest.approx(math.sqrt(lower * upper))
    else:
        assert math.isnan(row["median"])


# ----------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("prob", [0.9, 0.5, 0.95])
def test_inverse_variance_equals_the_hand_formula(prob):
    y1, v1 = range_shape(6000, 8000)
    y2, v2 = range_shape(8000, 16_000)
    mu, se = hand_fixed([y1, y2], [v1, v2])
    z = stats.norm.ppf(0.5 + prob / 2)
    row = one(inverse_variance([UN, US], prob=prob))
    assert row["median"] == pytest.approx(math.exp(mu), rel=1e-12)
    assert row["lower"] == pytest.approx(math.exp(mu - z * se), rel=1e-12)
    assert row["upper"] == pytest.approx(math.exp(mu + z * se), rel=1e-12)
    assert row["n_claims"] == 2


def test_inverse_variance_reads_points_with_their_spreads_and_coverage():
    """About X: the roundness spread; exact: exact_sd; a range's coverage sets its spread."""
    interp = Interpretation()
    claims = [
        {"region": "A", "claim": "about 7,000"},
        {"region": "A", "value": 6543, "kind": "exact"},
        {"region": "A", "low": 5000, "high": 9000, "coverage": 0.5},
    ]
    y = [math.log(7000), math.log(6543), range_shape(5000, 9000, 0.5)[0]]
    v = [roundness_sd(7000, interp) ** 2, interp.exact_sd**2, range_shape(5000, 9000, 0.5)[1]]
    mu, _ = hand_fixed(y, v)
    assert one(inverse_variance(claims))["median"] == pytest.approx(math.exp(mu), rel=1e-12)
    # the default coverage of a range without one comes from the interpretation
    wide = one(inverse_variance([UN], interpretation={"coverage": 0.5}))
    assert wide["upper"] / wide["lower"] > 8000 / 6000


def test_dersimonian_laird_equals_the_hand_formula_with_heterogeneity():
    (y1, v1), (y2, v2) = range_shape(6000, 8000), range_shape(8000, 16_000)
    y, v = np.array([y1, y2]), np.array([v1, v2])
    w = 1 / v
    mu_f = np.sum(w * y) / w.sum()
    q = np.sum(w * (y - mu_f) ** 2)
    tau2 = (q - 1) / (w.sum() - np.sum(w**2) / w.sum())
    assert tau2 > 0  # the two readings disagree beyond their stated spreads
    ws = 1 / (v + tau2)
    mu, se = np.sum(ws * y) / ws.sum(), 1 / math.sqrt(ws.sum())
    assert pool_dersimonian_laird(y, v) == pytest.approx((mu, se, tau2), rel=1e-12)
    row = one(dersimonian_laird([UN, US]))
    assert row["median"] == pytest.approx(math.exp(mu), rel=1e-12)
    assert (row["lower"], row["upper"]) == pytest.approx((math.exp(mu - Z90 * se), math.exp(mu + Z90 * se)))
    fixed = one(inverse_variance([UN, US]))
    assert row["lower"] < fixed["lower"] and row["upper"] > fixed["upper"]


def test_dersimonian_laird_without_heterogeneity_is_the_fixed_effect():
    """Q below its degrees of freedom: tau^2 is 0, not negative, and DL equals inverse variance."""
    y, v = [0.0, 0.1, -0.1], [1.0, 1.0, 1.0]
    mu, se, tau2 = pool_dersimonian_laird(y, v)
    assert tau2 == 0.0 and (mu, se) == pytest.approx(pool_fixed(y, v))
    claims = [{"region": "A", "low": 90, "high": 110}, {"region": "A", "low": 92, "high": 112}]
    pd.testing.assert_frame_equal(dersimonian_laird(claims), inverse_variance(claims))


def test_one_claim_pools_to_its_own_interval():
    """k = 1: tau^2 = 0, and a 90% range pooled at prob=0.9 gives the range back."""
    assert pool_dersimonian_laird([1.5], [0.04]) == pytest.approx((1.5, 0.2, 0.0))
    for f in (inverse_variance, dersimonian_laird):
        row = one(f([UN], prob=0.9))
        assert (row["lower"], row["upper"], row["n_claims"]) == pytest.approx((6000, 8000, 1))
        assert row["median"] == pytest.approx(math.sqrt(6000 * 8000))


def test_pooling_leaves_out_bounds_and_cells_with_only_bounds():
    claims = [UN, {"region": "Iraq and Syria", "low": 4000}, {"region": "Afghanistan", "low": 4000}]
    for f in (inverse_variance, dersimonian_laird):
        out = f(claims)
        assert list(out["region"]) == ["Iraq and Syria"] and list(out["n_claims"]) == [1]
        assert one(out)["upper"] == pytest.approx(8000)
    # midpoint and envelope use the bounds
    assert list(midpoint(claims)["n_claims"]) == list(envelope(claims)["n_claims"]) == [2, 1]


def test_no_usable_claim_gives_an_empty_table_with_the_columns():
    out = dersimonian_laird([{"region": "A", "low": 4000}])
    assert list(out.columns) == BASELINE_COLUMNS and len(out) == 0


@pytest.mark.parametrize(
    "y,v,match",
    [([], [], "empty"), ([1.0, 2.0], [1.0], "one variance"), ([1.0], [0.0], "positive"), ([math.nan], [1.0], "finite")],
)
def test_pooling_rejects_bad_inputs(y, v, match):
    for pool in (pool_fixed, pool_dersimonian_laird):
        with pytest.raises(ValueError, match=match):
            pool(y, v)


# ----------------------------------------------------------------------------- cells, relative claims, the input


TIMED = [
    {"region": "Afghanistan", "quantity": "fighters", "time": "2021-08", "value": 2000},
    {"region": "Afghanistan", "quantity": "fighters", "time": "2022-02", "low": 4000, "high": 6000},
    # relative: N(2022-02) / N(2021-08) more than 2 -- excluded from every baseline
    {"region": "Afghanistan", "quantity": "fighters", "time": "2022-02", "since": "2021-08", "low": 2},
    {"region": "Afghanistan", "quantity": "fighters", "time": "2022-02", "value": 5000},
    {"region": "Syria", "quantity": "fighters", "time": "2022-02", "since": "2021-08", "high": 0.5},
    {"region": "Syria", "quantity": "attacks", "time": "2022", "value": 54, "kind": "exact"},
]


@pytest.mark.parametrize("name", list(BASELINES))
def test_relative_claims_are_excluded_and_cells_are_separate(name):
    out = BASELINES[name](TIMED, prob=0.9)
    assert list(out.columns) == BASELINE_COLUMNS
    # Syria's fighters have only a relative claim: no row
    assert list(zip(out["quantity"], out["region"], out["time"], out["n_claims"], strict=True)) == [
        ("fighters", "Afghanistan", "2021-08", 1),
        ("fighters", "Afghanistan", "2022-02", 2),
        ("attacks", "Syria", "2022", 1),
    ]
    assert out["n_claims"].dtype.kind == "i"
    assert (out["lower"] <= out["median"]).all() and (out["median"] <= out["upper"]).all()


def test_aggregates_are_their_own_cells_not_sums():
    claims = [
        {"region": "Iraq", "value": 3000},
        {"region": "Syria", "value": 4000},
        {"region": "Iraq and Syria", "low": 6000, "high": 8000},
    ]
    out = midpoint(claims, hierarchy={"Iraq and Syria": ["Iraq", "Syria"]})
    assert dict(zip(out["region"], out["median"], strict=True)) == {"Iraq": 3000, "Syria": 4000, "Iraq and Syria": 7000}


@pytest.mark.parametrize("name", list(BASELINES))
def test_the_callers_table_is_not_modified(name):
    claims = pd.DataFrame(TIMED)
    claims.attrs["hierarchy"] = {}
    before = claims.copy(deep=True)
    BASELINES[name](claims)
    pd.testing.assert_frame_equal(claims, before)
    assert claims.attrs == {"hierarchy": {}}


@pytest.mark.parametrize("name", list(BASELINES))
@pytest.mark.parametrize("prob", [0, 1, 1.5, "0.9", True])
def test_prob_is_checked(name, prob):
    with pytest.raises(OptionError, match="prob"):
        BASELINES[name]([UN], prob=prob)


def test_baselines_read_the_claims_like_reconcile():
    """Bad rows raise the library's named errors; the example's article claims all read."""
    with pytest.raises(est.InvalidRangeError):
        midpoint([{"region": "A", "low": 8000, "high": 6000}])
    out = midpoint(est.load_example("isis-2022"))
    assert ("fighters", "Iraq and Syria", "2022-02") in set(
        zip(out["quantity"], out["region"], out["time"], strict=True)
    )
    row = out[(out["region"] == "Iraq and Syria") & (out["time"] == "2022-02")].iloc[0]
    assert (row["median"], row["lower"], row["upper"]) == (9500, 7000, 12_000)


# ----------------------------------------------------------------------------- the BCG trials against metafor


def bcg_yi_vi() -> tuple[np.ndarray, np.ndarray]:
    """Log risk ratios and their variances, as metafor's ``escalc(measure="RR")``."""
    c = load_counts("bcg-trials")
    tpos, tneg, cpos, cneg = (c[k].to_numpy(float) for k in ("tpos", "tneg", "cpos", "cneg"))
    yi = np.log(tpos / (tpos + tneg)) - np.log(cpos / (cpos + cneg))
    vi = 1 / tpos - 1 / (tpos + tneg) + 1 / cpos - 1 / (cpos + cneg)
    return yi, vi


def reml(yi: np.ndarray, vi: np.ndarray) -> tuple[float, float, float]:
    """REML random-effects fit: tau^2 maximises the restricted likelihood; mu, se given tau^2."""

    def minus_restricted_loglik(tau2: float) -> float:
        w = 1 / (vi + tau2)
        mu = np.sum(w * yi) / w.sum()
        return 0.5 * (np.sum(np.log(vi + tau2)) + math.log(w.sum()) + np.sum(w * (yi - mu) ** 2))

    tau2 = optimize.minimize_scalar(
        minus_restricted_loglik, bounds=(0, 10), method="bounded", options={"xatol": 1e-10}
    ).x
    w = 1 / (vi + tau2)
    return float(np.sum(w * yi) / w.sum()), float(1 / math.sqrt(w.sum())), float(tau2)


def test_bcg_pooling_matches_metafor():
    """Viechtbauer (2010), metafor: FE -0.4303 (se 0.0405); DL -0.7141, tau^2 0.3088; REML -0.7145 (0.1798), 0.3132."""
    yi, vi = bcg_yi_vi()
    assert pool_fixed(yi, vi) == pytest.approx((-0.4303, 0.0405), abs=5e-5)
    mu, _, tau2 = pool_dersimonian_laird(yi, vi)
    assert (mu, tau2) == pytest.approx((-0.7141, 0.3088), abs=5e-4)
    assert reml(yi, vi) == pytest.approx((-0.7145, 0.1798, 0.3132), abs=5e-4)


def test_bcg_baselines_on_the_example_claims():
    """The trials' 95% intervals read back as their log risk ratios and variances (1.96 vs the exact quantile)."""
    claims = est.load_example("bcg-trials")
    yi, vi = bcg_yi_vi()
    dl = one(dersimonian_laird(claims, prob=0.95))
    iv = one(inverse_variance(claims, prob=0.95))
    assert (dl["quantity"], dl["region"], dl["n_claims"]) == ("risk ratio", "BCG vaccine", 13)
    assert math.log(dl["median"]) == pytest.approx(pool_dersimonian_laird(yi, vi)[0], abs=1e-4)
    assert math.log(iv["median"]) == pytest.approx(pool_fixed(yi, vi)[0], abs=1e-4)
    mu, se, _ = pool_dersimonian_laird(yi, vi)
    z = stats.norm.ppf(0.975)
    assert (math.log(dl["lower"]), math.log(dl["upper"])) == pytest.approx((mu - z * se, mu + z * se), abs=1e-4)
