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
from .results import column_blocks, posterior_draws

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


class _Draws:
    """The posterior draws the claim checks read, fetched once."""

    def __init__(self, st: Structure, idata: Any) -> None:
        self.log_count = posterior_draws(idata, "log_count")
        self.log_bias = posterior_draws(idata, "log_bias")
        self.log_rel = posterior_draws(idata, "log_reliability")
        self.chains = int(idata.posterior.sizes["chain"])
        self.idata = idata
        self.lone = lone_claims(st)

    def pointwise(self, st: Structure, cols: np.ndarray, *, tails: bool = True, reff: float | None = None) -> Pointwise:
        y, s = targets_numpy(st, self.log_count, self.log_bias, self.log_rel, cols=cols)
        ll = claim_loglik_numpy(st, y, s, cols=cols)
        shape, kind, a, b = st.claim_shape[cols], st.claim_kind[cols], st.claim_a[cols], st.claim_b[cols]
        p_wild = np.full(len(cols), np.nan)
        if st.robust:
            share = math.log(st.robust_weight) + wild_loglik(st, y, cols) - ll
            p_wild = np.exp(share).mean(axis=0)
        below_fit = above_fit = below = above = np.zeros((0, len(cols)))
        if tails:
            below_fit, above_fit = statement_tails(shape, kind, a, b, s, y)
            below, above = below_fit.copy(), above_fit.copy()
        lone = np.flatnonzero(self.lone[cols])
        per = max(1, len(cols) // HERMITE_NODES)  # the quadrature holds HERMITE_NODES arrays per claim
        for start in range(0, len(lone), per):
            sub = lone[start : start + per]
            got = _integrate_lone(st, self.idata, y[:, sub], self.log_bias, cols[sub], tails=tails)
            ll[:, sub] = got[0]
            if tails:
                below[:, sub], above[:, sub] = got[1], got[2]
        reff = _reff(ll, self.chains) if reff is None else reff
        return Pointwise(ll, below, above, below_fit, above_fit, self.lone[cols], p_wild, reff)


def pointwise(st: Structure, idata: Any, cols: np.ndarray | None = None) -> Pointwise:
    """Log-likelihood and tail probabilities of the used claims ``cols`` (all by default) at every draw.

    Holds several draws x claims arrays at once: :func:`claim_checks` goes
    through the claims in blocks instead.
    """
    cols = np.arange(len(st.claim_row)) if cols is None else np.asarray(cols, dtype=np.int64)
    return _Draws(st, idata).pointwise(st, cols)


@dataclass
class ClaimChecks:
    """Per used claim: leave-one-out tension by PSIS, its Pareto k, in-sample tension, ``p_wild``.

    ``source_ll`` holds, per draw, the sum of each source's claims'
    log-likelihoods (draws x sources), which is all the sources' influence
    needs; ``reff`` the draws' mean relative efficiency used by PSIS.
    """

    tension: np.ndarray
    pareto_k: np.ndarray
    tension_in_sample: np.ndarray
    p_wild: np.ndarray
    source_ll: np.ndarray
    reff: float


def claim_checks(st: Structure, idata: Any, block_bytes: int | None = None) -> ClaimChecks:
    """Every used claim's checks, computed in blocks of claims (:data:`estimates.results.BLOCK_BYTES`).

    PSIS of every claim uses the draws' mean relative efficiency over all
    claims, as ArviZ's ``loo`` does, so with more than one block there are
    two passes: the first sums each source's log-likelihoods and the
    efficiency, the second computes each block's tails and PSIS weights
    (and its log-likelihoods again). The result does not depend on the blocks.
    """
    dr = _Draws(st, idata)
    n, n_draws = len(st.claim_row), dr.log_count.shape[0]
    blocks = column_blocks(n_draws, n, block_bytes)
    source_ll = np.zeros((n_draws, len(st.sources)))
    ess_sum, ess_n, whole = 0.0, 0, None
    for cols in blocks:  # pass 1: the sources' log-likelihoods and the draws' efficiency
        pw = dr.pointwise(st, cols, tails=len(blocks) == 1, reff=np.nan)
        src = st.claim_source[cols]
        for j in np.unique(src):
            source_ll[:, j] += pw.ll[:, src == j].sum(axis=1)
        got = _ess_sum(pw.ll, dr.chains)
        ess_sum, ess_n = ess_sum + got[0], ess_n + got[1]
        whole = pw if len(blocks) == 1 else None  # one block: nothing to compute again
    reff = float(np.clip(ess_sum / ess_n / n_draws, 0.01, 1.0)) if ess_n else 1.0
    out = {name: np.full(n, np.nan) for name in ("tension", "pareto_k", "tension_in_sample", "p_wild")}
    for cols in blocks:  # pass 2: tails and PSIS
        pw = whole if whole is not None else dr.pointwise(st, cols, reff=reff)
        pw.reff = reff
        shape = st.claim_shape[cols]
        out["tension"][cols], out["pareto_k"][cols] = psis_tension(shape, pw)
        out["tension_in_sample"][cols] = _in_sample_tension(shape, pw)
        out["p_wild"][cols] = pw.p_wild
    return ClaimChecks(**out, source_ll=source_ll, reff=reff)


def _integrate_lone(  # noqa: ANN202
    st: Structure, idata: Any, y: np.ndarray, log_bias: np.ndarray, cols: np.ndarray, *, tails: bool = True
):
    """Claims of single-claim sources with the source's bias and reliability from the population.

    Returns their log-likelihoods and, with ``tails``, their two tail probabilities.
    """
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
    if not tails:
        return (ll,)
    shape, kind = st.claim_shape[cols], st.claim_kind[cols]
    bl, ab = statement_tails(shape, kind, st.claim_a[cols], st.claim_b[cols], s_eff, centre[None])
    return ll, np.tensordot(wts, bl, axes=1), np.tensordot(wts, ab, axes=1)


def _reff(ll: np.ndarray, chains: int) -> float:
    """Mean relative efficiency of the likelihood draws, as ArviZ's ``loo`` uses."""
    total, count = _ess_sum(ll, chains)
    return float(np.clip(total / count / ll.shape[0], 0.01, 1.0)) if count else 1.0


def _ess_sum(ll: np.ndarray, chains: int) -> tuple[float, int]:
    """Sum and number of the finite ESS of each column's likelihood (none when chains are uneven)."""
    n = ll.shape[0]
    if n % chains or ll.shape[1] == 0:
        return 0.0, 0
    lik = np.exp(ll - ll.max(axis=0))
    ess = _convergence.ess_mean(lik.reshape(chains, n // chains, -1))
    return float(np.nansum(ess)), int(np.isfinite(ess).sum())


def psis_weights(log_ratios: np.ndarray, reff: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised PSIS weights (columns x draws) and Pareto k per column of ``log_ratios`` (draws x columns)."""
    az = quiet_import("arviz")
    lr = np.asarray(log_ratios, dtype=float)
    lr = lr - lr.max(axis=0)
    lw, k = az.psislw(lr.T, reff=reff)
    return np.exp(np.asarray(lw)), np.atleast_1d(np.asarray(k, dtype=float))


def psis_tension(shape: np.ndarray, pw: Pointwise) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out tension and Pareto k by PSIS of the claims in ``pw``, whose shapes are ``shape``."""
    if not pw.ll.shape[1]:
        return np.zeros(0), np.zeros(0)
    w, k = psis_weights(-pw.ll, pw.reff)
    below = np.einsum("cs,sc->c", w, pw.below)
    above = np.einsum("cs,sc->c", w, pw.above)
    return tension_from_tails(shape, below, above), k


def _in_sample_tension(shape: np.ndarray, pw: Pointwise) -> np.ndarray:
    """Tension against the posterior that saw the claim (bias and reliability as fitted)."""
    return tension_from_tails(shape, pw.below_fit.mean(axis=0), pw.above_fit.mean(axis=0))


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


def source_psis(checks: ClaimChecks, j: int) -> tuple[np.ndarray, float]:
    """Draw weights for the posterior without source ``j``, and their Pareto k."""
    w, k = psis_weights(-checks.source_ll[:, [j]], checks.reff)
    return w[0], float(k[0])


def weighted_quantiles(
    x: np.ndarray, w: np.ndarray | None, probs: list[float], order: np.ndarray | None = None
) -> np.ndarray:
    """Quantiles of each column of ``x`` (draws x columns) under draw weights ``w``; probs x columns.

    ``order`` is :func:`column_order` of ``x`` when the caller already has
    it. Columns go through in blocks (:func:`~estimates.results.column_blocks`),
    each sorted along contiguous memory.
    """
    if w is None:
        return np.quantile(x, probs, axis=0)
    n, m = x.shape
    out = np.empty((len(probs), m))
    for cols in column_blocks(n, m):
        xt = np.ascontiguousarray(x[:, cols].T)
        o = np.argsort(xt, axis=1) if order is None else order[cols]
        xs = np.take_along_axis(xt, o, axis=1)
        cw = np.cumsum(w[o], axis=1)
        cw /= cw[:, -1:]
        rows = np.arange(len(cols))
        for i, p in enumerate(probs):
            pos = (cw < p).sum(axis=1)  # first draw whose cumulative weight reaches p
            out[i, cols] = xs[rows, np.minimum(pos, n - 1)]
    return out


def column_order(x: np.ndarray) -> np.ndarray:
    """``argsort`` of each column of ``x`` (draws x columns), as columns x draws, in the smallest integer type."""
    n, m = x.shape
    out = np.empty((m, n), dtype=np.min_scalar_type(max(n - 1, 0)))
    for cols in column_blocks(n, m):
        out[cols] = np.argsort(np.ascontiguousarray(x[:, cols].T), axis=1)
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
    same = without is log_count
    if q not in memo:
        cells = np.flatnonzero(st.cells["q_idx"].to_numpy() == q)
        full = np.empty((len(probs), len(cells)))
        for b in column_blocks(log_count.shape[0], len(cells)):  # bounded memory on many cells
            full[:, b] = np.quantile(log_count[:, cells[b]], probs, axis=0)
        memo[q] = [cells, np.exp(full), None]
    if same and weights is not None and memo[q][2] is None:  # sorted once, for every source reweighted
        memo[q][2] = column_order(log_count[:, memo[q][0]])
    cells, full, order = memo[q]
    wo = np.empty_like(full)
    for b in column_blocks(log_count.shape[0], len(cells)):
        o = order[b] if same and order is not None else None
        wo[:, b] = np.exp(weighted_quantiles(without[:, cells[b]], weights, probs, o))
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
