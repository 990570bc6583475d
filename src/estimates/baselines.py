"""What analysts do today: simple summaries of conflicting claims, per cell.

Each baseline reads the claims table exactly as :func:`estimates.reconcile`
does (:func:`estimates.claims.normalise`, then
:func:`estimates.interpret.shapes_table`), and summarises every (quantity,
region, time) cell on its own: no sources, no biases, no time series, no
aggregates summed from their members (a claim about an aggregate counts for
that aggregate's cell only). Relative claims (``since`` set) are left out of
every baseline.

============================  ============================================  =========================
baseline                      centre                                        interval
============================  ============================================  =========================
``midpoint``                  arithmetic mean of the claims' midpoints      min to max of the midpoints
``envelope``                  geometric mean of the two ends                lowest low to highest high
``inverse-variance``          fixed-effect pooled mean (log scale)          normal, ``prob``
``dersimonian-laird``         random-effects pooled mean (log scale)        normal, ``prob``
============================  ============================================  =========================

The two pooling baselines use the claims that are ranges or points (normal
shape on the log scale, ``interpret.shape_of``): each one's centre and
spread are ``y_i`` and ``sqrt(v_i)`` of a meta-analysis of log counts. A
range's spread is its half-width over the normal quantile of its coverage
(a 95% confidence interval gives its standard error). Bounds ("more than
X") have no spread and are not used; a cell with only bounds has no row.

Every function returns a new DataFrame with columns ``quantity, region,
time, median, lower, upper, n_claims`` on the count scale, one row per cell
that has at least one claim the baseline can use. The caller's table is
never modified.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from .claims import ClaimsLike, Hierarchy, normalise
from .errors import OptionError
from .interpret import DEFAULT_PROB, Interpretation, shapes_table

__all__ = [
    "BASELINES",
    "BASELINE_COLUMNS",
    "dersimonian_laird",
    "envelope",
    "inverse_variance",
    "midpoint",
    "pool_dersimonian_laird",
    "pool_fixed",
]

#: Columns of every baseline's table.
BASELINE_COLUMNS = ["quantity", "region", "time", "median", "lower", "upper", "n_claims"]

HierarchyLike = Mapping[str, Iterable[str]] | Hierarchy | None
InterpretationLike = Interpretation | Mapping[str, Any] | None


# --------------------------------------------------------------------------- pooling arithmetic


def _check_pool_inputs(y: Any, v: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    v = np.asarray(v, dtype=float).ravel()
    if y.size == 0:
        raise ValueError("pooling needs at least one estimate; y is empty")
    if y.shape != v.shape:
        raise ValueError(f"y has {y.size} estimates but v has {v.size} variances; give one variance per estimate")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"y must be finite, got {y[~np.isfinite(y)].tolist()}")
    if not np.all(np.isfinite(v) & (v > 0)):
        bad = v[~(np.isfinite(v) & (v > 0))]
        raise ValueError(f"variances v must be positive and finite, got {bad.tolist()}")
    return y, v


def pool_fixed(y: Any, v: Any) -> tuple[float, float]:
    """Pool estimates ``y`` with variances ``v`` by their fixed-effect (inverse-variance) mean.

    Weights ``w = 1 / v``; ``mu = sum(w y) / sum(w)``, ``se = 1 / sqrt(sum(w))``.

    Parameters
    ----------
    y : array_like
        Estimates (finite).
    v : array_like
        Their sampling variances: one per estimate, positive and finite.

    Returns
    -------
    mu : float
        Pooled mean.
    se : float
        Its standard error.

    Raises
    ------
    ValueError
        An empty ``y``, lengths that differ, a value that is not finite or a
        variance that is not positive.

    See Also
    --------
    pool_dersimonian_laird : The random-effects version.
    inverse_variance : This pooling, cell by cell, on a claims table.

    Examples
    --------
    >>> from estimates.baselines import pool_fixed
    >>> mu, se = pool_fixed([0.0, 1.0], [1.0, 1.0])
    >>> float(mu), round(float(se), 4)
    (0.5, 0.7071)
    """
    y, v = _check_pool_inputs(y, v)
    w = 1.0 / v
    return float(np.sum(w * y) / np.sum(w)), float(1.0 / math.sqrt(np.sum(w)))


def pool_dersimonian_laird(y: Any, v: Any) -> tuple[float, float, float]:
    """Pool estimates by random effects, with the method of moments of DerSimonian and Laird (1986).

    With fixed-effect weights ``w = 1 / v`` and their pooled mean ``mu_F``:
    ``Q = sum(w (y - mu_F)^2)``, ``tau2 = max(0, (Q - (k - 1)) / (sum(w) -
    sum(w^2) / sum(w)))``; then weights ``1 / (v + tau2)`` give ``mu`` and
    ``se = 1 / sqrt(sum(1 / (v + tau2)))``. One estimate has ``tau2 = 0``.

    Parameters
    ----------
    y : array_like
        Estimates (finite).
    v : array_like
        Their sampling variances: one per estimate, positive and finite.

    Returns
    -------
    mu : float
        Pooled mean.
    se : float
        Its standard error.
    tau2 : float
        The between-estimate variance (0 when the estimates agree no less
        than their variances say).

    Raises
    ------
    ValueError
        An empty ``y``, lengths that differ, a value that is not finite or a
        variance that is not positive.

    See Also
    --------
    pool_fixed : The fixed-effect version (``tau2 = 0``).
    dersimonian_laird : This pooling, cell by cell, on a claims table.

    Examples
    --------
    >>> from estimates.baselines import pool_dersimonian_laird
    >>> mu, se, tau2 = pool_dersimonian_laird([0.0, 2.0], [1.0, 1.0])
    >>> float(mu), float(se), float(tau2)
    (1.0, 1.0, 1.0)
    """
    y, v = _check_pool_inputs(y, v)
    k = y.size
    w = 1.0 / v
    if k == 1:
        tau2 = 0.0
    else:
        mu_f = np.sum(w * y) / np.sum(w)
        q = float(np.sum(w * (y - mu_f) ** 2))
        c = float(np.sum(w) - np.sum(w**2) / np.sum(w))
        tau2 = max(0.0, (q - (k - 1)) / c)
    ws = 1.0 / (v + tau2)
    return float(np.sum(ws * y) / np.sum(ws)), float(1.0 / math.sqrt(np.sum(ws))), float(tau2)


# --------------------------------------------------------------------------- reading the claims


def _check_prob(prob: Any) -> float:
    if isinstance(prob, bool) or not (isinstance(prob, (int, float)) and 0 < prob < 1):
        raise OptionError(f"prob={prob!r} must be strictly between 0 and 1, e.g. 0.9")
    return float(prob)


def _cells(
    claims: ClaimsLike, hierarchy: HierarchyLike, interpretation: InterpretationLike
) -> list[tuple[tuple[Any, Any, Any], pd.DataFrame]]:
    """The level claims of each (quantity, region, time) cell, read as :func:`estimates.reconcile` reads them.

    Cells come in order of quantity and region as first seen, then time.
    """
    interp = Interpretation.from_options(interpretation)
    if hierarchy is None and isinstance(claims, pd.DataFrame):
        hierarchy = claims.attrs.get("hierarchy")
    cs = normalise(claims, hierarchy=hierarchy, interpretation=interp)
    shaped = shapes_table(cs.used, interp)
    level = shaped[~shaped["ratio"].astype(bool)]
    q_rank = {q: i for i, q in enumerate(dict.fromkeys(level["quantity"]))}
    r_rank = {r: i for i, r in enumerate(dict.fromkeys(level["region"]))}
    groups: dict[tuple[Any, Any, Any], list[int]] = {}
    for i, key in enumerate(zip(level["quantity"], level["region"], level["time_label"], strict=True)):
        groups.setdefault(key, []).append(i)
    cells = [(key, level.iloc[idx]) for key, idx in groups.items()]

    def order(item: tuple[tuple[Any, Any, Any], pd.DataFrame]) -> tuple[int, int, float]:
        (q, r, _), rows = item
        pos = float(rows["time_pos"].iloc[0])
        return q_rank[q], r_rank[r], -math.inf if math.isnan(pos) else pos

    return sorted(cells, key=order)


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=BASELINE_COLUMNS)
    out["time"] = out["time"].astype(object)
    for col in ("median", "lower", "upper"):
        out[col] = out[col].astype(float)
    out["n_claims"] = out["n_claims"].astype(int)
    return out


def _row(key: tuple[Any, Any, Any], median: float, lower: float, upper: float, n: int) -> dict[str, Any]:
    q, r, t = key
    return dict(quantity=q, region=r, time=t, median=median, lower=lower, upper=upper, n_claims=n)


def _pooled(
    claims: ClaimsLike,
    prob: Any,
    hierarchy: HierarchyLike,
    interpretation: InterpretationLike,
    pool: Callable[[np.ndarray, np.ndarray], tuple[float, ...]],
) -> pd.DataFrame:
    z = float(ndtri(0.5 + _check_prob(prob) / 2))
    rows = []
    for key, cell in _cells(claims, hierarchy, interpretation):
        normal = cell[cell["shape"] == "normal"]
        if len(normal) == 0:
            continue
        mu, se = pool(normal["a"].to_numpy(float), normal["spread"].to_numpy(float) ** 2)[:2]
        rows.append(_row(key, math.exp(mu), math.exp(mu - z * se), math.exp(mu + z * se), len(normal)))
    return _table(rows)


# --------------------------------------------------------------------------- the baselines


def midpoint(
    claims: ClaimsLike,
    *,
    prob: float = DEFAULT_PROB,
    hierarchy: HierarchyLike = None,
    interpretation: InterpretationLike = None,
) -> pd.DataFrame:
    """Average the claims' midpoints in each cell, as an analyst takes them.

    A range's midpoint is ``(low + high) / 2`` (its best value, when it gives
    one); "about X" and an exact X give ``X``; "more than X" and "up to X"
    give ``X``. The median column is their arithmetic mean; the interval is
    the smallest to the largest midpoint (a single claim gives an interval
    of width zero).

    Parameters
    ----------
    claims : DataFrame, list of dict, or path to a CSV file
        The claims table, as for :func:`estimates.reconcile`. Never modified.
    prob : float
        Accepted for a common signature with the other baselines; the
        interval is always min to max.
    hierarchy : mapping, optional
        ``{aggregate: [members]}``, to validate region names; defaults to
        ``claims.attrs["hierarchy"]``.
    interpretation : mapping or Interpretation, optional
        The reading of statements, as in :func:`estimates.reconcile`.

    Returns
    -------
    DataFrame
        ``quantity, region, time, median, lower, upper, n_claims``.

    Raises
    ------
    OptionError
        ``prob`` outside (0, 1).
    ClaimError
        A claim that cannot be read (as in :func:`estimates.reconcile`).

    See Also
    --------
    envelope : The lowest low to the highest high.

    Examples
    --------
    >>> from estimates.baselines import midpoint
    >>> claims = [{"region": "Syria", "low": 6000, "high": 8000},
    ...           {"region": "Syria", "low": 8000, "high": 16000}]
    >>> midpoint(claims)[["median", "lower", "upper", "n_claims"]].to_dict("records")
    [{'median': 9500.0, 'lower': 7000.0, 'upper': 12000.0, 'n_claims': 2}]
    """
    _check_prob(prob)
    rows = []
    for key, cell in _cells(claims, hierarchy, interpretation):
        kind = cell["kind"].to_numpy(object)
        low, high, value = (cell[c].to_numpy(float) for c in ("low", "high", "value"))
        best = np.where(np.isfinite(value), value, (low + high) / 2)  # a range's best value, if given
        mid = np.select(
            [kind == "range", kind == "at_least", kind == "at_most"],
            [best, low, high],
            default=value,  # about, exact
        )
        rows.append(_row(key, float(mid.mean()), float(mid.min()), float(mid.max()), len(mid)))
    return _table(rows)


def envelope(
    claims: ClaimsLike,
    *,
    prob: float = DEFAULT_PROB,
    hierarchy: HierarchyLike = None,
    interpretation: InterpretationLike = None,
) -> pd.DataFrame:
    """Span the claims of each cell from the lowest low to the highest high: "estimates range from A to B".

    ``lower`` is the smallest of the lows (a range's low, an at-least bound,
    a point's value); ``upper`` the largest of the highs (a range's high, an
    at-most bound, a point's value). An at-least bound that nothing states a
    number above leaves ``upper = inf``; an at-most bound with nothing below
    it leaves ``lower = 0``. ``median`` is the geometric mean of the two
    ends when both are positive and finite, NaN otherwise.

    Parameters
    ----------
    claims : DataFrame, list of dict, or path to a CSV file
        The claims table, as for :func:`estimates.reconcile`. Never modified.
    prob : float
        Accepted for a common signature with the other baselines; not used.
    hierarchy : mapping, optional
        ``{aggregate: [members]}``, as in :func:`midpoint`.
    interpretation : mapping or Interpretation, optional
        The reading of statements, as in :func:`estimates.reconcile`.

    Returns
    -------
    DataFrame
        ``quantity, region, time, median, lower, upper, n_claims``.

    Raises
    ------
    OptionError
        ``prob`` outside (0, 1).
    ClaimError
        A claim that cannot be read (as in :func:`estimates.reconcile`).

    See Also
    --------
    midpoint : The average of the claims' midpoints.

    Examples
    --------
    >>> from estimates.baselines import envelope
    >>> claims = [{"region": "Syria", "low": 6000, "high": 8000},
    ...           {"region": "Syria", "low": 8000, "high": 16000}]
    >>> envelope(claims)[["median", "lower", "upper"]].round(1).to_dict("records")
    [{'median': 9798.0, 'lower': 6000.0, 'upper': 16000.0}]
    >>> envelope([{"region": "Syria", "low": 4000}])[["lower", "upper"]].to_dict("records")
    [{'lower': 4000.0, 'upper': inf}]
    """
    _check_prob(prob)
    rows = []
    for key, cell in _cells(claims, hierarchy, interpretation):
        kind = cell["kind"].to_numpy(object)
        low, high, value = (cell[c].to_numpy(float) for c in ("low", "high", "value"))
        point = np.isin(kind, ("about", "exact"))
        lows = np.concatenate([low[np.isin(kind, ("range", "at_least"))], value[point]])
        highs = np.concatenate([high[np.isin(kind, ("range", "at_most"))], value[point]])
        lower = float(lows.min()) if lows.size else 0.0
        upper = float(highs.max()) if highs.size else math.inf
        # a bound beyond every number on the other side leaves that side open
        if np.any(low[kind == "at_least"] > upper):
            upper = math.inf
        if np.any(high[kind == "at_most"] < lower):
            lower = 0.0
        median = math.sqrt(lower * upper) if 0 < lower and math.isfinite(upper) else math.nan
        rows.append(_row(key, median, lower, upper, len(cell)))
    return _table(rows)


def inverse_variance(
    claims: ClaimsLike,
    *,
    prob: float = DEFAULT_PROB,
    hierarchy: HierarchyLike = None,
    interpretation: InterpretationLike = None,
) -> pd.DataFrame:
    """Pool the ranges and points of each cell by a fixed-effect meta-analysis on the log scale.

    Each range or point is an estimate ``y`` (log of its centre) with
    variance ``spread^2`` (``estimates.interpret.shape_of``); they are
    pooled by :func:`pool_fixed` and the interval is ``exp(mu +- z se)``,
    ``z`` the normal quantile of ``prob``. Bounds are not used: a cell with
    only bounds gets no row.

    Parameters
    ----------
    claims : DataFrame, list of dict, or path to a CSV file
        The claims table, as for :func:`estimates.reconcile`. Never modified.
    prob : float
        Probability of the interval.
    hierarchy : mapping, optional
        ``{aggregate: [members]}``, as in :func:`midpoint`.
    interpretation : mapping or Interpretation, optional
        The reading of statements, as in :func:`estimates.reconcile`.

    Returns
    -------
    DataFrame
        ``quantity, region, time, median, lower, upper, n_claims`` (claims pooled).

    Raises
    ------
    OptionError
        ``prob`` outside (0, 1).
    ClaimError
        A claim that cannot be read (as in :func:`estimates.reconcile`).

    See Also
    --------
    pool_fixed : The pooling of one cell.
    dersimonian_laird : The random-effects version.

    Examples
    --------
    >>> from estimates.baselines import inverse_variance
    >>> claims = [{"region": "A", "low": 50, "high": 200, "coverage": 0.95},
    ...           {"region": "A", "value": 100, "kind": "exact"},
    ...           {"region": "A", "low": 300}]
    >>> out = inverse_variance(claims, prob=0.95)
    >>> round(float(out["median"].iloc[0]), 6), int(out["n_claims"].iloc[0])
    (100.0, 2)
    """
    return _pooled(claims, prob, hierarchy, interpretation, pool_fixed)


def dersimonian_laird(
    claims: ClaimsLike,
    *,
    prob: float = DEFAULT_PROB,
    hierarchy: HierarchyLike = None,
    interpretation: InterpretationLike = None,
) -> pd.DataFrame:
    """Pool the ranges and points of each cell by a random-effects meta-analysis (DerSimonian and Laird 1986).

    The same estimates as :func:`inverse_variance`, pooled by
    :func:`pool_dersimonian_laird`: the spread between claims beyond what
    their stated spreads explain (``tau2``) widens every claim's variance,
    and so the interval.

    Parameters
    ----------
    claims : DataFrame, list of dict, or path to a CSV file
        The claims table, as for :func:`estimates.reconcile`. Never modified.
    prob : float
        Probability of the interval.
    hierarchy : mapping, optional
        ``{aggregate: [members]}``, as in :func:`midpoint`.
    interpretation : mapping or Interpretation, optional
        The reading of statements, as in :func:`estimates.reconcile`.

    Returns
    -------
    DataFrame
        ``quantity, region, time, median, lower, upper, n_claims`` (claims pooled).

    Raises
    ------
    OptionError
        ``prob`` outside (0, 1).
    ClaimError
        A claim that cannot be read (as in :func:`estimates.reconcile`).

    See Also
    --------
    pool_dersimonian_laird : The pooling of one cell.
    inverse_variance : The fixed-effect version.

    Examples
    --------
    >>> from estimates.baselines import dersimonian_laird, inverse_variance
    >>> claims = [{"region": "A", "low": 50, "high": 200, "coverage": 0.95},
    ...           {"region": "A", "low": 200, "high": 800, "coverage": 0.95}]
    >>> out = dersimonian_laird(claims, prob=0.95)
    >>> round(float(out["median"].iloc[0]), 6)
    200.0
    >>> bool(out["upper"].iloc[0] > inverse_variance(claims, prob=0.95)["upper"].iloc[0])
    True
    """
    return _pooled(claims, prob, hierarchy, interpretation, pool_dersimonian_laird)


#: The baselines by name; each is called as ``f(claims, prob=..., hierarchy=...)``.
BASELINES: dict[str, Callable[..., pd.DataFrame]] = {
    "midpoint": midpoint,
    "envelope": envelope,
    "inverse-variance": inverse_variance,
    "dersimonian-laird": dersimonian_laird,
}
