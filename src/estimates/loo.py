"""Leave-one-out tension of claims and the influence of each source.

A claim's *tension* is the two-sided tail probability of what it states
under the posterior predictive of a model that has not seen it (DESIGN
section 3). Leaving a claim out is done by Pareto-smoothed importance
sampling (PSIS, Vehtari et al. 2017, 2024) of the full posterior, with the
Pareto ``k`` of each claim reported; where ``k`` is above
:data:`LOO_K_MAX` the weights are unreliable and the caller refits the
model without the claim (its weight set to 0 in the compiled model).

A source with a single claim would explain that claim away: its bias and
reliability are fitted to it. For such claims the source's bias and
reliability are therefore drawn from the population of sources (the
model's ``N(mean, bias_sd)`` and ``softplus(N(reliability_mean,
reliability_sd))``) rather than taken from the fit. Every claim term is a
normal blur of the target (a normal density, a normal CDF or a difference
of two), so a normal bias integrates out exactly by widening the blur; the
reliability is integrated by Gauss-Hermite quadrature.

*Influence* of a source: the intervals recomputed with all of its claims
left out, by the same importance weights (the sum of its claims' log
likelihoods) or a refit when their ``k`` is too high.

Only numpy here: the refits themselves are run by :mod:`estimates.api`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import _convergence
from ._deps import quiet_import
from .interpret import statement_tails, tension_from_tails
from .model import PRIORS, Structure, claim_loglik_numpy, model_data, targets_numpy, wild_loglik
from .results import posterior_draws

#: Above this Pareto k the importance weights are not trusted (Vehtari et al. 2024).
LOO_K_MAX = 0.7

#: Gauss-Hermite nodes for a lone source's reliability drawn from the population.
HERMITE_NODES = 16


@dataclass
class Pointwise:
    """Per draw and claim: log-likelihood and the replicate's two tail probabilities.

    For claims of single-claim sources (``lone``) the source's bias and
    reliability are integrated over the population, in all three.
    """

    ll: np.ndarray  # draws x claims
    below: np.ndarray  # draws x claims: P(rep <= stated)
    above: np.ndarray  # draws x claims: P(rep >= stated)
    below_fit: np.ndarray  # the same, with the fitted bias and reliability (in-sample)
    above_fit: np.ndarray
    lone: np.ndarray  # bool per claim
    p_wild: np.ndarray  # per claim: posterior probability it is wild (NaN unless robust)
    reff: float  # relative efficiency of the draws (ESS / draws) for PSIS


def lone_claims(st: Structure) -> np.ndarray:
    """Claims whose (quantity, source) has no other used claim."""
    if not len(st.claim_row):
        return np.zeros(0, dtype=bool)
    n = st.sources["n_claims"].to_numpy()
    return n[st.claim_source] == 1


def pointwise(st: Structure, idata: Any) -> Pointwise:
    """Log-likelihood and tail probabilities of every used claim at every draw."""
    log_count = posterior_draws(idata, "log_count")
    log_bias = posterior_draws(idata, "log_bias")
    log_rel = posterior_draws(idata, "log_reliability")
    y, s = targets_numpy(st, log_count, log_bias, log_rel)
    shape, kind, a, b = st.claim_shape, st.claim_kind, st.claim_a, st.claim_b
    ll = claim_loglik_numpy(st, y, s)
    below_fit, above_fit = statement_tails(shape, kind, a, b, s, y)
    below, above = below_fit.copy(), above_fit.copy()
    p_wild = np.full(len(st.claim_row), np.nan)
    if st.robust:
        share = math.log(st.robust_weight) + wild_loglik(st, y) - ll
        p_wild = np.exp(share).mean(axis=0)
    lone = lone_claims(st)
    if lone.any():
        cols = np.flatnonzero(lone)
        ll[:, cols], below[:, cols], above[:, cols] = _integrate_lone(st, idata, y[:, cols], log_bias, cols)
    chains = idata.posterior.sizes["chain"]
    return Pointwise(ll, below, above, below_fit, above_fit, lone, p_wild, _reff(ll, chains))


def _integrate_lone(st: Structure, idata: Any, y: np.ndarray, log_bias: np.ndarray, cols: np.ndarray):  # noqa: ANN202
    """Claims of single-claim sources with the source's bias and reliability from the population."""
    src = st.claim_source[cols]
    q = st.sources["q_idx"].to_numpy(np.int64)[src]
    is_ref = st.sources["is_reference"].to_numpy(bool)[src]
    data = model_data(st)
    w_src = data["src_weights"][q, src]  # the source's share of the consensus level
    # the claim target moves by (1 - w) times the bias (the level is net of
    # the sources' mean bias); relative claims do not see the bias at all
    gain = np.where(is_ref | (st.claim_ratio[cols] != 0), 0.0, 1.0 - w_src)
    tau = posterior_draws(idata, "bias_sd")[:, q]
    centre_bias = np.zeros_like(tau)
    if "bias_mean" in idata.posterior:
        centre_bias = posterior_draws(idata, "bias_mean")[:, q] * data["src_ref_centre"][src]
    centre = y + gain * (centre_bias - log_bias[:, src])
    v = gain * tau  # sd the bias adds to the target
    z, wts = np.polynomial.hermite_e.hermegauss(HERMITE_NODES)
    wts = wts / wts.sum()
    mu_k = posterior_draws(idata, "reliability_mean")[:, q]
    arg = mu_k[None] + PRIORS["reliability_sd"] * z[:, None, None]  # nodes x draws x claims
    kappa = np.exp(np.logaddexp(0.0, arg))  # exp(softplus)
    s_eff = np.sqrt((st.claim_spread[cols] * kappa) ** 2 + v[None] ** 2)
    wild_sd = np.sqrt(float(st.robust_sd) ** 2 + v**2)[None]
    ll = claim_loglik_numpy(st, centre[None], s_eff, cols=cols, wild_sd=wild_sd)
    ll = np.logaddexp.reduce(np.log(wts)[:, None, None] + ll, axis=0)
    shape, kind = st.claim_shape[cols], st.claim_kind[cols]
    bl, ab = statement_tails(shape, kind, st.claim_a[cols], st.claim_b[cols], s_eff, centre[None])
    return ll, np.tensordot(wts, bl, axes=1), np.tensordot(wts, ab, axes=1)


def _reff(ll: np.ndarray, chains: int) -> float:
    """Mean relative efficiency of the likelihood draws, as ArviZ's ``loo`` uses."""
    n = ll.shape[0]
    if n % chains or ll.shape[1] == 0:
        return 1.0
    lik = np.exp(ll - ll.max(axis=0))
    ess = _convergence.ess_mean(lik.reshape(chains, n // chains, -1))
    return float(np.clip(np.nanmean(ess) / n, 0.01, 1.0))


def psis_weights(log_ratios: np.ndarray, reff: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised PSIS weights (columns x draws) and Pareto k per column of ``log_ratios`` (draws x columns)."""
    az = quiet_import("arviz")
    lr = np.asarray(log_ratios, dtype=float)
    lr = lr - lr.max(axis=0)
    lw, k = az.psislw(lr.T, reff=reff)
    return np.exp(np.asarray(lw)), np.atleast_1d(np.asarray(k, dtype=float))


def psis_tension(st: Structure, pw: Pointwise) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out tension and Pareto k of every used claim by PSIS."""
    if not len(st.claim_row):
        return np.zeros(0), np.zeros(0)
    w, k = psis_weights(-pw.ll, pw.reff)
    below = np.einsum("cs,sc->c", w, pw.below)
    above = np.einsum("cs,sc->c", w, pw.above)
    return tension_from_tails(st.claim_shape, below, above), k


def in_sample_tension(st: Structure, pw: Pointwise) -> np.ndarray:
    """Tension against the posterior that saw the claim (bias and reliability as fitted)."""
    return tension_from_tails(st.claim_shape, pw.below_fit.mean(axis=0), pw.above_fit.mean(axis=0))


def refit_tension(st: Structure, idata_without: Any, col: int) -> float:
    """Tension of claim ``col`` from draws of a fit that gave it weight 0.

    The refit saw no claim of a lone source, so that source's bias and
    reliability draws already come from the population.
    """
    y, s = targets_numpy(
        st,
        posterior_draws(idata_without, "log_count"),
        posterior_draws(idata_without, "log_bias"),
        posterior_draws(idata_without, "log_reliability"),
    )
    c = [col]
    bl, ab = statement_tails(st.claim_shape[c], st.claim_kind[c], st.claim_a[c], st.claim_b[c], s[:, c], y[:, c])
    return float(tension_from_tails(st.claim_shape[c], bl.mean(axis=0), ab.mean(axis=0))[0])


# --------------------------------------------------------------------------- influence


def source_claims(st: Structure, j: int) -> np.ndarray:
    """Positions (in the used claims) of source ``j``'s claims."""
    return np.flatnonzero(st.claim_source == j)


def source_psis(st: Structure, pw: Pointwise, j: int) -> tuple[np.ndarray, float]:
    """Draw weights for the posterior without source ``j``, and their Pareto k."""
    cols = source_claims(st, j)
    w, k = psis_weights(-pw.ll[:, cols].sum(axis=1, keepdims=True), pw.reff)
    return w[0], float(k[0])


def weighted_quantiles(
    x: np.ndarray, w: np.ndarray | None, probs: list[float], order: np.ndarray | None = None
) -> np.ndarray:
    """Quantiles of each column of ``x`` (draws x columns) under draw weights ``w``; probs x columns.

    ``order`` is ``np.argsort(x, axis=0)`` when the caller already has it.
    """
    if w is None:
        return np.quantile(x, probs, axis=0)
    order = np.argsort(x, axis=0) if order is None else order
    xs = np.take_along_axis(x, order, axis=0)
    cw = np.cumsum(w[order], axis=0)
    cw = cw / cw[-1]
    out = np.empty((len(probs), x.shape[1]))
    for i, p in enumerate(probs):
        pos = (cw < p).sum(axis=0)  # first draw whose cumulative weight reaches p
        out[i] = xs[np.minimum(pos, len(xs) - 1), np.arange(x.shape[1])]
    return out


def influence_rows(
    st: Structure,
    log_count: np.ndarray,
    j: int,
    without: np.ndarray,
    weights: np.ndarray | None,
    prob: float,
    method: str,
    k: float,
    memo: dict | None = None,
) -> pd.DataFrame:
    """Rows of ``influence()`` for source ``j``: every cell of its quantity, with and without it.

    ``log_count`` holds the full fit's draws; ``without`` the draws without
    the source (the same draws when ``weights`` reweights them). ``memo``
    (a dict kept across the sources of one fit) saves each quantity's
    quantiles and sort order of ``log_count``, which every source shares.
    """
    q = int(st.sources["q_idx"].iloc[j])
    probs = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
    memo = {} if memo is None else memo
    if q not in memo:
        cells = np.flatnonzero(st.cells["q_idx"].to_numpy() == q)
        x = log_count[:, cells]
        memo[q] = (cells, np.exp(np.quantile(x, probs, axis=0)), np.argsort(x, axis=0))
    cells, full, order = memo[q]
    same = without is log_count
    wo = np.exp(weighted_quantiles(without[:, cells], weights, probs, order if same else None))
    out = st.cells.iloc[cells][["quantity", "region", "time"]].copy()
    out["time"] = out["time"].astype(object)
    out.insert(1, "source", st.sources["source"].iloc[j])
    out["median"], out["lower"], out["upper"] = full[1], full[0], full[2]
    out["median_without"], out["lower_without"], out["upper_without"] = wo[1], wo[0], wo[2]
    out["shift"] = wo[1] / full[1] - 1.0
    out["width_ratio"] = (wo[2] - wo[0]) / (full[2] - full[0])
    out["method"] = method
    out["pareto_k"] = k
    return out.reset_index(drop=True)


INFLUENCE_COLUMNS = [
    "quantity",
    "source",
    "region",
    "time",
    "median",
    "lower",
    "upper",
    "median_without",
    "lower_without",
    "upper_without",
    "shift",
    "width_ratio",
    "method",
    "pareto_k",
]
