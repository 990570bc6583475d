"""The vectorised R-hat and ESS of ``estimates._convergence`` against ArviZ's own, element by element.

ArviZ is the reference: every case compares with ``arviz.rhat`` (its default
rank method) and ``arviz.ess`` (bulk and mean) on the same draws, to a relative
tolerance of 1e-10, NaN where ArviZ gives NaN.  Each comparison runs twice,
with ArviZ's Numba variance (what the project gets: PyTensor installs Numba)
and with its NumPy one, which differ only in rounding.  No MCMC: the draws are
made up with fixed seeds.
"""

from __future__ import annotations

import logging
import warnings

import arviz as az
import numpy as np
import pytest
from arviz.utils import Numba

from estimates._convergence import ess_bulk, ess_mean, rhat

RTOL = 1e-10

OURS = {"rhat": rhat, "bulk": ess_bulk, "mean": ess_mean}


@pytest.fixture(params=["numba", "numpy"], autouse=True)
def arviz_variance(request, monkeypatch):
    """Run each test with ArviZ's Numba variance and with its NumPy one."""
    if request.param == "numba" and not Numba.numba_flag:
        pytest.skip("Numba is not installed")
    monkeypatch.setattr(Numba, "numba_flag", request.param == "numba")
    # ArviZ logs a warning for every NaN or too-short parameter; the NaNs are what is tested here
    monkeypatch.setattr(logging.getLogger("arviz"), "disabled", True)
    return request.param


def arviz_stat(x, name):
    """ArviZ's value for every parameter of ``x`` (chain, draw, *rest), through its Dataset interface."""
    x = np.asarray(x, dtype=float)
    data = az.convert_to_dataset({"x": x})
    with warnings.catch_warnings():
        # ArviZ divides 0 by 0 for a constant parameter (and so says)
        warnings.simplefilter("ignore", RuntimeWarning)
        if name == "rhat":
            out = az.rhat(data)
        else:
            out = az.ess(data, method=name)
    return out["x"].values


def assert_matches_arviz(x, names=OURS):
    for name in names:
        ours = np.asarray(OURS[name](x))
        theirs = arviz_stat(x, name)
        assert ours.shape == x.shape[2:], name
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=0, equal_nan=True, err_msg=name)


def ar1(rng, phi, shape, shift=None):
    """AR(1) chains along axis 1 with coefficient ``phi``, started from the stationary distribution."""
    phi = np.asarray(phi, dtype=float)
    noise = rng.normal(size=shape)
    x = np.empty(shape)
    x[:, 0] = noise[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    if shift is not None:
        x += np.asarray(shift, dtype=float).reshape((shape[0],) + (1,) * (len(shape) - 1))
    return x


def test_iid_normal():
    x = np.random.default_rng(1).normal(size=(4, 1000, 3))
    assert_matches_arviz(x)
    assert (rhat(x) < 1.01).all()


@pytest.mark.parametrize("phi", [0.9, 0.99])
def test_autocorrelated_chains_some_shifted(phi):
    rng = np.random.default_rng(2)
    # parameter 0 well mixed, parameters 1 and 2 with one and two chains stuck elsewhere
    x = ar1(rng, phi, (4, 1000, 3))
    x[:, :, 1] += np.array([0.0, 0.0, 0.0, 3.0])[:, None]
    x[:, :, 2] += np.array([-2.0, 0.0, 0.0, 2.0])[:, None]
    assert_matches_arviz(x)
    r = rhat(x)
    assert (r[1:] > 1.01).all()
    assert (ess_bulk(x) < 4000 / 5).all()


def test_antithetic_chains_have_ess_above_the_number_of_draws():
    rng = np.random.default_rng(3)
    x = ar1(rng, [-0.3, -0.7, -0.9], (4, 1000, 3))
    assert_matches_arviz(x)
    assert (ess_mean(x) > 4000).all()
    assert (ess_bulk(x) > 4000).all()


def test_constant_parameter():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 1000, 3))
    x[:, :, 1] = 2.5
    assert_matches_arviz(x)
    assert np.isnan(rhat(x)[1])
    # ArviZ gives an (almost) constant parameter an ESS of all the draws used
    assert ess_bulk(x)[1] == ess_mean(x)[1] == 4000


def test_parameter_constant_within_chains_but_not_between():
    # 300 draws: NumPy's variance of some of these constant half-chains is not exactly zero
    x = np.repeat(np.array([0.0, 1.0, 2.0, 3.0])[:, None, None], 300, axis=1)
    x = np.concatenate([x, np.random.default_rng(5).normal(size=(4, 300, 1))], axis=2)
    # the ESS is robust to rounding (it is dominated by the between-chain variance) and matches
    assert_matches_arviz(x, names=["bulk", "mean"])
    assert_matches_arviz(x[:, :, 1:], names=["rhat"])
    # R-hat: zero within-chain variance, so infinite here.  ArviZ's is rounding noise over a zero:
    # with these draws NaN with its Numba variance (a negative one-pass variance) and 6.5e15 with
    # NumPy's; with 100 draws 6.8e7 and 3.2e16.  Huge, infinite or NaN, but not reproducible.
    ours, theirs = rhat(x)[0], arviz_stat(x, "rhat")[0]
    assert ours == np.inf
    assert np.isnan(theirs) or theirs > 1e6


def test_heavy_tailed_draws():
    rng = np.random.default_rng(6)
    x = rng.standard_cauchy(size=(4, 1000, 3))
    x[3, :, 2] += 5.0
    assert_matches_arviz(x)


@pytest.mark.parametrize("shape", [(4, 1000), (4, 1000, 3), (2, 50, 2, 5)])
def test_shapes(shape):
    rng = np.random.default_rng(7)
    x = ar1(rng, 0.6, shape, shift=np.linspace(0.0, 0.5, shape[0]))
    assert_matches_arviz(x)
    for f in OURS.values():
        out = f(x)
        assert np.shape(out) == shape[2:]
    scalar = x.reshape(shape[0], shape[1], -1)[:, :, 0]
    assert all(isinstance(f(scalar), np.float64) for f in OURS.values())


def test_non_finite_draws():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 100, 6))
    x[1, 5, 0] = np.inf
    x[1, 5, 1], x[2, 7, 1] = np.inf, -np.inf
    x[:, :, 2] = np.inf
    x[0, 3, 3] = np.nan
    x[:, 50, 4] = np.nan
    # half the draws +inf and half -inf: the median is NaN, so is the folded R-hat, and the bulk one is kept
    x[:, :, 5] = rng.permutation(np.repeat([-np.inf, np.inf], 200)).reshape(4, 100)
    assert_matches_arviz(x)
    assert np.isnan(rhat(x)[3:5]).all()
    assert np.isfinite(rhat(x)[[0, 1, 5]]).all()
    assert np.isnan(ess_mean(x)).all()


def test_odd_number_of_draws_and_ties():
    rng = np.random.default_rng(9)
    x = np.round(ar1(rng, 0.8, (3, 1001, 4), shift=[0.0, 0.3, 0.0]))
    assert_matches_arviz(x)


@pytest.mark.parametrize("draws", [0, 3])
def test_too_few_draws_give_nan(draws):
    x = np.random.default_rng(10).normal(size=(4, draws, 2))
    for f in OURS.values():
        assert np.isnan(f(x)).all()


def test_one_chain():
    x = ar1(np.random.default_rng(11), 0.5, (1, 200, 2))
    assert_matches_arviz(x)
    assert np.isnan(rhat(x)).all()
    assert np.isfinite(ess_bulk(x)).all()


def test_short_chains_cover_the_truncation_rules():
    """Few draws (down to 4, the minimum) reach every branch of Geyer's truncation."""
    rng = np.random.default_rng(12)
    for _ in range(25):
        chains, draws = rng.integers(1, 5), rng.integers(4, 40)
        x = ar1(rng, rng.uniform(-0.95, 0.99, size=6), (chains, draws, 6), shift=rng.normal(size=chains))
        assert_matches_arviz(x)


@pytest.mark.parametrize(("shape", "phi"), [((4, 10, 200), 0.5), ((2, 14, 200), 0.0)])
def test_very_short_chains_stopped_by_the_lag_limit(shape, phi):
    """With 5 to 7 draws per half-chain the truncation often stops at its last allowed lag pair.

    Some of these parameters then end on a negative even-lag autocorrelation whose pair sum is
    still positive, which ArviZ keeps; this batch has several.
    """
    x = ar1(np.random.default_rng(13), phi, shape)
    assert_matches_arviz(x, names=["bulk", "mean"])


def test_rejects_draws_without_a_chain_axis():
    with pytest.raises(ValueError, match="chain, draw"):
        rhat(np.zeros(10))
