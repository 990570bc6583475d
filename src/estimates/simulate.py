"""Synthetic worlds with known truth, for calibration studies and examples.

``simulate`` draws a world (leaf regions with a random-walk count each, an
aggregate, sources with biases and reliabilities) and the claims those
sources make about it, in the same claims-table format users give
:func:`estimates.reconcile`. With no misspecification the claims follow the
model's own reading of each statement (see :mod:`estimates.interpret`):

- a range with coverage ``q`` and half-width ``h`` (log scale) is centred on
  the biased truth plus normal noise of sd ``kappa * h / z_q``;
- "about X" is the biased truth plus noise of the rounding spread of X,
  rounded to two significant figures;
- an exact count carries noise of ``exact_sd``;
- "more than X" puts the biased truth uniformly in ``[X, bound_factor * X]``
  and blurs the edge by ``bound_edge_sd``, "up to X" the mirror image;
- a ratio claim ("N grew by a factor of about r since the last period")
  sees no source bias.

Misspecification is opt-in: ``outliers`` (a fraction of claims moved by a
heavy-tailed Student-t shift), ``overconfident`` (a fraction of sources
whose ranges are 2-3 times too narrow for their real noise) and
``biased_majority`` (most sources share one bias, so "sources are unbiased
on average" is false).

The *design* (which source speaks about which cell, with which kind of
statement) is drawn from ``design_seed``; the numbers from ``seed``. Worlds
with the same design share one compiled model (:mod:`estimates.inference`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import OptionError
from .interpret import Interpretation, roundness_sd
from .model import PRIORS

#: Default mix of statement kinds.
KINDS = {"range": 0.5, "about": 0.2, "at_least": 0.15, "at_most": 0.05, "exact": 0.05, "ratio": 0.05}


@dataclass
class World:
    """A simulated world: the claims and the truth behind them.

    Made by :func:`simulate`; each parameter is kept as the attribute of the
    same name.

    Parameters
    ----------
    claims : DataFrame
        The claims table, as a user would give it to
        :func:`estimates.reconcile`: ``claim_id, region, time, since, source,
        kind, low, high, value, coverage`` and ``wild`` (True for a claim
        moved by the ``outliers`` noise). ``claims.attrs["hierarchy"]``
        holds the hierarchy, so ``reconcile(world.claims)`` finds it.
    truth : DataFrame
        The true count of every cell, leaves and aggregate: ``region, time,
        log_count, count, is_aggregate``.
    sources : DataFrame
        The truth about each source: ``source, log_bias`` (the log of the
        factor it over-states by), ``reliability`` (the factor its noise is
        scaled by), ``overconfident`` and ``majority`` (in the biased
        majority).
    hierarchy : dict of str to list of str, optional
        ``{"All": [leaves]}`` when the world has an aggregate; empty otherwise.

    See Also
    --------
    simulate : Draws a world.

    Examples
    --------
    >>> import estimates as est
    >>> world = est.simulate(regions=2, periods=3, sources=3, seed=1)
    >>> world.hierarchy
    {'All': ['R1', 'R2']}
    >>> list(world.truth.columns)
    ['region', 'time', 'log_count', 'count', 'is_aggregate']
    >>> list(world.sources["source"])
    ['S1', 'S2', 'S3']
    >>> truth = world.truth.set_index(["region", "time"])["count"]
    >>> bool(abs(truth["All", "2015"] - truth["R1", "2015"] - truth["R2", "2015"]) < 1e-6 * truth["All", "2015"])
    True
    """

    claims: pd.DataFrame  #: the claims table, as a user would give it
    truth: pd.DataFrame  #: region, time, log_count, count, is_aggregate (every cell)
    sources: pd.DataFrame  #: source, log_bias (relative to the truth), reliability, overconfident, majority
    hierarchy: dict[str, list[str]] = field(default_factory=dict)  #: ``{"All": [leaves]}``, or empty


def _round2(x: np.ndarray) -> np.ndarray:
    """Round to two significant figures, as people round "about" numbers."""
    x = np.asarray(x, dtype=float)
    mag = 10.0 ** (np.floor(np.log10(np.abs(x))) - 1)
    return np.round(x / mag) * mag


def simulate(
    *,
    regions: int = 3,
    periods: int = 4,
    sources: int = 4,
    claims_per_cell: float = 2.0,
    aggregate: bool = True,
    kinds: Mapping[str, float] | None = None,
    coverage: float = 0.9,
    bias_sd: float | None = None,
    walk_scale: float = 0.3,
    outliers: float = 0.0,
    overconfident: float = 0.0,
    biased_majority: float = 0.0,
    reference: bool = False,
    seed: int = 0,
    design_seed: int | None = None,
    interpretation: Interpretation | None = None,
) -> World:
    """Draw a world with known truth and the claims its sources make.

    Leaf regions have counts that follow a random walk over yearly periods,
    an aggregate sums them, and each source has a bias and a reliability;
    the claims follow the model's own reading of each statement unless a
    misspecification (``outliers``, ``overconfident``, ``biased_majority``)
    is asked for.

    Parameters
    ----------
    regions, periods, sources : int
        Leaf regions, yearly periods (named from 2015) and sources.
    claims_per_cell : float
        Mean number of claims about each region-period (leaves and the
        aggregate); every leaf cell gets at least one. 1-2 is sparse.
    aggregate : bool
        Add a region "All" whose count is the sum of the leaves.
    kinds : mapping, optional
        Probabilities of ``range, about, at_least, at_most, exact, ratio``
        (default ``estimates.interpret.KINDS``).
    coverage : float
        The coverage every range states.
    bias_sd : float, optional
        Between-source sd of log biases; drawn from the model's prior
        (log-normal, median 0.3) when None.
    walk_scale : float
        Sd of the yearly log-change of each leaf.
    outliers : float
        Fraction of claims shifted by ``t(2)`` noise (log scale): wild claims.
    overconfident : float
        Fraction of sources whose real noise is 2-3 times what their ranges say.
    biased_majority : float
        When above 0, two-thirds of the sources (rounded up) share a log
        bias of this size (e.g. ``log(1.5)``), on top of their own.
    reference : bool
        Make source ``S1`` exactly unbiased (and never in the biased
        majority), for ``reconcile(..., reference="S1")``.
    seed : int
        Seed of the numbers (truth, biases, noise).
    design_seed : int, optional
        Seed of the design (who says what kind of thing about which cell);
        ``seed`` when None.
    interpretation : Interpretation, optional
        The reading the claims follow (default ``Interpretation()``).

    Returns
    -------
    World
        ``claims`` (a DataFrame for :func:`estimates.reconcile`, with
        ``hierarchy`` beside it), ``truth`` and ``sources``.

    Raises
    ------
    OptionError
        A count that is not a whole number >= 1, a fraction outside [0, 1],
        a non-positive ``claims_per_cell`` or an unknown kind.

    See Also
    --------
    World : What is returned.
    estimates.reconcile : Fits the claims; compare its intervals with ``truth``.

    Notes
    -----
    Worlds with the same ``design_seed`` (and the same sizes and kinds) have
    the same layout of claims, so :func:`estimates.reconcile` reuses one
    compiled model for all of them; only the numbers differ.

    Examples
    --------
    >>> import estimates as est
    >>> w = est.simulate(regions=2, periods=3, sources=3, seed=1)
    >>> sorted(w.truth["region"].unique())
    ['All', 'R1', 'R2']
    >>> set(w.claims.columns) >= {"region", "time", "source", "low", "high", "value", "kind"}
    True

    Same design, other numbers:

    >>> w2 = est.simulate(regions=2, periods=3, sources=3, seed=2, design_seed=1)
    >>> layout = ["region", "time", "source", "kind"]
    >>> w2.claims[layout].equals(w.claims[layout]), w2.claims["low"].equals(w.claims["low"])
    (True, False)
    """
    for name, v, lo in (("regions", regions, 1), ("periods", periods, 1), ("sources", sources, 1)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise OptionError(f"{name}={v!r} must be a whole number >= {lo}")
    for name, v in (("outliers", outliers), ("overconfident", overconfident)):
        if not 0 <= v <= 1:
            raise OptionError(f"{name}={v!r} must be a fraction between 0 and 1")
    if not claims_per_cell > 0:
        raise OptionError(f"claims_per_cell={claims_per_cell!r} must be positive")
    mix = dict(KINDS if kinds is None else kinds)
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise OptionError(f"unknown kinds {sorted(unknown)}; use some of {sorted(KINDS)}")
    if periods < 2:
        mix.pop("ratio", None)
    total = sum(mix.values())
    if not total > 0:
        raise OptionError("kinds must give some kind a positive probability")
    interp = interpretation or Interpretation()
    rng_design = np.random.default_rng(seed if design_seed is None else design_seed)
    rng = np.random.default_rng(seed)

    leaves = [f"R{i + 1}" for i in range(regions)]
    years = [str(2015 + t) for t in range(periods)]
    src_names = [f"S{j + 1}" for j in range(sources)]
    hierarchy = {"All": list(leaves)} if aggregate and regions > 1 else {}

    # ---- design: who speaks about which cell, saying what kind of thing
    cells = [(r, t) for r in leaves for t in range(periods)]
    if hierarchy:
        cells += [("All", t) for t in range(periods)]
    kind_names = list(mix)
    kind_p = np.array([mix[k] for k in kind_names]) / total
    design = []
    for r, t in cells:
        n = rng_design.poisson(claims_per_cell)
        if r != "All":
            n = max(n, 1)
        n = min(n, sources)
        for j in rng_design.choice(sources, size=n, replace=False):
            kind = str(rng_design.choice(kind_names, p=kind_p))
            if kind == "ratio" and t == 0:
                kind = "range"
            design.append((r, t, int(j), kind, float(rng_design.uniform(0.1, 0.4))))
    n_over = int(round(overconfident * sources))
    over = np.zeros(sources, dtype=bool)
    over[rng_design.choice(sources, size=n_over, replace=False)] = True
    majority = np.zeros(sources, dtype=bool)
    if biased_majority:
        pool = np.arange(1 if reference else 0, sources)
        majority[rng_design.choice(pool, size=min(len(pool), math.ceil(2 * sources / 3)), replace=False)] = True

    # ---- the world
    log_n = {}
    for r in leaves:
        x = rng.uniform(math.log(500.0), math.log(50_000.0))
        for t in range(periods):
            log_n[(r, t)] = x
            x += rng.normal(0.0, walk_scale)
    if hierarchy:
        for t in range(periods):
            log_n[("All", t)] = float(np.logaddexp.reduce([log_n[(r, t)] for r in leaves]))
    if bias_sd is None:  # the model's prior of the between-source sd
        tau = math.exp(rng.normal(math.log(PRIORS["bias_scale"]), PRIORS["scale_log_sd"]))
    else:
        tau = bias_sd
    log_bias = rng.normal(0.0, tau, sources) + biased_majority * majority
    if reference:
        log_bias[0] = 0.0
    arg = rng.normal(PRIORS["reliability_mean"], PRIORS["reliability_sd"], sources)
    kappa = np.exp(np.logaddexp(0.0, arg))  # exp(softplus): the model's reliability prior
    noise_factor = kappa * np.where(over, rng.uniform(2.0, 3.0, sources), 1.0)

    # ---- the claims
    z = _z(coverage)
    lu = math.log(interp.bound_factor)
    rows = []
    for i, (r, t, j, kind, half) in enumerate(design):
        target = log_n[(r, t)] + log_bias[j]
        wild = rng.random() < outliers
        shift = rng.standard_t(2.0) if wild else 0.0
        row = {"claim_id": f"c{i + 1:03d}", "region": r, "time": years[t], "source": src_names[j], "kind": kind}
        f = noise_factor[j]
        if kind == "range":
            c = target + rng.normal(0.0, f * half / z) + shift
            row.update(low=_sig(math.exp(c - half)), high=_sig(math.exp(c + half)), coverage=coverage)
        elif kind == "about":
            sd = roundness_sd(float(_round2(math.exp(target))), interp)
            row.update(value=float(_round2(math.exp(target + rng.normal(0.0, f * sd) + shift))))
        elif kind == "exact":
            row.update(value=float(round(math.exp(target + rng.normal(0.0, f * interp.exact_sd) + shift))))
        elif kind == "at_least":
            c = target - rng.uniform(0.0, lu) + rng.normal(0.0, f * interp.bound_edge_sd) + shift
            row.update(low=_sig(math.exp(c)))
        elif kind == "at_most":
            c = target + rng.uniform(0.0, lu) + rng.normal(0.0, f * interp.bound_edge_sd) + shift
            row.update(high=_sig(math.exp(c)))
        else:  # ratio to the previous period, no bias: "grew by a factor of about r"
            y = log_n[(r, t)] - log_n[(r, t - 1)]
            c = y + rng.normal(0.0, f * half / z) + shift
            row.update(kind="range", low=math.exp(c - half), high=math.exp(c + half), since=years[t - 1])
            row["coverage"] = coverage
        row["wild"] = bool(wild)
        rows.append(row)
    claims = pd.DataFrame(rows)
    for col in ("low", "high", "value", "coverage"):
        if col not in claims:
            claims[col] = np.nan
    if "since" not in claims:
        claims["since"] = None
    order = ["claim_id", "region", "time", "since", "source", "kind", "low", "high", "value", "coverage", "wild"]
    claims = claims[order]
    claims.attrs["hierarchy"] = hierarchy
    truth = pd.DataFrame(
        [
            {"region": r, "time": years[t], "log_count": v, "count": math.exp(v), "is_aggregate": r == "All"}
            for (r, t), v in log_n.items()
        ]
    )
    src = pd.DataFrame(
        {"source": src_names, "log_bias": log_bias, "reliability": kappa, "overconfident": over, "majority": majority}
    )
    return World(claims=claims, truth=truth, sources=src, hierarchy=hierarchy)


def _z(coverage: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(0.5 + coverage / 2))


def _sig(x: float) -> float:
    """A stated bound: rounded to three significant figures, as reports print them."""
    if x <= 0 or not math.isfinite(x):
        return x
    mag = 10.0 ** (math.floor(math.log10(x)) - 2)
    return float(round(x / mag) * mag)
