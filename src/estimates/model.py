"""The PyMC model (DESIGN section 5), built from normalised, interpreted claims.

Two steps, kept apart: :func:`describe` turns claims into a :class:`Structure`
of plain index arrays (cells, series, paths, claim targets); :func:`build`
opens the one ``pm.Model`` of the library from it. Nothing here samples.

Latent state, per quantity
--------------------------
Each quantity has its own periods (the times its claims mention, sorted) and
its own regions (those claimed, plus the members of claimed aggregates).
Regions form a forest: a region's *tree parent* is the first aggregate that
lists it; every tree root carries a log-total ``T[r, k]`` and every tree
aggregate splits its total among its tree children by a softmax of logits
``phi[e, k]``. A leaf's log-count is its root's total plus the log-shares
along its path. Every region's reported log-count (leaf or aggregate) is the
logsumexp of its leaves' log-counts, so aggregates are exactly sums of
leaves, also when a leaf belongs to several aggregates.

Totals and logits follow Gaussian random walks over the quantity's periods,
variance proportional to elapsed years:

- each series' level prior sits at its *pivot*, the period with most level
  claims: ``T[r, pivot] ~ Normal(m_r, root_sd)``, ``m_r`` the median log of
  the level claims on the root's subtree (weakly informative, on the data's
  scale; it describes the level as the average source states it, see below);
- ``T[r, k] - T[r, k-1] ~ Normal(0, sigma_r sqrt(dt_k))``, ``log sigma_r ~
  Normal(log sigma_q, 0.5)`` (per-region scales partially pooled around the
  quantity's), ``sigma_q ~ LogNormal(log 1.0, 0.6)``;
- ``phi[e, pivot] ~ Normal(0, 1)``, steps ``~ Normal(0, sigma_share_q
  sqrt(dt))``, ``sigma_share_q ~ LogNormal(log 0.5, 0.6)``.

Scales have boundary-avoiding log-normal priors: with a handful of sources
or periods the data cannot rule out a scale near zero, and prior mass there
is a funnel for the sampler.

The sampler's coordinates
-------------------------
What :func:`build` samples is the same model in coordinates chosen so that
the posterior is close to a standard normal whatever the scales are, each
from a rough Gaussian reading of what the claims say (how precisely they
pin each cell, bias and scale; computed once, before sampling):

- the cells of a series are whitened by the Cholesky factor of their rough
  posterior precision *at the current walk scale* (:func:`whiten_walk`):
  centred where claims pin a cell, non-centred where they say nothing, and
  in between, at every scale;
- bias contrasts are ``w / sqrt(P + 1 / tau^2)``, ``P`` what the claims say
  about each (:func:`bias_precision`): the same interpolation;
- region scales are ``z + omega log sigma_q``, partially non-centred by how
  much the claims say about each (:func:`scale_offsets`).

Each is a change of coordinates with its Jacobian: the model is the same.

Sources
-------
Bias ``delta[s]`` (log scale) ``~ Normal(0, tau_q)``, ``tau_q ~
LogNormal(log 0.3, 0.6)``: sources are a sample from a population unbiased on
average. With ``reference=``, that source's bias is 0 and the others' ``~
Normal(mu_q, tau_q)``, ``mu_q ~ Normal(0, 0.5)``. The walk describes the
level as the average source states it; the consensus level (reported) is
that minus the sources' mean bias, which removes the level-bias ridge when
one source makes every claim.

Without a reference, a quantity's ``S`` biases are parametrised as their
mean ``tau_q / sqrt(S) z`` plus ``S - 1`` orthonormal contrasts (a Helmert
basis of the vectors summing to zero): the same iid ``Normal(0, tau_q)``
prior, rotated so that the direction the data cannot see (the shared bias)
is one coordinate of its own instead of a diagonal ridge through all of
them.

Reliability ``kappa[s] = exp(softplus(a_s))``, ``a_s ~ Normal(mu_q, 0.5)``,
``mu_q ~ Normal(-1.5, 0.5)``, multiplies the stated spread of each of the
source's claims (``a_s`` is centred for a source with 10 or more claims,
whose data pin it, and non-centred otherwise). ``kappa >= 1``: a source may overstate its
precision but is never trusted beyond it (median about 1.2).

Relative claims carry no bias (a constant factor cancels in a ratio).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._deps import quiet_import
from .claims import Hierarchy
from .interpret import observed_number

#: Fixed prior settings (documented in the module docstring and docs).
PRIORS = {
    "root_sd": 2.0,  # sd of a root's first log-total around the data's median
    "no_level_mean": math.log(100.0),  # root centre when a quantity has no level claim
    "no_level_sd": 5.0,
    "logit_sd": 1.0,  # first-period share logits
    # Scales have boundary-avoiding log-normal priors (median below, log-sd
    # ``scale_log_sd``): with a handful of sources or periods the data cannot
    # rule out a scale near zero, and a prior with mass there puts the
    # sampler in a funnel.
    "walk_scale": 1.0,  # median of sigma_q (log-change per sqrt-year)
    "walk_region_sd": 0.5,  # spread of per-region walk scales around sigma_q (log)
    "share_walk_scale": 0.5,  # median of the share-logit walk scale
    "bias_scale": 0.3,  # median of the between-source bias sd (log scale)
    "scale_log_sd": 0.6,
    "bias_mean_sd": 0.5,  # with reference=: sd of the other sources' mean bias
    # log kappa_s = softplus(mu_q + reliability_sd * w_s): kappa >= 1, median
    # about 1.2 (sources tend to state intervals too narrow).
    "reliability_mean": -1.5,
    "reliability_mean_sd": 0.5,
    "reliability_sd": 0.5,
}

_PAD = -1.0e3  # finite stand-in for log(0) in padded logsumexp (never -inf)


@dataclass
class Structure:
    """Plain-data description of one model. All arrays are numpy."""

    quantities: list[str]
    # reported cells: one per (quantity, region, period)
    cells: pd.DataFrame  # quantity, region, time, time_pos, is_aggregate, q_idx
    # walk cells (totals then logits)
    n_total: int
    n_logit: int
    walk_first: np.ndarray  # bool, first cell of its series
    walk_prev: np.ndarray  # index of previous cell (self for first)
    walk_pivot: np.ndarray  # index of the cell of its series that carries the level prior
    walk_sqrt_dt: np.ndarray
    walk_prior_mean: np.ndarray
    walk_prior_sd: np.ndarray
    walk_scale_idx: np.ndarray  # index into concatenated [sigma_root..., sigma_share_q...]
    walk_quantities: np.ndarray  # quantity indices with more than one period
    walk_root_quantity: np.ndarray  # for each root of a walk quantity: position in walk_quantities
    share_quantity: np.ndarray  # quantity indices having share walks (one sigma each)
    has_walk: bool
    # log-shares
    sibling_groups: np.ndarray  # (n_groups, max_sib) logit-cell indices, padded with 0
    sibling_mask: np.ndarray
    logit_group: np.ndarray  # group of each logit cell
    # leaf cells
    n_leaf: int
    leaf_root_cell: np.ndarray  # total-cell index of each leaf cell
    leaf_quantity: np.ndarray  # quantity index of each leaf cell
    leaf_paths: np.ndarray  # (n_leaf, depth) logit-cell index or n_logit (pad -> 0 share)
    # reported cells from leaf cells
    cell_members: np.ndarray  # (n_cells, max_leaves) leaf-cell indices, padded
    cell_mask: np.ndarray
    # sources
    sources: pd.DataFrame  # quantity, source, q_idx, is_reference, n_claims
    # claims
    claim_time_cell: np.ndarray
    claim_since_cell: np.ndarray
    claim_ratio: np.ndarray
    claim_source: np.ndarray
    claim_shape: np.ndarray
    claim_kind: np.ndarray
    claim_a: np.ndarray
    claim_b: np.ndarray
    claim_spread: np.ndarray
    claim_row: np.ndarray
    robust: bool
    robust_weight: float
    robust_sd: float
    reference: str | None
    notes: list[str] = field(default_factory=list)


def _padded(groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(g) for g in groups), default=0)
    width = max(width, 1)
    idx = np.zeros((len(groups), width), dtype=np.int64)
    mask = np.zeros((len(groups), width), dtype=bool)
    for i, g in enumerate(groups):
        idx[i, : len(g)] = g
        mask[i, : len(g)] = True
    return idx, mask


def describe(
    claims: pd.DataFrame,
    hierarchy: Hierarchy,
    *,
    reference: str | None = None,
    robust: bool = False,
    robust_weight: float = 0.05,
    robust_sd: float = 1.5,
) -> Structure:
    """Describe the model for interpreted claims (output of ``interpret.shapes_table``).

    Raises
    ------
    OptionError
        If ``reference`` names no source in the claims.
    """
    from .errors import OptionError

    quantities = list(dict.fromkeys(claims["quantity"]))
    if reference is not None and reference not in set(claims["source"]):
        raise OptionError(
            f"reference={reference!r} is not a source of any claim; sources are: "
            f"{', '.join(sorted(set(claims['source'])))}"
        )
    notes: list[str] = []
    agg_order = list(hierarchy.members)

    cell_rows: list[dict[str, Any]] = []
    cell_index: dict[tuple[str, str, Any], int] = {}
    walk: dict[str, list[Any]] = {k: [] for k in ("first", "prev", "pivot", "sqrt_dt", "mean", "sd", "scale")}
    total_cell: dict[tuple[int, str, int], int] = {}
    logit_cell: dict[tuple[int, str, int], int] = {}  # (q, child, k)
    leaf_cells: list[tuple[int, str, int]] = []
    leaf_info: list[tuple[int, list[int]]] = []  # (root total cell, path logit cells)
    groups: list[list[int]] = []
    group_of: dict[int, int] = {}
    cell_members: list[list[int]] = []
    walk_quantities: list[int] = []
    walk_root_quantity: list[int] = []
    share_quantity: list[int] = []

    src_rows: list[dict[str, Any]] = []
    src_index: dict[tuple[str, str], int] = {}

    # First pass: the regions, trees and periods of each quantity.
    plans = [_plan_quantity(claims[claims["quantity"] == q], hierarchy, agg_order) for q in quantities]

    # Second pass: root-total series (all before any logit series).
    for qi, qp in enumerate(plans):
        q = quantities[qi]
        level = qp.claims[~qp.claims["ratio"].astype(bool)]
        q_logs = np.log(_level_numbers(level))
        if not len(q_logs):
            notes.append(f"quantity {q!r} has no level claim (only relative ones): its levels come from the prior")
        if qp.n_periods > 1:
            walk_quantities.append(qi)
        for r in qp.roots:
            sid = 0  # single-period series never use their scale
            if qp.n_periods > 1:
                sid = len(walk_root_quantity)
                walk_root_quantity.append(len(walk_quantities) - 1)
            sub = set(qp.subtree(r))
            logs = np.log(_level_numbers(level[level["region"].isin(sub)]))
            if len(logs):
                m, sd = float(np.median(logs)), PRIORS["root_sd"]
            elif len(q_logs):
                m, sd = float(np.median(q_logs)), PRIORS["root_sd"]
            else:
                m, sd = PRIORS["no_level_mean"], PRIORS["no_level_sd"]
            first = _append_series(walk, qp, m, sd, sid, qp.plan(sub))
            for k in range(qp.n_periods):
                total_cell[(qi, r, k)] = first + k

    n_total = len(walk["first"])
    n_walk_roots = len(walk_root_quantity)
    # Third pass: share logits, leaves, reported cells and sources.
    for qi, qp in enumerate(plans):
        cq, children, kq, labels = qp.claims, qp.children, qp.n_periods, qp.labels
        sidx = 0
        if kq > 1 and children:
            share_quantity.append(qi)
            sidx = n_walk_roots + len(share_quantity) - 1
        for kids in children.values():
            for c in kids:
                first = _append_series(walk, qp, 0.0, PRIORS["logit_sd"], sidx, qp.plan(set(qp.subtree(c))))
                for k in range(kq):
                    logit_cell[(qi, c, k)] = first + k - n_total
        # sibling groups
        for kids in children.values():
            for k in range(kq):
                g = [logit_cell[(qi, c, k)] for c in kids]
                gid = len(groups)
                groups.append(g)
                for cidx in g:
                    group_of[cidx] = gid
        # leaf cells
        root_of: dict[str, str] = {}
        for r in qp.roots:
            for leaf in qp.subtree_leaves(r):
                root_of[leaf] = r
        leaf_cell_index: dict[tuple[str, int], int] = {}
        for leaf in qp.leaves:
            r = root_of[leaf]
            path: list[str] = []
            node = leaf
            while node in qp.parent:
                path.append(node)
                node = qp.parent[node]
            for k in range(kq):
                leaf_cell_index[(leaf, k)] = len(leaf_cells)
                leaf_cells.append((qi, leaf, k))
                leaf_info.append((total_cell[(qi, r, k)], [logit_cell[(qi, c, k)] for c in path]))
        # reported cells
        q = quantities[qi]
        for region in qp.regions:
            is_agg = hierarchy.is_aggregate(region)
            region_leaves = hierarchy.leaves(region) if is_agg else (region,)
            for k in range(kq):
                cell_index[(q, region, labels[k])] = len(cell_rows)
                cell_rows.append(
                    dict(
                        quantity=q,
                        region=region,
                        time=labels[k],
                        time_pos=float(qp.positions[k]),
                        is_aggregate=is_agg,
                        q_idx=qi,
                    )
                )
                cell_members.append([leaf_cell_index[(lf, k)] for lf in region_leaves])
        # sources of this quantity
        srcs = list(dict.fromkeys(cq["source"]))
        for s in srcs:
            src_index[(q, s)] = len(src_rows)
            src_rows.append(
                dict(
                    quantity=q,
                    source=s,
                    q_idx=qi,
                    is_reference=(s == reference),
                    n_claims=int((cq["source"] == s).sum()),
                )
            )

    n_logit = len(walk["first"]) - n_total
    depth = max((len(p) for _, p in leaf_info), default=0)
    leaf_paths = np.full((len(leaf_info), max(depth, 1)), n_logit, dtype=np.int64)
    for i, (_, p) in enumerate(leaf_info):
        leaf_paths[i, : len(p)] = p
    sib_idx, sib_mask = _padded(groups)
    mem_idx, mem_mask = _padded(cell_members)

    # claims
    c_time = np.array(
        [
            cell_index[(q, r, t)]
            for q, r, t in zip(claims["quantity"], claims["region"], claims["time_label"], strict=True)
        ],
        dtype=np.int64,
    )
    c_since = np.array(
        [
            cell_index[(q, r, s)] if ratio else cell_index[(q, r, t)]
            for q, r, t, s, ratio in zip(
                claims["quantity"],
                claims["region"],
                claims["time_label"],
                claims["since_label"],
                claims["ratio"],
                strict=True,
            )
        ],
        dtype=np.int64,
    )
    c_src = np.array(
        [src_index[(q, s)] for q, s in zip(claims["quantity"], claims["source"], strict=True)], dtype=np.int64
    )

    has_walk = any(not f for f in walk["first"])
    return Structure(
        quantities=quantities,
        cells=pd.DataFrame(cell_rows),
        n_total=n_total,
        n_logit=n_logit,
        walk_first=np.array(walk["first"], dtype=bool),
        walk_prev=np.array(walk["prev"], dtype=np.int64),
        walk_pivot=np.array(walk["pivot"], dtype=np.int64),
        walk_sqrt_dt=np.array(walk["sqrt_dt"], dtype=float),
        walk_prior_mean=np.array(walk["mean"], dtype=float),
        walk_prior_sd=np.array(walk["sd"], dtype=float),
        walk_scale_idx=np.array(walk["scale"], dtype=np.int64),
        walk_quantities=np.array(walk_quantities, dtype=np.int64),
        walk_root_quantity=np.array(walk_root_quantity, dtype=np.int64),
        share_quantity=np.array(share_quantity, dtype=np.int64),
        has_walk=has_walk,
        sibling_groups=sib_idx,
        sibling_mask=sib_mask,
        logit_group=np.array([group_of[i] for i in range(n_logit)], dtype=np.int64),
        n_leaf=len(leaf_cells),
        leaf_root_cell=np.array([r for r, _ in leaf_info], dtype=np.int64),
        leaf_quantity=np.array([q for q, _, _ in leaf_cells], dtype=np.int64),
        leaf_paths=leaf_paths,
        cell_members=mem_idx,
        cell_mask=mem_mask,
        sources=pd.DataFrame(src_rows),
        claim_time_cell=c_time,
        claim_since_cell=c_since,
        claim_ratio=claims["ratio"].to_numpy(dtype=bool),
        claim_source=c_src,
        claim_shape=claims["shape"].to_numpy(dtype=object),
        claim_kind=claims["kind"].to_numpy(dtype=object),
        claim_a=claims["a"].to_numpy(dtype=float),
        claim_b=claims["b"].to_numpy(dtype=float),
        claim_spread=claims["spread"].to_numpy(dtype=float),
        claim_row=claims["row"].to_numpy(dtype=np.int64),
        robust=robust,
        robust_weight=robust_weight,
        robust_sd=robust_sd,
        reference=reference,
        notes=notes,
    )


@dataclass
class _QuantityPlan:
    """Regions, tree and periods of one quantity (an intermediate of :func:`describe`)."""

    claims: pd.DataFrame
    regions: list[str]  # reported regions, in order
    leaves: list[str]
    parent: dict[str, str]  # tree parent of each non-root tree node
    children: dict[str, list[str]]  # tree children of each tree aggregate
    roots: list[str]
    labels: list[Any]  # period labels, in time order
    positions: np.ndarray  # period midpoints, decimal years
    sqrt_dt: np.ndarray  # sqrt of elapsed years into each period (0 for the first)
    plan: Any  # nodes -> pivot, see _series_planner

    @property
    def n_periods(self) -> int:
        return len(self.labels)

    def subtree(self, r: str) -> list[str]:
        return _subtree(self.children, r)

    def subtree_leaves(self, r: str) -> list[str]:
        return _subtree_leaves(self.children, r)


def _plan_quantity(cq: pd.DataFrame, hierarchy: Hierarchy, agg_order: list[str]) -> _QuantityPlan:
    """Regions, forest and periods of one quantity's claims."""
    claimed = list(dict.fromkeys(cq["region"]))
    regions = list(claimed)
    for r in claimed:
        for d in hierarchy.descendants(r):
            if d not in regions:
                regions.append(d)
    rset = set(regions)
    # a region's tree parent is the first aggregate listing it
    parent: dict[str, str] = {}
    for agg in agg_order:
        if agg in rset:
            for m in hierarchy.members[agg]:
                if m in rset and m not in parent:
                    parent[m] = agg
    # aggregates left with no tree children are pure sums, not tree nodes
    while True:
        has_kids = set(parent.values())
        dead = [c for c in parent if hierarchy.is_aggregate(c) and c not in has_kids]
        if not dead:
            break
        for c in dead:
            del parent[c]
    children: dict[str, list[str]] = {}
    for c in regions:
        if c in parent:
            children.setdefault(parent[c], []).append(c)
    roots = [r for r in regions if r not in parent and (not hierarchy.is_aggregate(r) or r in children)]
    leaves = [r for r in regions if not hierarchy.is_aggregate(r)]
    # aggregates not claimed but made only of modelled leaves are reported too
    for agg in agg_order:
        if agg not in rset and set(hierarchy.leaves(agg)) <= set(leaves):
            regions.append(agg)
    times: dict[Any, float] = {}
    for lab, pos in zip(cq["time_label"], cq["time_pos"], strict=True):
        times.setdefault(lab, pos)
    for lab, pos, ratio in zip(cq["since_label"], cq["since_pos"], cq["ratio"], strict=True):
        if ratio:
            times.setdefault(lab, pos)
    periods = sorted(times.items(), key=lambda kv: (kv[1], str(kv[0]))) or [(None, 0.0)]
    labels = [p[0] for p in periods]
    positions = np.array([p[1] for p in periods], dtype=float)
    dt = np.maximum(np.diff(positions), 1.0 / 365.2425)  # same-day periods: one day apart
    return _QuantityPlan(
        claims=cq,
        regions=regions,
        leaves=leaves,
        parent=parent,
        children=children,
        roots=roots,
        labels=labels,
        positions=positions,
        sqrt_dt=np.concatenate([[0.0], np.sqrt(dt)]),
        plan=_series_planner(cq, labels, len(labels)),
    )


def _append_series(
    walk: dict[str, list[Any]], qp: _QuantityPlan, mean: float, sd: float, scale: int, pivot: int
) -> int:
    """Append one walk series (one cell per period); return its first cell's index."""
    first = len(walk["first"])
    for k in range(qp.n_periods):
        walk["first"].append(k == 0)
        walk["prev"].append(first + max(k - 1, 0))
        walk["pivot"].append(first + pivot)
        walk["sqrt_dt"].append(float(qp.sqrt_dt[k]))
        walk["mean"].append(mean if k == 0 else 0.0)
        walk["sd"].append(sd if k == 0 else 0.0)
        walk["scale"].append(scale)
    return first


def _subtree(children: dict[str, list[str]], r: str) -> list[str]:
    """``r`` and every tree node below it."""
    out = [r]
    for c in children.get(r, []):
        out.extend(_subtree(children, c))
    return out


def _subtree_leaves(children: dict[str, list[str]], r: str) -> list[str]:
    """The tree leaves below ``r`` (``r`` itself if it has no tree children)."""
    return [n for n in _subtree(children, r) if n not in children]


def _series_planner(cq: pd.DataFrame, labels: list[Any], kq: int):  # noqa: ANN202
    """Return ``plan(nodes) -> pivot`` for the series of a subtree.

    The pivot is the period with most level claims on the subtree (latest on
    ties): the series' level prior sits there, where the data say most
    about the level.
    """
    pos = {lab: k for k, lab in enumerate(labels)}
    regions = cq["region"].to_numpy(object)
    ratio = cq["ratio"].to_numpy(bool)
    t_k = np.array([pos[t] for t in cq["time_label"]], dtype=np.int64)

    def plan(nodes: set[str]) -> int:
        mine = np.array([r in nodes for r in regions], dtype=bool)
        lev = np.bincount(t_k[mine & ~ratio], minlength=kq)
        return int(kq - 1 - np.argmax(lev[::-1])) if lev.any() else kq - 1

    return plan


def _level_numbers(level: pd.DataFrame) -> np.ndarray:
    """One representative positive number per level claim (for prior centres)."""
    if len(level) == 0:
        return np.zeros(0)
    lo = level["low"].to_numpy(float)
    hi = level["high"].to_numpy(float)
    v = level["value"].to_numpy(float)
    out = np.where(
        np.isfinite(v),
        v,
        np.where(np.isfinite(lo) & np.isfinite(hi), np.sqrt(lo * hi), np.where(np.isfinite(lo), lo, hi)),
    )
    return out[np.isfinite(out) & (out > 0)]


# --------------------------------------------------------------------------- pytensor pieces


def log_ndtr(z):  # noqa: ANN001, ANN201 - pytensor in, pytensor out
    """Branch-safe log of the standard normal CDF (pytensor).

    Uses ``log(erfc(-z/sqrt 2)/2)`` down to ``z = -20`` (accurate there in
    double precision) and the asymptotic series below; each branch sees only
    inputs it handles, so gradients stay finite everywhere.
    """
    import pytensor.tensor as pt

    cut = -20.0
    z_hi = pt.maximum(z, cut)
    hi = pt.log(0.5 * pt.erfc(-z_hi / math.sqrt(2.0)))
    z_lo = pt.minimum(z, cut)
    r = 1.0 / (z_lo * z_lo)
    lo = (
        -0.5 * z_lo * z_lo
        - pt.log(-z_lo)
        - 0.5 * math.log(2 * math.pi)
        + pt.log1p(r * (-1.0 + r * (3.0 + r * (-15.0 + 105.0 * r))))
    )
    return pt.switch(z >= cut, hi, lo)


def log_box(y, a, b, s):  # noqa: ANN001, ANN201
    """``log([Phi((y-a)/s) - Phi((y-b)/s)] / (b-a))``, stable and branch-safe (pytensor).

    With ``u = (y-a)/s > v = (y-b)/s``: ``Phi(u) - Phi(v) = Phi(-v) - Phi(-u)``,
    so the pair is flipped to ``p > q`` with ``p + q <= 0`` (``q`` the far
    tail) and the difference taken as ``log Phi(p) + log1mexp(log Phi(q) -
    log Phi(p))``: two log-Phi evaluations, accurate in both tails (the
    flipped pair never has both values near 1) and when straddling zero.
    """
    import pytensor.tensor as pt

    return _flipped_box(y, a, b, s, where=pt.switch, lndtr=log_ndtr, log=pt.log, expm1=pt.expm1)


def _flipped_box(y, a, b, s, *, where, lndtr, log, expm1):  # noqa: ANN001, ANN202
    """The arithmetic of :func:`log_box`, for pytensor and for numpy."""
    u = (y - a) / s
    v = (y - b) / s
    flip = (u + v) > 0.0
    p = where(flip, -v, u)
    q = where(flip, -u, v)
    lp = lndtr(p)
    return lp + log(-expm1(lndtr(q) - lp)) - log(b - a)


def _segment_lse(x, idx: np.ndarray, mask: np.ndarray):  # noqa: ANN001, ANN202
    """Row-wise logsumexp of ``x[idx]`` over ``mask`` (padded, no -inf anywhere)."""
    import pytensor.tensor as pt

    vals = pt.switch(mask, x[idx], _PAD)
    m = pt.max(vals, axis=1, keepdims=True)
    return m[:, 0] + pt.log(pt.sum(pt.exp(vals - m), axis=1))


#: Claim shapes, in the order of their index arrays in the model's data.
SHAPES = ("normal", "box", "lower", "upper")

#: The arrays of :func:`model_data` that are swapped between calls: packed
#: into one ``pm.Data`` vector, ``numbers`` (:func:`pack_numbers`), which the
#: graph slices at constant offsets. The rest (index arrays: the layout of
#: cells, series, sources and claims) are constants of the compiled graph.
#: Numba took 4-6x longer to compile the same graph with symbolic indices
#: (46-76 s against 11 s on the article example), so a new layout is worth a
#: new compile but a new set of numbers is not. One vector rather than one
#: container per array: nutpie's compiled wrapper unpacks each shared array
#: separately, and the nine took 2.2 s of every compile (11.0 s against
#: 8.8 s for the article model, warm on-disk cache).
NUMBERS = (
    "walk_sqrt_dt",
    "walk_mean0",
    "walk_sd0",
    "walk_whiten",
    "claim_a",
    "claim_b",
    "claim_spread",
    "claim_observed",
    "claim_weight",
    "robust",
    "bias_precision",
    "scale_omega",
)


def model_data(st: Structure, claim_weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every number the model reads, as named arrays (the model's ``pm.Data``).

    Two structures with the same :func:`signature` differ only in the arrays
    named in :data:`NUMBERS`, so one compiled model serves both: the sampler
    swaps those in. ``claim_weight`` (one per claim, default all 1) scales
    each claim's log-likelihood (0 leaves it out) and what the sampler's
    coordinates assume each claim says (the walk's whitening, the biases'
    precisions), so a refit without a claim is parametrised for the data
    it sees.
    """
    weight = None if claim_weight is None else np.asarray(claim_weight, dtype=float)
    starts = _series_start(st.walk_first)
    q_of_src = st.sources["q_idx"].to_numpy(np.int64) if len(st.sources) else np.zeros(0, np.int64)
    is_ref = st.sources["is_reference"].to_numpy(bool) if len(st.sources) else np.zeros(0, bool)
    n_q, n_src = len(st.quantities), len(st.sources)
    ref_q = np.zeros(n_q, dtype=bool)
    if st.reference is not None:
        ref_q[q_of_src[is_ref]] = True
    bias = _bias_layout(st)
    bias_prec = bias_precision(st, bias, weight)
    rel_ce = _reliability_centred(st)
    weights = np.zeros((n_q, n_src))
    weights[q_of_src, np.arange(n_src)] = 1.0
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
    weights[ref_q] = 0.0
    mean0 = st.walk_prior_mean[starts]
    sd0 = st.walk_prior_sd[starts]
    block, pos, n_blocks, size = _whitening_layout(st)
    obs = observed_number(st.claim_shape, st.claim_kind, st.claim_a, st.claim_b)
    data = {
        "walk_not_first": (~st.walk_first).astype(float),
        "walk_sqrt_dt": st.walk_sqrt_dt.astype(float),
        "walk_scale_idx": st.walk_scale_idx,
        "walk_root_quantity": st.walk_root_quantity,
        "walk_pivot": st.walk_pivot,
        "walk_prev": st.walk_prev,
        "walk_mean0": mean0,
        "walk_sd0": sd0,
        "whiten_block": block,
        "whiten_pos": pos,
        "walk_whiten": _walk_precision_terms(st, block, pos, n_blocks, size, sd0, weight).ravel(),
        "whiten_scale": _whitening_scale(st, block, n_blocks),
        "sibling_groups": st.sibling_groups,
        "sibling_mask": st.sibling_mask.astype(float),
        "logit_group": st.logit_group,
        "leaf_root_cell": st.leaf_root_cell,
        "leaf_paths": st.leaf_paths,
        "leaf_quantity": st.leaf_quantity,
        "cell_members": st.cell_members,
        "cell_mask": st.cell_mask.astype(float),
        "src_quantity": q_of_src,
        "src_ref_centre": ref_q[q_of_src].astype(float),
        "src_weights": weights,
        **bias,
        "bias_precision": bias_prec,
        "rel_nc": np.flatnonzero(~rel_ce),
        "rel_ce": np.flatnonzero(rel_ce),
        "claim_time_cell": st.claim_time_cell,
        "claim_since_cell": st.claim_since_cell,
        "claim_ratio": st.claim_ratio.astype(float),
        "claim_source": st.claim_source,
        "claim_a": np.nan_to_num(st.claim_a.astype(float), nan=0.0, posinf=0.0, neginf=0.0),
        "claim_b": np.nan_to_num(st.claim_b.astype(float), nan=0.0, posinf=0.0, neginf=0.0),
        "claim_spread": st.claim_spread.astype(float),
        "claim_observed": np.nan_to_num(obs.astype(float)),
        # 1 for every claim; 0 leaves a claim out (exact leave-one-out and
        # drop-a-source refits reuse the compiled model this way)
        "claim_weight": np.ones(len(st.claim_row)) if weight is None else weight,
        "robust": np.array([float(st.robust_weight), float(st.robust_sd)]),  # weight, sd
    }
    for name in SHAPES:
        data[f"claims_{name}"] = np.flatnonzero(st.claim_shape == name)
    data["scale_omega"] = scale_offsets(st, data)
    return {k: np.ascontiguousarray(v) for k, v in data.items()}


def shape_codes(data: dict[str, np.ndarray]) -> np.ndarray:
    """Each claim's shape as its index in :data:`SHAPES`, from :func:`model_data`'s ``claims_<shape>`` arrays."""
    code = np.zeros(len(data["claim_weight"]), dtype=np.int64)
    for k, name in enumerate(SHAPES):
        code[data[f"claims_{name}"]] = k
    return code


def model_coords(st: Structure) -> dict[str, Any]:
    """The model's coordinates: quantities by name, cells and sources by position."""
    return {"quantity": st.quantities, "cell": np.arange(len(st.cells)), "source": np.arange(len(st.sources))}


def pack_numbers(data: dict[str, np.ndarray]) -> np.ndarray:
    """The arrays of :data:`NUMBERS` in ``data`` (from :func:`model_data`), flattened into one vector.

    In the order of :data:`NUMBERS`; :func:`build` slices them back out at
    the same offsets, so the vector of one structure fits the compiled model
    of any other with the same :func:`signature`.
    """
    return np.concatenate([np.ravel(data[k]).astype(float) for k in NUMBERS])


def set_numbers(model, data: dict[str, np.ndarray]) -> None:  # noqa: ANN001 - a pm.Model
    """Put ``data``'s numbers (:func:`model_data`, possibly changed) into a model from :func:`build`."""
    pm = quiet_import("pymc")
    pm.set_data({"numbers": pack_numbers(data)}, model=model)


#: Walk series are whitened in blocks of at most this many cells (see :func:`whiten_walk`); a step
#: between two blocks is whitened as if its earlier cell were known. The whitening costs time linear in
#: a block's length (a dense block in PyTensor's graph, quadratic in memory).
WHITEN_BLOCK = 128


def _whitening_layout(st: Structure) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Block and position in its block of every walk cell; the number and size of blocks.

    Each series (its cells are contiguous and in time order) is cut into
    runs of at most :data:`WHITEN_BLOCK` cells.
    """
    ce = np.arange(len(st.walk_first))
    if not len(ce):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0
    first = st.walk_first
    if not np.array_equal(st.walk_prev[~first], ce[~first] - 1):
        raise RuntimeError("internal: a walk series is not contiguous")
    at = ce - _series_start(st.walk_first)
    keys = np.stack([_series_start(st.walk_first), at // WHITEN_BLOCK], axis=1)
    _, block = np.unique(keys, axis=0, return_inverse=True)
    pos = at % WHITEN_BLOCK
    return block.astype(np.int64).ravel(), pos.astype(np.int64), int(block.max()) + 1, int(pos.max()) + 1


def _pinned_walk_cell(st: Structure, cells: np.ndarray) -> np.ndarray:
    """The walk cell a level claim on each reported cell mostly pins, or -1.

    A single leaf's cell pins its series' total (for a leaf inside a tree,
    the total plus its log-share; counted on the total); a cell that sums
    every leaf of one tree root at one period pins that root's total
    (its shares sum to one). Other sums pin no one cell.
    """
    mask = st.cell_mask[cells]
    roots = np.where(mask, st.leaf_root_cell[st.cell_members[cells]], -1)
    first = roots[:, 0]
    same = np.all((roots == first[:, None]) | ~mask, axis=1)
    leaves_of = np.bincount(st.leaf_root_cell, minlength=len(st.walk_first))
    n = mask.sum(axis=1)
    return np.where((n == 1) | (same & (n == leaves_of[first])), first, -1)


def typical_reliability() -> float:
    """The reliability's prior median, ``exp(softplus(reliability_mean))`` (about 1.22)."""
    return math.exp(math.log1p(math.exp(PRIORS["reliability_mean"])))


def _rough_precision(st: Structure, ok: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """1 / variance of each claim in ``ok`` on its log target, roughly (for parametrising only), times its weight.

    A point is ``1 / s^2``, a range its softness plus a uniform box, a bound
    a third of a point (it pins one side only), ``s`` the stated spread
    times the reliability's prior median (:func:`typical_reliability`).
    ``weight`` is the claims' ``claim_weight`` (0: left out, as in a
    leave-one-out refit; None: all 1).
    """
    w = np.ones(int(np.count_nonzero(ok))) if weight is None else np.asarray(weight, float)[ok]
    s2 = (st.claim_spread[ok].astype(float) * typical_reliability()) ** 2
    shape = st.claim_shape[ok]
    box = shape == "box"
    half = np.zeros(len(s2))
    half[box] = (st.claim_b[ok][box] - st.claim_a[ok][box]).astype(float) / 2.0
    return w * np.where(shape == "normal", 1.0 / s2, np.where(box, 1.0 / (s2 + half**2 / 3.0), 0.3 / s2))


def _share_links(st: Structure, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For claims on single leaves inside a tree: the logit cells on each leaf's path, and how much reaches each.

    A leaf's log count is its root's total plus ``lambda_c - lse(siblings)``
    along its path, whose derivative in ``lambda_c`` is ``1 - share_c``:
    at equal shares among ``K`` siblings, a claim of precision ``p`` pins
    the logit with about ``p (1 - 1/K)^2``. Returns ``(walk cell, factor)``,
    each of shape (len(cells), depth); factor 0 where a path is shorter
    or the cell is not a single leaf.
    """
    if not st.n_logit:
        z = np.zeros((len(cells), 1))
        return z.astype(np.int64), z
    single = st.cell_mask[cells].sum(axis=1) == 1
    paths = st.leaf_paths[st.cell_members[cells, 0]]
    real = (paths < st.n_logit) & single[:, None]
    j = np.minimum(paths, st.n_logit - 1)
    k = st.sibling_mask.sum(axis=1)[st.logit_group[j]]
    return st.n_total + j, np.where(real, (1.0 - 1.0 / np.maximum(k, 1)) ** 2, 0.0)


def _claim_precision(st: Structure, weight: np.ndarray | None = None) -> np.ndarray:
    """Roughly how precisely the level claims pin each walk cell: the sum of 1 / variance of those on it.

    Claims whose cell pins one walk total (:func:`_pinned_walk_cell`) count
    there, each with :func:`_rough_precision`, and a claim on a leaf inside
    a tree also on the share logits of its path (:func:`_share_links`);
    ratios are :func:`_ratio_precision`'s.
    """
    prec = np.zeros(len(st.walk_first))
    if not len(st.claim_row):
        return prec
    level = ~st.claim_ratio.astype(bool)
    cell = _pinned_walk_cell(st, st.claim_time_cell)
    ok = level & (cell >= 0)
    np.add.at(prec, cell[ok], _rough_precision(st, ok, weight))
    logit, factor = _share_links(st, st.claim_time_cell[level])
    p = _rough_precision(st, level, weight)[:, None] * factor
    np.add.at(prec, logit[p > 0], p[p > 0])
    return prec


def _ratio_precision(st: Structure, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratio claims as pairs of walk cells of one series: the earlier cell, the later one and a rough precision.

    A ratio pins the difference of the two: of the totals where each cell
    pins one (:func:`_pinned_walk_cell`), and of the share logits of a
    leaf inside a tree (:func:`_share_links`).
    """
    if not len(st.claim_row):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    ratio = st.claim_ratio.astype(bool)
    since = _pinned_walk_cell(st, st.claim_since_cell)
    time = _pinned_walk_cell(st, st.claim_time_cell)
    starts = _series_start(st.walk_first)
    ok = ratio & (since >= 0) & (time >= 0) & (since != time)
    ok &= starts[np.maximum(since, 0)] == starts[np.maximum(time, 0)]
    lo, hi, p = [np.minimum(since, time)[ok]], [np.maximum(since, time)[ok]], [_rough_precision(st, ok, weight)]
    l_since, f = _share_links(st, st.claim_since_cell[ratio])
    l_time, _ = _share_links(st, st.claim_time_cell[ratio])
    pl = _rough_precision(st, ratio, weight)[:, None] * f
    keep = (pl > 0) & (l_since != l_time)
    lo.append(np.minimum(l_since, l_time)[keep])
    hi.append(np.maximum(l_since, l_time)[keep])
    p.append(pl[keep])
    return np.concatenate(lo), np.concatenate(hi), np.concatenate(p)


#: Rows of :func:`_walk_precision_terms` (the model's ``walk_whiten`` numbers).
WHITEN_TERMS = 4


def _walk_precision_terms(
    st: Structure,
    block: np.ndarray,
    pos: np.ndarray,
    n_blocks: int,
    size: int,
    sd0: np.ndarray,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Per block of a series, roughly the posterior precision of its cells, as four terms.

    The precision of a block at walk scale ``sigma`` (``tau = 1 / sigma^2``)
    is tridiagonal: ``a_p + tau * (f_{p-1} + f_p + c_p) + g_{p-1} + g_p`` on
    the diagonal and ``-(tau * f_p + g_p)`` between positions ``p`` and
    ``p + 1``. ``a`` holds the level claims' precisions
    (:func:`_claim_precision`, plus 1e-6) and the level prior at the
    series' pivot; ``f_p`` is ``1 / dt`` of the walk's step from position
    ``p`` to ``p + 1``; ``c_p`` that of a step between ``p`` and a cell in
    the next or previous block (it only adds to the diagonal); ``g_p`` the
    precision of ratio claims across the step from ``p`` to ``p + 1``
    (:func:`_ratio_precision`; one across a block's edge adds to both
    diagonals, like ``c``; one across more than one step is left out).
    Ratios pin a step whatever the walk's scale, which is why they are a
    term of their own: counted as steps of the walk, a series whose only
    data on a step is a ratio ("more than doubled") was whitened as if its
    scale pinned it, and its coordinates then moved with the scale, a
    funnel. Positions a short block does not use get ``a = 1`` and no
    steps. Returns shape (4, n_blocks, size): ``a``, ``f``, ``c``, ``g``.
    """
    ce = np.arange(len(st.walk_first))
    a = np.ones((n_blocks, size))
    f = np.zeros((n_blocks, size))
    c = np.zeros((n_blocks, size))
    g = np.zeros((n_blocks, size))
    a[block, pos] = _claim_precision(st, weight)[ce] + 1e-6
    pivot = np.isin(ce, st.walk_pivot[ce])
    np.add.at(a, (block[pivot], pos[pivot]), 1.0 / sd0[ce][pivot] ** 2)
    step = ~st.walk_first[ce]
    k = 1.0 / np.where(step, st.walk_sqrt_dt[ce], 1.0).astype(float) ** 2
    prev = np.searchsorted(ce, st.walk_prev[ce])  # the previous cell's place in ce (same series)
    inside = step & (block[prev] == block)
    f[block[prev[inside]], pos[prev[inside]]] = k[inside]
    cut = step & ~inside  # the step into a block from the one before it
    np.add.at(c, (block[cut], pos[cut]), k[cut])
    np.add.at(c, (block[prev[cut]], pos[prev[cut]]), k[cut])
    lo, hi, p = _ratio_precision(st, weight)
    where = np.full(len(st.walk_first), -1)
    where[ce] = np.arange(len(ce))
    i, j = where[lo], where[hi]
    one = (i >= 0) & (j >= 0) & (hi == lo + 1)  # across one step of a series
    i, j, p = i[one], j[one], p[one]
    same = block[i] == block[j]
    np.add.at(g, (block[i[same]], pos[i[same]]), p[same])
    np.add.at(a, (block[i[~same]], pos[i[~same]]), p[~same])
    np.add.at(a, (block[j[~same]], pos[j[~same]]), p[~same])
    return np.stack([a, f, c, g])


def _whitening_scale(st: Structure, block: np.ndarray, n_blocks: int) -> np.ndarray:
    """Per block, the index of its series' walk scale (``walk_scale_idx``; 0 for a block without steps)."""
    ce = np.arange(len(st.walk_first))
    step = ~st.walk_first[ce]
    out = np.zeros(n_blocks, dtype=np.int64)
    out[block[step]] = st.walk_scale_idx[ce][step]
    if np.any(out[block[step]] != st.walk_scale_idx[ce][step]):
        raise RuntimeError("internal: the steps of one whitened block have different walk scales")
    return out


def walk_precision(terms: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """The blocks' precision matrices at ``tau = 1 / sigma^2`` per block, dense (for tests and checks)."""
    a, f, c, g = terms
    n_blocks, size = a.shape
    tau = np.asarray(tau, float)[:, None]
    q = np.zeros((n_blocks, size, size))
    h = tau * f + g  # each step's precision, by the walk and by ratio claims
    below = np.concatenate([np.zeros((n_blocks, 1)), h[:, :-1]], axis=1)
    i = np.arange(size)
    q[:, i, i] = a + tau * c + below + h
    q[:, i[:-1], i[1:]] = -h[:, :-1]
    q[:, i[1:], i[:-1]] = -h[:, :-1]
    return q


def whiten_walk(w: np.ndarray, tau: np.ndarray, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells ``u = R^-T w`` per block and ``log |det du/dw|``, ``R R^T`` the precision at ``tau``.

    ``w`` has shape (..., n_blocks, size), ``tau`` (..., n_blocks),
    ``terms`` from :func:`_walk_precision_terms` (:func:`walk_precision`
    writes the matrix out). ``R`` is lower bidiagonal (the precision is
    tridiagonal): ``R_pp = d_p`` and ``R_{p+1,p} = l_p``, from each step's
    precision ``h_p = tau f_p + g_p``, ``d_p^2 = s_p + h_p``, ``l_p = -h_p /
    d_p`` and ``s_{p+1} = a_{p+1} + tau c_{p+1} + h_p s_p / (s_p + h_p)``
    (``s_p = d_p^2 - h_p``: every term is non-negative, so no difference
    cancels however large ``tau`` is). Then ``u`` by back substitution from
    the block's end, and the log-determinant is ``-sum log d``. The kernel
    (:mod:`estimates._kernel`) runs the same recursion, and so does
    :func:`build`'s graph, as one Op (:mod:`estimates._whiten`).
    """
    a, f, c, g = terms
    size = a.shape[-1]
    tau = np.asarray(tau, float)
    d = np.empty(np.broadcast_shapes(w.shape, a.shape))
    ell = np.zeros_like(d)
    s = a[:, 0] + tau * c[:, 0]
    for p in range(size):
        h = tau * f[:, p] + g[:, p]
        d[..., p] = np.sqrt(s + h)
        ell[..., p] = -h / d[..., p]
        if p + 1 < size:
            s = a[:, p + 1] + tau * c[:, p + 1] + h * s / (s + h)
    u = np.empty_like(d)
    nxt = 0.0
    for p in range(size - 1, -1, -1):
        u[..., p] = (w[..., p] - ell[..., p] * nxt) / d[..., p]
        nxt = u[..., p]
    return u, -np.log(d).sum(axis=(-2, -1))


def _helmert(n: int) -> np.ndarray:
    """An ``n x (n-1)`` orthonormal basis of the vectors that sum to zero."""
    h = np.zeros((n, max(n - 1, 0)))
    for j in range(1, n):
        h[:j, j - 1] = 1.0 / math.sqrt(j * (j + 1))
        h[j, j - 1] = -j / math.sqrt(j * (j + 1))
    return h


#: A source with at least this many claims has its reliability parametrised centred.
RELIABILITY_CENTRED_CLAIMS = 10


def scale_information(terms: np.ndarray, first: np.ndarray, length: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Per whitened block, roughly what its claims say about its series' log walk scale (Fisher information).

    The Gaussian reading of the whitening (:func:`_walk_precision_terms`):
    the cells have prior precision ``P = tau * walk`` and the claims pin
    them with precision ``A``; the claims' information about ``log tau`` is
    ``0.5 * sum_k m_k^2`` over the walk's modes, ``m = A (A + P)^-1`` what
    the claims (not the walk) determine of each, so a mode the claims
    cannot see (faster than their noise) says nothing about the scale.
    The series' level (its one mode the walk leaves free, counted in its
    ``first`` block) and the positions a short block leaves empty
    (``length``) are not modes of the walk. About ``log sigma`` it is 4
    times that (``tau = sigma^-2``).
    """
    a, f, c, g = terms
    data = walk_precision(np.stack([a, np.zeros_like(f), np.zeros_like(c), g]), np.zeros(len(a)))
    walk = walk_precision(np.stack([np.zeros_like(a), f, c, np.zeros_like(g)]), tau)
    m = np.linalg.solve(np.swapaxes(data + walk, 1, 2), np.swapaxes(data, 1, 2))  # (A (A + P)^-1)^T
    modes = np.einsum("bij,bji->b", m, m) - (a.shape[1] - length) - first
    return 4.0 * 0.5 * np.maximum(modes, 0.0)


def scale_offsets(st: Structure, data: dict[str, np.ndarray], sigma: np.ndarray | None = None) -> np.ndarray:
    """How far each region's walk scale is shifted with its quantity's (``omega`` of :func:`build`).

    ``log sigma_r = z_r + omega_r log sigma_q`` with ``z_r ~ N((1 - omega_r)
    log sigma_q, 0.5^2)``: the same prior as ``log sigma_r ~ N(log
    sigma_q, 0.5^2)`` (a shift, unit Jacobian), partially non-centred.
    ``omega = prior precision / (prior precision + lambda)``, ``lambda``
    the claims' information about ``log sigma_r`` (:func:`scale_information`
    summed over the region's blocks, at walk scales ``sigma``, one per root
    scale; default their prior median): then ``z_r`` and ``sigma_q`` are
    close to independent a posteriori in the Gaussian reading, where the
    centred ``log sigma_r`` (``omega = 0``) is tied to ``sigma_q`` when
    the claims pin ``sigma_r`` loosely, and the non-centred one (``omega =
    1``) when they pin it well. Any ``omega`` gives the same model.
    """
    n_roots = len(st.walk_root_quantity)
    if not n_roots:
        return np.zeros(0)
    block, _, n_blocks, size = _whitening_layout(st)
    terms = data["walk_whiten"].reshape(WHITEN_TERMS, n_blocks, size)
    sigma = np.full(n_roots, PRIORS["walk_scale"]) if sigma is None else np.asarray(sigma, float)
    scale = data["whiten_scale"]
    roots = scale < n_roots  # blocks of region totals (not of share logits)
    length = np.bincount(block, minlength=n_blocks)
    first = np.zeros(n_blocks)
    first[block[st.walk_first]] = 1.0
    info = np.zeros(n_roots)
    if roots.any():
        lam = scale_information(terms[:, roots], first[roots], length[roots], sigma[scale[roots]] ** -2.0)
        np.add.at(info, scale[roots], lam)
    prior = PRIORS["walk_region_sd"] ** -2.0
    return prior / (prior + info)


def _reliability_centred(st: Structure) -> np.ndarray:
    if not len(st.sources):
        return np.zeros(0, dtype=bool)
    return st.sources["n_claims"].to_numpy() >= RELIABILITY_CENTRED_CLAIMS


def _bias_layout(st: Structure) -> dict[str, np.ndarray]:
    """Index arrays of the bias parameters (see :func:`build`).

    Quantities without a reference source: one mean per quantity
    (``bias_level_q``, scaled by ``1/sqrt(S)``) and ``S - 1`` contrasts per
    quantity, the columns of the block-diagonal ``con_basis``. Quantities
    with a reference: the other sources one by one (``ref_b``).
    """
    n_src = len(st.sources)
    n_q = len(st.quantities)
    q_of_src = st.sources["q_idx"].to_numpy(np.int64) if n_src else np.zeros(0, np.int64)
    is_ref = st.sources["is_reference"].to_numpy(bool) if n_src else np.zeros(0, bool)
    ref_q = np.zeros(n_q, dtype=bool)
    ref_q[q_of_src[is_ref]] = True
    level_q, level_scale = [], np.zeros(n_src)
    blocks: list[tuple[np.ndarray, np.ndarray, int]] = []  # (source rows, basis, q)
    for q in range(n_q):
        rows = np.flatnonzero(q_of_src == q)
        if ref_q[q] or not len(rows):
            continue
        level_q.append(q)
        level_scale[rows] = 1.0 / math.sqrt(len(rows))
        if len(rows) > 1:
            blocks.append((rows, _helmert(len(rows)), q))
    n_con = sum(b.shape[1] for _, b, _ in blocks)
    basis = np.zeros((n_src, n_con))
    con_q = np.zeros(n_con, dtype=np.int64)
    col = 0
    for rows, b, q in blocks:
        basis[rows, col : col + b.shape[1]] = b
        con_q[col : col + b.shape[1]] = q
        col += b.shape[1]
    return {
        "bias_level_q": np.array(level_q, dtype=np.int64),
        "bias_level_scale": level_scale,
        "con_basis": basis,
        "con_quantity": con_q,
        "ref_b": np.flatnonzero(ref_q[q_of_src] & ~is_ref),
    }


def _bias_information(st: Structure, weight: np.ndarray | None = None) -> np.ndarray:
    """Roughly what the claims say about the sources' biases: their information matrix, the counts integrated out.

    A Gaussian approximation, for parametrising the biases only (see
    :func:`bias_precision`): each level claim that pins one walk total
    (:func:`_pinned_walk_cell`) reads ``x + delta_s`` with precision
    :func:`_rough_precision`; the totals follow their walks at the prior
    median scale, with their level priors, and ratio claims pin the
    difference of their two totals. The biases' information is the
    claims' precision per source minus what the counts absorb (the Schur
    complement of the counts' block): two sources only tell their biases
    apart where their claims can be compared, on one cell or through the
    walk between cells. Shape (n_sources, n_sources).
    """
    n_x, n_src = st.n_total, len(st.sources)
    info = np.zeros((n_src, n_src))
    if not n_src or not len(st.claim_row) or not n_x:
        return info
    from scipy import sparse
    from scipy.sparse.linalg import splu

    cell = _pinned_walk_cell(st, st.claim_time_cell)
    ok = ~st.claim_ratio.astype(bool) & (cell >= 0)
    p, x, src = _rough_precision(st, ok, weight), cell[ok], st.claim_source[ok]
    diag = np.bincount(x, weights=p, minlength=n_x)
    cells = np.arange(n_x)
    pivot = st.walk_pivot[:n_x] == cells
    diag[pivot] += 1.0 / st.walk_prior_sd[_series_start(st.walk_first)[:n_x][pivot]] ** 2
    j = np.flatnonzero(~st.walk_first[:n_x])  # steps of the totals' walks, at the prior median scale
    i, k = st.walk_prev[j], 1.0 / (PRIORS["walk_scale"] ** 2 * st.walk_sqrt_dt[j] ** 2)
    lo, hi, pr = _ratio_precision(st, weight)
    lo, hi, pr = lo[hi < n_x], hi[hi < n_x], pr[hi < n_x]  # the totals' only
    i, j, k = np.concatenate([i, lo]), np.concatenate([j, hi]), np.concatenate([k, pr])
    rows = np.concatenate([cells, i, j, i, j])
    cols = np.concatenate([cells, i, j, j, i])
    q_xx = sparse.csc_matrix((np.concatenate([diag, k, k, -k, -k]), (rows, cols)), shape=(n_x, n_x))
    q_xd = np.zeros((n_x, n_src))
    np.add.at(q_xd, (x, src), p)
    info[np.diag_indices(n_src)] = np.bincount(src, weights=p, minlength=n_src)
    return info - q_xd.T @ splu(q_xx).solve(q_xd)


def bias_precision(
    st: Structure, layout: dict[str, np.ndarray] | None = None, weight: np.ndarray | None = None
) -> np.ndarray:
    """Per bias parameter, roughly how precisely the claims pin it: contrasts first, then reference-case biases.

    The diagonal of :func:`_bias_information` in the contrasts' basis
    (each contrast's precision given the others) and, with a reference,
    at each other source. :func:`build` parametrises each as ``w /
    sqrt(P + 1 / tau^2)``: centred where the data pin it (``P`` large),
    non-centred where they say nothing (``P = 0``), and in between, so
    ``w`` is about as wide at every ``tau``: no funnel between ``tau``
    and a bias the data pin only loosely (the article's two sources of
    fighters had one, and diverged there).
    """
    b = layout if layout is not None else _bias_layout(st)
    info = _bias_information(st, weight)
    con = np.einsum("sc,st,tc->c", b["con_basis"], info, b["con_basis"])
    ref = np.diagonal(info)[b["ref_b"]]
    return np.maximum(np.concatenate([con, ref]), 0.0)


def signature(st: Structure) -> tuple:
    """What fixes a compiled model: its layout (index arrays, sizes, branches), not its numbers.

    Structures with equal signatures share one compiled model; the arrays
    named in :data:`NUMBERS` are swapped in for each call.
    """
    is_ref = st.sources["is_reference"].to_numpy(bool) if len(st.sources) else np.zeros(0, bool)
    b = _bias_layout(st)
    data = model_data(st)
    rel_ce = _reliability_centred(st)
    return (
        ("quantities", len(st.quantities)),
        ("cells", len(st.cells)),
        ("walk", len(st.walk_first), st.n_total, st.n_logit, bool(st.has_walk)),
        ("scales", len(st.walk_quantities), len(st.walk_root_quantity), len(st.share_quantity)),
        ("whiten", *_whitening_layout(st)[2:]),  # blocks, cells per block
        ("sources", len(st.sources), bool(is_ref.any())),
        ("reliability_params", int((~rel_ce).sum()), int(rel_ce.sum())),
        ("bias_params", len(b["bias_level_q"]), b["con_basis"].shape[1], len(b["ref_b"])),
        ("sum_cells", st.cell_members.shape[1] > 1),
        ("shapes", tuple(bool((st.claim_shape == s).any()) for s in SHAPES)),
        ("robust", bool(st.robust)),
        ("numbers", tuple(int(np.size(data[k])) for k in NUMBERS)),  # offsets into the data vector
        ("layout", _layout_hash(data)),
    )


def _layout_hash(data: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k, v in sorted(data.items()):
        if k not in NUMBERS:
            h.update(k.encode())
            h.update(str((v.dtype, v.shape)).encode())
            h.update(v.tobytes())
    return h.hexdigest()


def build(st: Structure, *, fused: bool = False):  # noqa: ANN201 - returns pm.Model
    """Open the PyMC model for a :class:`Structure`. Never samples.

    The numbers enter through one ``pm.Data`` vector (:data:`NUMBERS`,
    :func:`pack_numbers`), so the model
    compiled for one structure serves any other with the same
    :func:`signature`. With ``fused``, the claims' term is one Op
    (:mod:`estimates._fused`, for graphs Numba compiles) rather than its
    symbolic form: the same log-density and gradient, fewer nodes.
    """
    pm = quiet_import("pymc")
    import pytensor.tensor as pt

    from ._whiten import whiten

    sig = {k[0]: k[1:] for k in signature(st)}
    n_q = len(st.quantities)
    n_src = len(st.sources)
    with pm.Model(coords=model_coords(st)) as model:
        md = model_data(st)
        packed = pm.Data("numbers", pack_numbers(md))
        d = {k: pt.as_tensor(v) for k, v in md.items() if k not in NUMBERS}
        off = 0
        for k in NUMBERS:  # slices of the one data vector, at offsets fixed by the layout
            d[k] = packed[off : off + md[k].size]
            off += md[k].size
        # ---- random walks
        n_walk, _, _, has_walk = sig["walk"]
        n_wq, n_wr, n_sq = sig["scales"]
        if has_walk:
            sigma_q = pm.LogNormal("sigma_walk", math.log(PRIORS["walk_scale"]), PRIORS["scale_log_sd"], shape=n_wq)
            # per-region scales around the quantity's, partially non-centred
            # by how much the claims say of each (scale_offsets): z + omega
            # log sigma_q (centred, omega = 0, the two trade off along a ridge
            # where the claims pin a region's scale loosely; non-centred,
            # omega = 1, where they pin it well)
            log_sq = pt.log(sigma_q)[d["walk_root_quantity"]]
            om = d["scale_omega"]
            z_sr = pm.Normal("z_sigma_region", (1.0 - om) * log_sq, PRIORS["walk_region_sd"], shape=n_wr)
            sigma_root = pt.exp(z_sr + om * log_sq)
            if n_sq:
                sigma_share = pm.LogNormal(
                    "sigma_share", math.log(PRIORS["share_walk_scale"]), PRIORS["scale_log_sd"], shape=n_sq
                )
                scales = pt.concatenate([sigma_root, sigma_share])
            else:
                scales = sigma_root
            step = scales[d["walk_scale_idx"]] * d["walk_sqrt_dt"]
        else:
            step = pt.zeros(n_walk)
        # The sampler's coordinates are whitened cells (whiten_walk): u =
        # R^-T w per block, R R^T the block's rough posterior precision at
        # its series' current walk scale; u the latent values minus their
        # series' prior centre, log |det du/dw| added to the density. Where
        # claims pin the cells this is a centred walk, where they say nothing
        # a non-centred one, and in between at every scale.
        n_blocks, size = sig["whiten"]
        w = pm.Flat("w_walk", shape=n_walk)
        block, pos = d["whiten_block"], d["whiten_pos"]
        wb = pt.set_subtensor(pt.zeros((n_blocks, size))[block, pos], w)
        terms = d["walk_whiten"].reshape((WHITEN_TERMS, n_blocks, size))
        tau = scales[d["whiten_scale"]] ** -2 if has_walk else pt.zeros(n_blocks)
        ub, log_det = whiten(wb, tau, terms)  # one Op: the recursion of whiten_walk and its gradient
        values = d["walk_mean0"] + ub[block, pos]
        lev = (values[d["walk_pivot"]] - d["walk_mean0"]) / d["walk_sd0"]
        st_w = pt.maximum(step, 1e-12)
        stp = (values - values[d["walk_prev"]]) / st_w
        lp = pt.switch(pt.gt(d["walk_not_first"], 0.5), -0.5 * stp * stp - pt.log(st_w), -0.5 * lev * lev)
        pm.Potential("walk", pt.sum(lp) + log_det)
        totals = values[: st.n_total]
        # ---- log shares and leaves
        if st.n_logit:
            logits = values[st.n_total :]
            lse = _segment_lse(logits, d["sibling_groups"], d["sibling_mask"])
            logshare = logits - lse[d["logit_group"]]
            padded = pt.concatenate([logshare, pt.zeros(1)])
            leaf = totals[d["leaf_root_cell"]] + pt.sum(padded[d["leaf_paths"]], axis=1)
        else:
            leaf = totals[d["leaf_root_cell"]]
        # ---- sources (before the cells: the level is anchored on the average source)
        q_of_src = d["src_quantity"]
        _, has_ref = sig["sources"]
        n_lev, n_con, n_ref = sig["bias_params"]
        tau = pm.LogNormal("bias_sd", math.log(PRIORS["bias_scale"]), PRIORS["scale_log_sd"], dims="quantity")
        delta = pt.zeros(n_src)
        # Without a reference, the biases of a quantity's S sources are split
        # into their mean and S - 1 orthonormal contrasts (the same N(0, tau)
        # prior, rotated). The data see only the contrasts; the mean (the
        # sources' shared bias, by which the consensus differs from what the
        # average source says) keeps its prior. In the raw biases that is a
        # narrow, diagonal ridge no diagonal mass matrix can follow.
        if n_lev:
            zm = pm.Normal("z_bias_mean", 0.0, 1.0, shape=n_lev)
            zm_full = pt.set_subtensor(pt.zeros(n_q)[d["bias_level_q"]], zm)
            delta = delta + tau[q_of_src] * d["bias_level_scale"] * zm_full[q_of_src]
        # Each contrast (or, with a reference, each other source's bias
        # about its mean) is w / sqrt(P + 1 / tau^2), P what the claims say
        # about it (bias_precision): centred where they pin it, non-centred
        # where they say nothing, so w is about as wide whatever tau is
        prec = d["bias_precision"]
        if n_con:
            t_con = tau[d["con_quantity"]]
            r_con = 1.0 / pt.sqrt(prec[:n_con] + t_con**-2)
            con = pm.Flat("w_bias", shape=n_con) * r_con
            pm.Potential("bias_contrasts", pt.sum(pm.logp(pm.Normal.dist(0.0, t_con), con) + pt.log(r_con)))
            delta = delta + pt.dot(d["con_basis"], con)
        if has_ref:
            # with a reference: its bias is 0, the others' ~ N(mu, tau)
            mu = pm.Normal("bias_mean", 0.0, PRIORS["bias_mean_sd"], dims="quantity")
            centre = d["src_ref_centre"] * mu[q_of_src]
            if n_ref:
                rb = d["ref_b"]
                t_ref = tau[q_of_src[rb]]
                r_ref = 1.0 / pt.sqrt(prec[n_con:] + t_ref**-2)
                off = pm.Flat("w_bias_ref", shape=n_ref) * r_ref
                pm.Potential("bias_about_mean", pt.sum(pm.logp(pm.Normal.dist(0.0, t_ref), off) + pt.log(r_ref)))
                delta = pt.set_subtensor(delta[rb], centre[rb] + off)
        delta = pm.Deterministic("log_bias", delta, dims="source")
        # The walk describes the level as the average source states it; the
        # consensus level is that minus the sources' mean bias. With one
        # source this removes the level-bias ridge the sampler would
        # otherwise have to follow (the data pin only their sum).
        mean_bias = pt.dot(d["src_weights"], delta)
        leaf = leaf - mean_bias[d["leaf_quantity"]]
        # ---- reported cells: logsumexp of their leaves
        if sig["sum_cells"][0]:
            log_count = _segment_lse(leaf, d["cell_members"], d["cell_mask"])
        else:
            log_count = leaf[d["cell_members"][:, 0]]
        log_count = pm.Deterministic("log_count", log_count, dims="cell")

        # Reliability only widens: a source can overstate its precision, but
        # the model never trusts it beyond what it stated (kappa >= 1). The
        # softplus keeps that smooth and stops perfectly consistent claims
        # from shrinking their own spreads (a funnel otherwise).
        # A source with many claims has its precision pinned by the data:
        # its reliability is centred there (non-centred, the mean and each
        # source would trade off along a ridge); non-centred otherwise.
        mu_k = pm.Normal("reliability_mean", PRIORS["reliability_mean"], PRIORS["reliability_mean_sd"], dims="quantity")
        n_rel_nc, n_rel_ce = sig["reliability_params"]
        arg = pt.zeros(n_src)
        if n_rel_nc:
            wk = pm.Normal("z_reliability", 0.0, 1.0, shape=n_rel_nc)
            nc_r = d["rel_nc"]
            arg = pt.set_subtensor(arg[nc_r], mu_k[q_of_src[nc_r]] + PRIORS["reliability_sd"] * wk)
        if n_rel_ce:
            ce_r = d["rel_ce"]
            ak = pm.Normal("reliability_centred", mu_k[q_of_src[ce_r]], PRIORS["reliability_sd"], shape=n_rel_ce)
            arg = pt.set_subtensor(arg[ce_r], ak)
        log_kappa = pm.Deterministic("log_reliability", pt.softplus(arg), dims="source")

        # ---- claims
        if fused:
            from ._fused import claims_op

            code = shape_codes(md)
            term = claims_op(bool(sig["robust"][0]))(
                log_count,
                delta,
                log_kappa,
                *(d[k] for k in ("claim_spread", "claim_a", "claim_b", "claim_observed", "claim_weight", "robust")),
                *(d[k] for k in ("claim_time_cell", "claim_since_cell", "claim_ratio", "claim_source")),
                code,
            )[0]
            pm.Potential("claims", term)
            return model
        ratio = d["claim_ratio"]
        y = log_count[d["claim_time_cell"]] - ratio * log_count[d["claim_since_cell"]]
        y = y + (1.0 - ratio) * delta[d["claim_source"]]
        s = d["claim_spread"] * pt.exp(log_kappa[d["claim_source"]])
        present = dict(zip(SHAPES, sig["shapes"][0], strict=True))
        ll = _claim_terms(d, y, s, present, robust=sig["robust"][0])
        pm.Potential("claims", pt.sum(d["claim_weight"] * ll))
    return model


#: What :func:`expand_draws` computes, in the order PyMC lists them after the free variables.
DERIVED = ("sigma_walk", "sigma_share", "bias_sd", "log_bias", "log_count", "log_reliability")


def expand_draws(st: Structure, data: dict[str, np.ndarray], free: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's other variables (:data:`DERIVED`) from draws of its free ones, in numpy.

    ``free`` maps the sampler's variables (``w_walk``, ``bias_sd_log__``,
    ...) to arrays with the draws first; ``data`` is :func:`model_data` of
    ``st``. The same arithmetic as :func:`build`, row by row, so nutpie's
    sampler need not compile and call a second function per draw for them
    (``estimates._nutpie``); ``tests/test_model.py`` holds the two to 1e-12.
    Present only where :func:`build` makes them: no walk, no ``sigma_walk``.
    """
    sig = {k[0]: k[1:] for k in signature(st)}
    d = data
    n = next(iter(free.values())).shape[0] if free else 0
    n_q, n_src = len(st.quantities), len(st.sources)
    n_walk, _, _, has_walk = sig["walk"]
    n_wq, n_wr, n_sq = sig["scales"]
    out: dict[str, np.ndarray] = {}
    if has_walk:
        log_sq = free["sigma_walk_log__"][:, d["walk_root_quantity"]]
        out["sigma_walk"] = np.exp(free["sigma_walk_log__"])
        scales = np.exp(free["z_sigma_region"] + d["scale_omega"] * log_sq)
        if n_sq:
            out["sigma_share"] = np.exp(free["sigma_share_log__"])
            scales = np.concatenate([scales, out["sigma_share"]], axis=1)
    n_blocks, size = sig["whiten"]
    block, pos = d["whiten_block"], d["whiten_pos"]
    wb = np.zeros((n, n_blocks, size))
    wb[:, block, pos] = free["w_walk"]
    tau = scales[:, d["whiten_scale"]] ** -2.0 if has_walk else np.zeros((n, n_blocks))
    ub, _ = whiten_walk(wb, tau, d["walk_whiten"].reshape((WHITEN_TERMS, n_blocks, size)))
    values = d["walk_mean0"] + ub[:, block, pos]
    totals = values[:, : st.n_total]
    if st.n_logit:
        logits = values[:, st.n_total :]
        lse = _segment_lse_numpy(logits, d["sibling_groups"], d["sibling_mask"])
        padded = np.concatenate([logits - lse[:, d["logit_group"]], np.zeros((n, 1))], axis=1)
        leaf = totals[:, d["leaf_root_cell"]] + padded[:, d["leaf_paths"]].sum(axis=2)
    else:
        leaf = totals[:, d["leaf_root_cell"]]
    q_of_src = d["src_quantity"]
    _, has_ref = sig["sources"]
    n_lev, n_con, n_ref = sig["bias_params"]
    tau = np.exp(free["bias_sd_log__"])
    out["bias_sd"] = tau
    delta = np.zeros((n, n_src))
    if n_lev:
        zm_full = np.zeros((n, n_q))
        zm_full[:, d["bias_level_q"]] = free["z_bias_mean"]
        delta = delta + tau[:, q_of_src] * d["bias_level_scale"] * zm_full[:, q_of_src]
    prec = d["bias_precision"]
    if n_con:
        con = free["w_bias"] / np.sqrt(prec[:n_con] + tau[:, d["con_quantity"]] ** -2.0)
        delta = delta + con @ d["con_basis"].T
    if has_ref:
        centre = d["src_ref_centre"] * free["bias_mean"][:, q_of_src]
        if n_ref:
            rb = d["ref_b"]
            off = free["w_bias_ref"] / np.sqrt(prec[n_con:] + tau[:, d["src_quantity"][rb]] ** -2.0)
            delta[:, rb] = centre[:, rb] + off
    out["log_bias"] = delta
    leaf = leaf - (delta @ d["src_weights"].T)[:, d["leaf_quantity"]]
    if sig["sum_cells"][0]:
        out["log_count"] = _segment_lse_numpy(leaf, d["cell_members"], d["cell_mask"])
    else:
        out["log_count"] = leaf[:, d["cell_members"][:, 0]]
    n_rel_nc, n_rel_ce = sig["reliability_params"]
    arg = np.zeros((n, n_src))
    if n_rel_nc:
        nc_r = d["rel_nc"]
        arg[:, nc_r] = free["reliability_mean"][:, q_of_src[nc_r]] + PRIORS["reliability_sd"] * free["z_reliability"]
    if n_rel_ce:
        arg[:, d["rel_ce"]] = free["reliability_centred"]
    out["log_reliability"] = np.logaddexp(0.0, arg)  # softplus
    return {k: out[k] for k in DERIVED if k in out}


def _segment_lse_numpy(x: np.ndarray, idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`_segment_lse` on draws x values: each row's logsumexp of ``x[:, idx]`` over ``mask``."""
    vals = np.where(mask > 0, x[:, idx], _PAD)
    m = vals.max(axis=2, keepdims=True)
    return m[:, :, 0] + np.log(np.exp(vals - m).sum(axis=2))


def claim_loglik(st: Structure, y, s):  # noqa: ANN001, ANN201
    """Per-claim log-likelihood (pytensor vector) of the claims of ``st``, the shapes of ``interpret``."""
    import pytensor.tensor as pt

    d = {k: pt.as_tensor(v) for k, v in model_data(st).items()}
    present = {name: bool((st.claim_shape == name).any()) for name in SHAPES}
    return _claim_terms(d, y, s, present, robust=st.robust)


def _claim_terms(d, y, s, present: dict[str, bool], *, robust: bool):  # noqa: ANN001, ANN202
    """Per-claim log-likelihood; ``d`` holds :func:`model_data` as tensors, only ``present`` shapes get a term."""
    import pytensor.tensor as pt

    a, b = d["claim_a"], d["claim_b"]
    ll = pt.zeros_like(y)
    if present["normal"]:
        sel = d["claims_normal"]
        r = (a[sel] - y[sel]) / s[sel]
        ll = pt.set_subtensor(ll[sel], -0.5 * r * r - pt.log(s[sel]) - 0.5 * math.log(2 * math.pi))
    if present["box"]:
        sel = d["claims_box"]
        ll = pt.set_subtensor(ll[sel], log_box(y[sel], a[sel], b[sel], s[sel]))
    if present["lower"]:
        sel = d["claims_lower"]
        ll = pt.set_subtensor(ll[sel], log_ndtr((y[sel] - a[sel]) / s[sel]))
    if present["upper"]:
        sel = d["claims_upper"]
        ll = pt.set_subtensor(ll[sel], log_ndtr((b[sel] - y[sel]) / s[sel]))
    if robust:
        w, sd = d["robust"][0], d["robust"][1]
        r = (d["claim_observed"] - y) / sd
        wild = -0.5 * r * r - pt.log(sd) - 0.5 * math.log(2 * math.pi)
        # log(exp(x0) + exp(x1)) about the larger: pt.logaddexp is that
        # without the shift, and even after PyTensor's rewrites its gradient
        # was NaN for a claim some 45 spreads from the point
        x0, x1 = pt.log1p(-w) + ll, pt.log(w) + wild
        top = pt.maximum(x0, x1)
        ll = top + pt.log(pt.exp(x0 - top) + pt.exp(x1 - top))
    return ll


def log_box_numpy(y: np.ndarray, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
    """:func:`log_box` in numpy (same flip into the lower tail)."""
    from scipy.special import log_ndtr

    return _flipped_box(y, a, b, s, where=np.where, lndtr=log_ndtr, log=np.log, expm1=np.expm1)


def claim_loglik_numpy(
    st: Structure,
    y: np.ndarray,
    s: np.ndarray,
    cols: np.ndarray | None = None,
    wild_sd: np.ndarray | float | None = None,
    robust: bool | None = None,
) -> np.ndarray:
    """Per-claim log-likelihood in numpy (draws x claims), the terms of :func:`build`.

    ``cols`` picks claims (all by default; ``y`` and ``s`` then hold only
    those columns); ``wild_sd`` overrides the robust component's spread
    (a source bias integrated out widens it); ``robust=False`` gives the
    ordinary term alone, as if no claim could be wild.
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ll = _claim_loglik_numpy(st, y, s, cols)
        if st.robust if robust is None else robust:
            w = float(st.robust_weight)
            ll = np.logaddexp(math.log1p(-w) + ll, math.log(w) + wild_loglik(st, y, cols, wild_sd))
        return ll


def wild_loglik(st: Structure, y: np.ndarray, cols: np.ndarray | None = None, sd=None) -> np.ndarray:  # noqa: ANN001
    """Log density of each claim's stated number under the robust "wild" component."""
    cols = np.arange(len(st.claim_row)) if cols is None else np.asarray(cols)
    sd = float(st.robust_sd) if sd is None else sd
    obs = np.nan_to_num(observed_number(st.claim_shape[cols], st.claim_kind[cols], st.claim_a[cols], st.claim_b[cols]))
    r = (obs - y) / sd
    return -0.5 * r * r - np.log(sd) - 0.5 * math.log(2 * math.pi)


def _claim_loglik_numpy(st: Structure, y, s, cols) -> np.ndarray:  # noqa: ANN001
    """Each shape's term on its own columns only (a box term costs two log-Phi: not for every claim)."""
    from scipy.special import log_ndtr as lndtr

    cols = np.arange(len(st.claim_row)) if cols is None else np.asarray(cols)
    shape = st.claim_shape[cols]
    y, s = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(s, dtype=float))
    ll = np.full(y.shape, np.nan)
    a, b = st.claim_a[cols].astype(float), st.claim_b[cols].astype(float)
    for name in SHAPES:
        j = np.flatnonzero(shape == name)
        if not len(j):
            continue
        yj, sj = y[..., j], s[..., j]
        if name == "normal":
            r = (a[j] - yj) / sj
            ll[..., j] = -0.5 * r * r - np.log(sj) - 0.5 * math.log(2 * math.pi)
        elif name == "box":
            ll[..., j] = log_box_numpy(yj, a[j], b[j], sj)
        elif name == "lower":
            ll[..., j] = lndtr((yj - a[j]) / sj)
        else:
            ll[..., j] = lndtr((b[j] - yj) / sj)
    return ll


def _series_start(first: np.ndarray) -> np.ndarray:
    """Index of the first cell of each cell's series."""
    return np.maximum.accumulate(np.where(first, np.arange(len(first)), 0))


def targets_numpy(
    st: Structure, log_count: np.ndarray, log_bias: np.ndarray, log_rel: np.ndarray, cols: np.ndarray | None = None
):
    """Claim targets ``y`` and spreads ``s`` from posterior draws (numpy, draws first).

    ``cols`` picks claims (all by default): the columns of ``y`` and ``s``.
    """
    cols = slice(None) if cols is None else np.asarray(cols, dtype=np.int64)
    ratio, src = st.claim_ratio[cols], st.claim_source[cols]
    y = log_count[:, st.claim_time_cell[cols]]
    y -= np.where(ratio, log_count[:, st.claim_since_cell[cols]], 0.0)
    y += np.where(ratio, 0.0, log_bias[:, src])
    s = st.claim_spread[cols] * np.exp(log_rel[:, src])
    return y, s
