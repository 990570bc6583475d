"""Leave-one-out tension and source influence.

Unit tests (no MCMC) check the pieces against exact answers: tail
probabilities against simulation, the numpy likelihood against scipy and the
compiled model, the integration over a lone source's bias and reliability
against brute-force Monte Carlo, PSIS against exact LOO in a conjugate
model. Slow tests fit planted worlds: a wild claim, a biased source.
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import special, stats

import estimates as est
from estimates.claims import normalise
from estimates.errors import OptionError
from estimates.interpret import Interpretation, shapes_table, simulate_statement, statement_tails
from estimates.loo import (
    Pointwise,
    claim_checks,
    column_order,
    lone_claims,
    pointwise,
    psis_tension,
    weighted_quantiles,
)
from estimates.model import NUMBERS, PRIORS, build, claim_loglik, claim_loglik_numpy, describe, model_data, set_numbers
from estimates.results import TENSION_THRESHOLD, column_blocks

FAST = pytensor.config.change_flags(mode="FAST_COMPILE")


def _structure(rows, robust=False, interp=None):
    interp = interp or Interpretation()
    cs = normalise(rows, interpretation=interp)
    return describe(shapes_table(cs.used, interp), cs.hierarchy, robust=robust)


ROWS = [
    {"region": "A", "low": 100, "high": 200, "source": "s1", "time": "2020"},
    {"region": "A", "low": 120, "source": "s2", "time": "2020"},
    {"region": "A", "high": 300, "source": "s1", "time": "2021"},
    {"region": "A", "value": 150, "source": "s2", "time": "2021"},
    {"region": "A", "low": 1.1, "since": "2020", "time": "2021", "source": "s1"},
    {"region": "A", "value": 154, "kind": "exact", "source": "lone", "time": "2021"},
]


# ----------------------------------------------------------------------------- pieces


def test_statement_tails_equal_the_simulated_replicates():
    """Closed-form tails agree with simulate_statement's draws for every shape.

    200,000 draws: the standard error of a simulated probability is at most
    0.0011, so 0.005 is over four standard errors.
    """
    rng = np.random.default_rng(0)
    shape = np.array(["normal", "box", "box", "lower", "upper"], dtype=object)
    kind = np.array(["range", "at_least", "at_most", "at_least", "at_most"], dtype=object)
    a = np.array([1.0, 2.0, 1.6, 2.0, -np.inf])
    b = np.array([1.0, 2.4, 2.0, np.inf, 3.0])
    n = 200_000
    sd = np.tile([0.2, 0.1, 0.1, 0.1, 0.15], (n, 1))
    y = np.tile([1.3, 2.1, 1.7, 1.95, 3.1], (n, 1))
    rep = simulate_statement(shape, kind, a, b, sd, y, rng)
    obs = np.array([1.0, 2.0, 2.0, 2.0, 3.0])
    below, above = statement_tails(shape, kind, a, b, sd[:1], y[:1])
    np.testing.assert_allclose(below[0], (rep <= obs).mean(axis=0), atol=0.005)
    np.testing.assert_allclose(above[0], (rep >= obs).mean(axis=0), atol=0.005)
    np.testing.assert_allclose(below + above, 1.0, atol=1e-12)


@pytest.mark.parametrize("robust", [False, True])
def test_numpy_loglik_equals_the_compiled_terms_and_scipy(robust):
    """The numpy likelihood (used for LOO weights) is the model's, term by term."""
    st = _structure(ROWS, robust=robust)
    rng = np.random.default_rng(2)
    y = np.log(150.0) + rng.normal(0, 0.5, (3, len(st.claim_row)))
    y[:, st.claim_ratio] = rng.normal(0.1, 0.3, (3, st.claim_ratio.sum()))
    s = st.claim_spread * rng.uniform(1.0, 2.0, y.shape)
    got = claim_loglik_numpy(st, y, s)
    yv, sv = pt.dvector("y"), pt.dvector("s")
    with FAST:
        f = pytensor.function([yv, sv], claim_loglik(st, yv, sv))
    for d in range(3):
        np.testing.assert_allclose(got[d], f(y[d], s[d]), rtol=1e-10)
    # and one term by hand: the normal claim ("about 150")
    i = int(np.flatnonzero(st.claim_shape == "normal")[0])
    want = stats.norm.logpdf(st.claim_a[i], y[0, i], s[0, i])
    if robust:
        w = Interpretation().robust_weight
        wild = stats.norm.logpdf(st.claim_a[i], y[0, i], Interpretation().robust_sd)
        want = np.logaddexp(math.log1p(-w) + want, math.log(w) + wild)
    assert got[0, i] == pytest.approx(want, rel=1e-10)


def _fake_idata(st, rng, chains=2, draws=50):
    n_cells, n_src, n_q = len(st.cells), len(st.sources), len(st.quantities)
    post = {
        "log_count": np.log(150.0) + rng.normal(0, 0.2, (chains, draws, n_cells)),
        "log_bias": rng.normal(0, 0.3, (chains, draws, n_src)),
        "log_reliability": np.abs(rng.normal(0.2, 0.1, (chains, draws, n_src))),
        "bias_sd": np.exp(rng.normal(math.log(0.3), 0.3, (chains, draws, n_q))),
        "reliability_mean": rng.normal(-1.5, 0.3, (chains, draws, n_q)),
    }
    return az.from_dict(posterior=post)


def test_lone_source_bias_and_reliability_are_integrated_over_the_population():
    """A single-claim source's term equals its average over population draws of bias and reliability.

    Brute force: 400,000 draws of (bias, reliability) per posterior draw; the
    Monte Carlo error of a log mean of likelihoods is below 0.005 here, and
    the quadrature error of 16 Gauss-Hermite nodes far smaller; tolerance 0.01.
    """
    st = _structure(ROWS)
    lone = lone_claims(st)
    assert lone.sum() == 1 and st.sources["source"].iloc[st.claim_source[lone][0]] == "lone"
    rng = np.random.default_rng(3)
    idata = _fake_idata(st, rng)
    pw = pointwise(st, idata)
    i = int(np.flatnonzero(lone)[0])
    j = int(st.claim_source[i])
    data = model_data(st)
    gain = 1.0 - data["src_weights"][0, j]
    post = idata.posterior.stack(sample=("chain", "draw"))
    for d in (0, 17, 63):
        lc = post["log_count"].values[:, d]
        tau = float(post["bias_sd"].values[0, d])
        mu_k = float(post["reliability_mean"].values[0, d])
        m = 400_000
        delta = rng.normal(0, tau, m)  # the bias population's centre is 0 without a reference
        kappa = np.exp(np.logaddexp(0.0, mu_k + PRIORS["reliability_sd"] * rng.standard_normal(m)))
        # the fitted target is log_count + bias; a fresh bias moves it by
        # (1 - w) times the change (the level is net of the mean bias)
        log_bias = post["log_bias"].values[:, d]
        y = lc[st.claim_time_cell[i]] + log_bias[j] + gain * (delta - log_bias[j])
        s = st.claim_spread[i] * kappa
        ll = stats.norm.logpdf(st.claim_a[i], y, s)
        want = special.logsumexp(ll) - math.log(m)
        assert pw.ll[d, i] == pytest.approx(want, abs=0.01)
        assert pw.below[d, i] == pytest.approx(stats.norm.cdf((st.claim_a[i] - y) / s).mean(), abs=0.005)


@pytest.mark.parametrize("robust", [False, True])
def test_claim_checks_in_blocks_equal_the_whole_table_at_once(robust):
    """Blocks of claims (bounded memory on large tables) change nothing.

    One claim per block (two passes, the log-likelihoods computed twice, the
    lone claim's quadrature on its own) against every claim in one block,
    and both against the whole draws x claims arrays of ``pointwise``.
    """
    st = _structure(ROWS, robust=robust)
    idata = _fake_idata(st, np.random.default_rng(6))
    whole = claim_checks(st, idata)
    one_by_one = claim_checks(st, idata, block_bytes=1)
    assert len(column_blocks(100, len(st.claim_row), block_bytes=1)) == len(st.claim_row)
    for name in ("tension", "pareto_k", "tension_in_sample", "p_wild", "source_ll", "reff"):
        np.testing.assert_allclose(getattr(one_by_one, name), getattr(whole, name), rtol=1e-12, err_msg=name)
    pw = pointwise(st, idata)
    tension, k = psis_tension(st.claim_shape, pw)
    np.testing.assert_allclose(whole.tension, tension, rtol=1e-12)
    np.testing.assert_allclose(whole.pareto_k, k, rtol=1e-12)
    assert whole.reff == pw.reff
    for j in range(len(st.sources)):
        np.testing.assert_allclose(whole.source_ll[:, j], pw.ll[:, st.claim_source == j].sum(axis=1), rtol=1e-12)
    assert np.isfinite(whole.p_wild).all() == robust


def test_intervals_in_blocks_of_one_cell_equal_the_whole_table(monkeypatch):
    from estimates import results

    st = _structure(ROWS)
    idata = _fake_idata(st, np.random.default_rng(8))
    whole = results.summarise_intervals(st, idata, 0.9)
    monkeypatch.setattr("estimates.results.BLOCK_BYTES", 1)
    pd.testing.assert_frame_equal(results.summarise_intervals(st, idata, 0.9), whole)


def test_column_blocks_cover_the_claims_once_within_the_budget():
    blocks = column_blocks(n_draws=4000, n_columns=40_000, block_bytes=32 * 2**20)
    np.testing.assert_array_equal(np.concatenate(blocks), np.arange(40_000))
    assert max(len(b) for b in blocks) * 4000 * 8 <= 32 * 2**20
    assert len(blocks) == 39  # 1,048 claims per block
    assert [len(b) for b in column_blocks(10, 5)] == [5]


def test_weighted_quantiles_are_the_inverted_cdf():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(101, 3))
    probs = [0.05, 0.5, 0.95]
    np.testing.assert_allclose(
        weighted_quantiles(x, np.full(101, 1 / 101), probs), np.quantile(x, probs, axis=0, method="inverted_cdf")
    )
    # integer weights are repetitions
    w = rng.integers(1, 4, 101)
    rep = np.repeat(x, w, axis=0)
    np.testing.assert_allclose(
        weighted_quantiles(x, w / w.sum(), probs), np.quantile(rep, probs, axis=0, method="inverted_cdf")
    )


def test_weighted_quantiles_in_blocks_with_a_shared_order_change_nothing(monkeypatch):
    """The sort order computed once per quantity, and blocks of 7 columns, give the same quantiles."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 50))
    w = rng.dirichlet(np.ones(300))
    probs = [0.05, 0.5, 0.95]
    whole = weighted_quantiles(x, w, probs)
    order = column_order(x)
    assert order.dtype == np.uint16 and order.shape == (50, 300)
    np.testing.assert_array_equal(np.take_along_axis(x.T, order.astype(np.int64), axis=1), np.sort(x.T, axis=1))
    monkeypatch.setattr("estimates.results.BLOCK_BYTES", 7 * 300 * 8)
    np.testing.assert_array_equal(weighted_quantiles(x, w, probs, order), whole)
    np.testing.assert_array_equal(weighted_quantiles(x, w, probs), whole)


def test_psis_tension_equals_exact_leave_one_out_in_a_conjugate_model():
    """Normal mean, known sd: LOO predictives are exact normals; PSIS must find them.

    20,000 independent posterior draws and well-behaved weights (k < 0.5):
    the error of a weighted tail probability is about 0.005; tolerance 0.02.
    """
    rng = np.random.default_rng(5)
    y = rng.normal(1.0, 1.0, 20)
    y[3] = 4.5  # one far-out observation
    prior_var = 100.0

    def post(idx):
        v = 1.0 / (1.0 / prior_var + len(idx))
        return v * y[idx].sum(), v

    m, v = post(np.arange(20))
    theta = rng.normal(m, math.sqrt(v), 20_000)
    ll = stats.norm.logpdf(y[None, :], theta[:, None], 1.0)
    below = stats.norm.cdf(y[None, :] - theta[:, None])
    pw = Pointwise(ll, below, 1 - below, below, 1 - below, np.zeros(20, bool), np.full(20, np.nan), 1.0)
    tension, k = psis_tension(np.array(["normal"] * 20, dtype=object), pw)
    assert np.all(k < 0.5)
    exact = []
    for i in range(20):
        mi, vi = post(np.delete(np.arange(20), i))
        p = stats.norm.cdf((y[i] - mi) / math.sqrt(1 + vi))
        exact.append(2 * min(p, 1 - p))
    np.testing.assert_allclose(tension, exact, atol=0.02)
    assert tension[3] == min(tension)


@pytest.mark.parametrize("fused", [False, True])
def test_a_claim_with_weight_zero_leaves_the_density(fused):
    """Exact refits set a claim's weight to 0 in the compiled model: its number no longer matters
    (symbolic, and with the claims' term as one Op as nutpie compiles it)."""
    st = _structure(ROWS)
    model = build(st, fused=fused)
    d = model_data(st)
    assert "claim_weight" in NUMBERS
    with FAST:
        logp = model.compile_logp()
        dlogp = model.compile_dlogp()
    ip = model.initial_point()
    base = logp(ip)
    w = np.ones(len(st.claim_row))
    w[0] = 0.0
    a = d["claim_a"].copy()
    a[0] += 1.0  # move claim 0's number
    set_numbers(model, {**d, "claim_a": a})
    moved = logp(ip)
    assert moved != pytest.approx(base)
    set_numbers(model, {**d, "claim_a": a, "claim_weight": w})
    left_out = logp(ip)
    set_numbers(model, {**d, "claim_weight": w})
    assert logp(ip) == pytest.approx(left_out, rel=1e-12)  # claim 0's number is irrelevant now
    assert np.all(np.isfinite(dlogp(ip)))


def test_refits_must_be_a_whole_number():
    with pytest.raises(OptionError, match="refits=-1"):
        est.reconcile(ROWS, refits=-1)
    with pytest.raises(OptionError, match="refits=True"):
        est.reconcile(ROWS, refits=True)


# ----------------------------------------------------------------------------- planted worlds (MCMC)


@pytest.mark.slow
@pytest.mark.parametrize("robust", [False, True])
def test_a_planted_wild_claim_is_the_only_one_flagged(planted_fits, robust):
    res = planted_fits[robust]
    d = res.diagnostics
    assert d["r_hat_max"] < 1.01 and d["ess_bulk_min"] > 400 and d["divergences"] <= 2, d
    cl = res.claims
    wild = cl["claim_id"] == "wild"
    assert cl.loc[wild, "tension"].iloc[0] < TENSION_THRESHOLD
    assert bool(cl.loc[wild, "flagged"].iloc[0])
    # every other claim fits: the lowest other tension was 0.09-0.24 with
    # these seeds, an order of magnitude above the threshold
    assert (cl.loc[~wild, "tension"] >= TENSION_THRESHOLD).all()
    assert not cl.loc[~wild, "flagged"].any()
    assert set(cl["loo"]) <= {"psis", "refit"}
    assert res.diagnostics["loo"]["claims_unreliable"] == 0
    if robust:  # the robust model calls it wild, and nothing else
        assert cl.loc[wild, "p_wild"].iloc[0] > 0.9
        assert (cl.loc[~wild, "p_wild"] < 0.1).all()
    else:
        assert cl["p_wild"].isna().all()


@pytest.mark.slow
def test_dropping_a_biased_source_moves_intervals_toward_the_truth(planted, planted_fits):
    """C states three times the truth; the consensus sits between; without C it is the fair sources'."""
    _, truth = planted
    inf = planted_fits[False].influence()
    c = inf[inf["source"] == "C"].astype({"time": str}).merge(truth, on=["region", "time"])
    assert len(c) == 12
    err_with = np.abs(np.log(c["median"] / c["truth"]))
    err_without = np.abs(np.log(c["median_without"] / c["truth"]))
    assert (c["shift"] < 0).all()  # every interval moves down, toward the truth
    assert err_without.mean() < 0.5 * err_with.mean()
    src = planted_fits[False].sources.set_index("source")
    assert src.loc["C", "influence"] == pytest.approx(c["shift"].abs().max())
    assert src.loc["C", "influence_method"] in ("psis", "refit")


@pytest.mark.slow
def test_a_lone_wild_claim_cannot_explain_itself_away(make_planted_world):
    """A new source's single 20x claim: in-sample its own bias absorbs it; left out, it stands out.

    The fair world (C fair too), so the population of source biases is narrow.
    """
    claims, _ = make_planted_world(wild_source="Z", c_factor=1.0)
    res = est.reconcile(claims, random_seed=3)
    cl = res.claims
    wild = cl["claim_id"] == "wild"
    assert cl.loc[wild, "tension_in_sample"].iloc[0] > 0.1  # what the fitted bias makes of it
    assert cl.loc[wild, "tension"].iloc[0] < TENSION_THRESHOLD
    assert (cl.loc[~wild, "tension"] >= TENSION_THRESHOLD).all()


@pytest.mark.slow
def test_the_article_claims_carry_their_loo_columns(example_fit):
    """Every used claim has a tension unless nothing else speaks to its quantity's level."""
    cl = example_fit.claims
    used = cl["status"] == "used"
    alone = used & (cl.groupby("quantity")["quantity"].transform("size") == 1)
    assert alone.sum() == 3  # the prison counts and the break-out plot: one claim each
    # "54 attacks in April": the other attacks claim is a ratio (April over March)
    only_level = cl["claim_id"] == "isis22-09"
    assert set(cl.loc[alone, "loo"]) == {"no other claim"}
    assert cl.loc[only_level, "loo"].tolist() == ["no other level claim"]
    assert cl.loc[alone | only_level, "tension"].isna().all()
    rest = used & ~alone & ~only_level
    assert cl.loc[rest, "tension"].between(0, 1).all()
    assert set(cl.loc[rest, "loo"]) <= {"psis", "refit"}
    # the ratio claim keeps its tension: left out, the level claim still anchors April
    assert cl.loc[cl["claim_id"] == "isis22-10", "tension"].notna().all()
    assert cl.loc[used, "pareto_k"].notna().all()
    inf = example_fit.influence()
    assert set(inf["source"]) == set(example_fit.sources["source"])
    src = example_fit.sources
    shared = src["quantity"] == "fighters"  # the only quantity with more than one source
    assert src.loc[shared, "influence"].notna().all()
    assert (src.loc[~shared, "influence_method"] == "only source").all()


@pytest.mark.slow
def test_divergences_of_the_refits_are_counted_in_the_diagnostics(example_fit, monkeypatch):
    """A refit's convergence is not warned about (the user's fit is not at fault) but is not hidden either."""
    import copy

    from estimates import api

    def fake_sample(st, options, seed, claim_weight=None):
        idata = copy.deepcopy(example_fit.idata)
        if claim_weight is not None:  # a refit: two divergent draws
            div = np.zeros(idata.sample_stats["diverging"].shape, dtype=bool)
            div[0, :2] = True
            idata.sample_stats["diverging"] = (("chain", "draw"), div)
        timing = dict(sampler="nutpie", cached=True, build_seconds=0.0, compile_seconds=0.0, sample_seconds=0.0)
        return idata, {**timing, "gradients": 0}

    monkeypatch.setattr(api, "sample", fake_sample)
    res = est.reconcile(est.load_example("isis-2022"))
    lo = res.diagnostics["loo"]
    assert lo["refits"] > 0 and lo["refit_divergences"] == 2 * lo["refits"]
    assert example_fit.diagnostics["loo"]["refit_divergences"] >= 0  # the real fit reports the key too
