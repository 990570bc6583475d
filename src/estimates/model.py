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
- ``T[r, k] - T[r, k-1] ~ Normal(0, sigma_r sqrt(dt_k))``, ``sigma_r =
  sigma_q exp(0.5 eta_r)``, ``eta_r ~ N(0, 1)`` (per-region scales partially
  pooled around the quantity's), ``sigma_q ~ LogNormal(log 1.0, 0.6)``;
- ``phi[e, pivot] ~ Normal(0, 1)``, steps ``~ Normal(0, sigma_share_q
  sqrt(dt))``, ``sigma_share_q ~ LogNormal(log 0.5, 0.6)``.

A series is centred when data pin every step of it (level claims at both
ends or a relative claim across it) and non-centred, running outwards from
the pivot, otherwise. Scales have boundary-avoiding log-normal priors: with a
handful of sources or periods the data cannot rule out a scale near zero,
and prior mass there is a funnel for the sampler.

Sources
-------
Bias ``delta[s]`` (log scale) ``~ Normal(0, tau_q)``, ``tau_q ~
LogNormal(log 0.3, 0.6)``: sources are a sample from a population unbiased on
average. With ``reference=``, that source's bias is 0 and the others' ``~
Normal(mu_q, tau_q)``, ``mu_q ~ Normal(0, 0.5)``. The bias is centred when
several sources all make tight claims (the data pin it), non-centred
otherwise. The walk describes the level as the average source states it;
the consensus level (reported) is that minus the sources' mean bias, which
removes the level-bias ridge when one source makes every claim.

Reliability ``kappa[s] = exp(softplus(mu_q + 0.5 w_s))``, ``mu_q ~
Normal(-1.5, 0.5)``, ``w_s ~ N(0, 1)``, multiplies the stated spread of
each of the source's claims. ``kappa >= 1``: a source may overstate its
precision but is never trusted beyond it (median about 1.2).

Relative claims carry no bias (a constant factor cancels in a ratio).
"""

from __future__ import annotations

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
    walk_centred: np.ndarray  # bool per walk cell: centred parametrisation (dense data)
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
    walk: dict[str, list[Any]] = {
        k: [] for k in ("first", "prev", "pivot", "sqrt_dt", "mean", "sd", "scale", "centred")
    }
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
            centred, pivot = qp.plan(sub)
            first = _append_series(walk, qp, m, sd, sid, centred, pivot)
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
                centred, pivot = qp.plan(set(qp.subtree(c)))
                first = _append_series(walk, qp, 0.0, PRIORS["logit_sd"], sidx, centred, pivot)
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
        # sources of this quantity; their bias is centred when every source
        # has a level claim tighter than the typical bias (data pin it)
        srcs = list(dict.fromkeys(cq["source"]))
        tight = [
            bool(((cq["source"] == s) & ~cq["ratio"].astype(bool) & (cq["spread"] < PRIORS["bias_scale"])).any())
            for s in srcs
        ]
        centred_bias = len(srcs) > 1 and all(tight)
        for s in srcs:
            src_index[(q, s)] = len(src_rows)
            src_rows.append(
                dict(
                    quantity=q,
                    source=s,
                    q_idx=qi,
                    is_reference=(s == reference),
                    n_claims=int((cq["source"] == s).sum()),
                    centred_bias=centred_bias,
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
        walk_centred=np.array(walk["centred"], dtype=bool),
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
    plan: Any  # nodes -> (centred, pivot), see _series_planner

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
    walk: dict[str, list[Any]], qp: _QuantityPlan, mean: float, sd: float, scale: int, centred: bool, pivot: int
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
        walk["centred"].append(centred)
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
    """Return ``plan(nodes) -> (centred, pivot)`` for the series of a subtree.

    The pivot is the period with most level claims on the subtree (latest on
    ties): the level prior sits there and a non-centred walk runs outwards
    from it, so unobserved periods hang off observed ones. A series is
    centred when every step of its walk is pinned by data (level claims at
    both ends, or a relative claim across it): a non-centred walk would then
    put the sampler in a funnel between the walk scale and the step.
    """
    pos = {lab: k for k, lab in enumerate(labels)}
    regions = cq["region"].to_numpy(object)
    ratio = cq["ratio"].to_numpy(bool)
    t_k = np.array([pos[t] for t in cq["time_label"]], dtype=np.int64)
    s_k = np.array([pos[s] if r else -1 for s, r in zip(cq["since_label"], ratio, strict=True)], dtype=np.int64)

    def plan(nodes: set[str]) -> tuple[bool, int]:
        mine = np.array([r in nodes for r in regions], dtype=bool)
        lev = np.bincount(t_k[mine & ~ratio], minlength=kq)
        pivot = int(kq - 1 - np.argmax(lev[::-1])) if lev.any() else kq - 1
        if kq == 1:
            return False, 0
        pinned = (lev[:-1] > 0) & (lev[1:] > 0)
        for a, b in zip(s_k[mine & ratio], t_k[mine & ratio], strict=True):
            pinned[a:b] = True
        return bool(pinned.all()), pivot

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

    With ``u = (y-a)/s`` and ``v = (y-b)/s < u``: both in the lower tail
    (``u <= 0``), both in the upper tail (``v >= 0``), or straddling.
    """
    import pytensor.tensor as pt

    w = (b - a) / s
    u = (y - a) / s
    v = u - w
    # lower tail: log Phi(u) + log1mexp(log Phi(v) - log Phi(u))
    u1 = pt.minimum(u, 0.0)
    l1 = log_ndtr(u1)
    d1 = log_ndtr(u1 - w) - l1
    lower = l1 + pt.log(-pt.expm1(d1))
    # upper tail: Phi(u) - Phi(v) = Phi(-v) - Phi(-u)
    v2 = pt.maximum(v, 0.0)
    l2 = log_ndtr(-v2)
    d2 = log_ndtr(-(v2 + w)) - l2
    upper = l2 + pt.log(-pt.expm1(d2))
    # straddling: 1 - Phi(-u) - Phi(v)
    u3 = pt.maximum(u, 0.0)
    v3 = pt.minimum(v, 0.0)
    mid = pt.log1p(-(pt.exp(log_ndtr(-u3)) + pt.exp(log_ndtr(v3))))
    out = pt.switch(u <= 0.0, lower, pt.switch(v >= 0.0, upper, mid))
    return out - pt.log(b - a)


def _segment_lse(x, idx: np.ndarray, mask: np.ndarray):  # noqa: ANN001, ANN202
    """Row-wise logsumexp of ``x[idx]`` over ``mask`` (padded, no -inf anywhere)."""
    import pytensor.tensor as pt

    vals = pt.switch(mask, x[idx], _PAD)
    m = pt.max(vals, axis=1, keepdims=True)
    return m[:, 0] + pt.log(pt.sum(pt.exp(vals - m), axis=1))


def build(st: Structure):  # noqa: ANN201 - returns pm.Model
    """Open the PyMC model for a :class:`Structure`. Never samples."""
    pm = quiet_import("pymc")
    import pytensor.tensor as pt

    n_q = len(st.quantities)
    n_src = len(st.sources)
    coords = {
        "quantity": st.quantities,
        "cell": np.arange(len(st.cells)),
        "source": np.arange(n_src),
        "claim": np.arange(len(st.claim_row)),
    }
    with pm.Model(coords=coords) as model:
        # ---- random walks: non-centred where data are sparse, centred where dense
        n_walk = len(st.walk_first)
        if st.has_walk:
            sigma_q = pm.LogNormal(
                "sigma_walk",
                math.log(PRIORS["walk_scale"]),
                PRIORS["scale_log_sd"],
                shape=len(st.walk_quantities),
            )
            eta = pm.Normal("eta_walk", 0.0, 1.0, shape=len(st.walk_root_quantity))
            sigma_root = sigma_q[st.walk_root_quantity] * pt.exp(PRIORS["walk_region_sd"] * eta)
            if len(st.share_quantity):
                sigma_share = pm.LogNormal(
                    "sigma_share",
                    math.log(PRIORS["share_walk_scale"]),
                    PRIORS["scale_log_sd"],
                    shape=len(st.share_quantity),
                )
                scales = pt.concatenate([sigma_root, sigma_share])
            else:
                scales = sigma_root
            step = scales[st.walk_scale_idx] * st.walk_sqrt_dt
        else:
            step = pt.zeros(n_walk)
        values = pt.zeros(n_walk)
        starts = _series_start(st.walk_first)
        nc = np.flatnonzero(~st.walk_centred)
        if len(nc):
            # level at the pivot, steps outwards from it
            z = pm.Normal("z_walk", 0.0, 1.0, shape=len(nc))
            zf = pt.zeros(n_walk)
            zf = pt.set_subtensor(zf[nc], z)
            inc = pt.switch(st.walk_first, 0.0, step * zf)
            cs = _segment_cumsum(inc, st.walk_first)
            level = st.walk_prior_mean[starts] + st.walk_prior_sd[starts] * zf[starts]
            nc_values = level + cs - cs[st.walk_pivot]
            values = pt.set_subtensor(values[nc], nc_values[nc])
        ce = np.flatnonzero(st.walk_centred)
        if len(ce):
            # coordinates are the latent values minus their series' prior centre
            u = pm.Flat("u_walk", shape=len(ce))
            values = pt.set_subtensor(values[ce], st.walk_prior_mean[starts][ce] + u)
            first = st.walk_first[ce]
            lev = (values[st.walk_pivot[ce]] - st.walk_prior_mean[starts][ce]) / st.walk_prior_sd[starts][ce]
            stp = (values[ce] - values[st.walk_prev[ce]]) / pt.maximum(step[ce], 1e-12)
            lp = pt.switch(first, -0.5 * lev * lev, -0.5 * stp * stp - pt.log(pt.maximum(step[ce], 1e-12)))
            pm.Potential("walk_centred", pt.sum(lp))
        totals = values[: st.n_total]
        # ---- log shares and leaves
        if st.n_logit:
            logits = values[st.n_total :]
            lse = _segment_lse(logits, st.sibling_groups, st.sibling_mask)
            logshare = logits - lse[st.logit_group]
            padded = pt.concatenate([logshare, pt.zeros(1)])
            leaf = totals[st.leaf_root_cell] + pt.sum(padded[st.leaf_paths], axis=1)
        else:
            leaf = totals[st.leaf_root_cell]
        # ---- sources (before the cells: the level is anchored on the average source)
        q_of_src = st.sources["q_idx"].to_numpy(np.int64)
        is_ref = st.sources["is_reference"].to_numpy(bool)
        tau = pm.LogNormal("bias_sd", math.log(PRIORS["bias_scale"]), PRIORS["scale_log_sd"], dims="quantity")
        ref_q = np.zeros(n_q, dtype=bool)
        if st.reference is not None and is_ref.any():
            ref_q[q_of_src[is_ref]] = True
            mu = pm.Normal("bias_mean", 0.0, PRIORS["bias_mean_sd"], dims="quantity")
            centre = pt.switch(ref_q[q_of_src], mu[q_of_src], 0.0)
        else:
            centre = pt.zeros(n_src)
        # Non-centred where the data say little about a source's bias,
        # centred where they pin it (several sources, tight claims): each
        # choice avoids the funnel the other one has there.
        cb = st.sources["centred_bias"].to_numpy(bool) & ~is_ref
        nb = ~cb & ~is_ref
        delta = pt.zeros(n_src)
        if nb.any():
            zb = pm.Normal("z_bias", 0.0, 1.0, shape=int(nb.sum()))
            delta = pt.set_subtensor(delta[nb], centre[nb] + tau[q_of_src[nb]] * zb)
        if cb.any():
            db = pm.Normal("bias_centred", centre[cb], tau[q_of_src[cb]], shape=int(cb.sum()))
            delta = pt.set_subtensor(delta[cb], db)
        delta = pm.Deterministic("log_bias", delta, dims="source")
        # The walk describes the level as the average source states it; the
        # consensus level is that minus the sources' mean bias. With one
        # source this removes the level-bias ridge the sampler would
        # otherwise have to follow (the data pin only their sum).
        weights = np.zeros((n_q, n_src))
        weights[q_of_src, np.arange(n_src)] = 1.0
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        weights[ref_q] = 0.0
        mean_bias = pt.dot(weights, delta)
        leaf = leaf - mean_bias[st.leaf_quantity]
        # ---- reported cells: logsumexp of their leaves
        if st.cell_members.shape[1] == 1:
            log_count = leaf[st.cell_members[:, 0]]
        else:
            log_count = _segment_lse(leaf, st.cell_members, st.cell_mask)
        log_count = pm.Deterministic("log_count", log_count, dims="cell")

        # Reliability only widens: a source can overstate its precision, but
        # the model never trusts it beyond what it stated (kappa >= 1). The
        # softplus keeps that smooth and stops perfectly consistent claims
        # from shrinking their own spreads (a funnel otherwise).
        mu_k = pm.Normal("reliability_mean", PRIORS["reliability_mean"], PRIORS["reliability_mean_sd"], dims="quantity")
        wk = pm.Normal("z_reliability", 0.0, 1.0, dims="source")
        log_kappa = pm.Deterministic(
            "log_reliability", pt.softplus(mu_k[q_of_src] + PRIORS["reliability_sd"] * wk), dims="source"
        )

        # ---- claims
        y = log_count[st.claim_time_cell]
        y = y - pt.switch(st.claim_ratio, log_count[st.claim_since_cell], 0.0)
        y = y + pt.switch(st.claim_ratio, 0.0, delta[st.claim_source])
        s = st.claim_spread * pt.exp(log_kappa[st.claim_source])
        ll = claim_loglik(st, y, s)
        pm.Deterministic("claim_target", y, dims="claim")
        pm.Potential("claims", pt.sum(ll))
    return model


def claim_loglik(st: Structure, y, s):  # noqa: ANN001, ANN201
    """Per-claim log-likelihood (pytensor vector), the shapes of ``interpret``."""
    import pytensor.tensor as pt

    shape = st.claim_shape
    a = st.claim_a
    b = st.claim_b
    ll = pt.zeros(len(shape))
    sel = np.flatnonzero(shape == "normal")
    if len(sel):
        r = (a[sel] - y[sel]) / s[sel]
        ll = pt.set_subtensor(ll[sel], -0.5 * r * r - pt.log(s[sel]) - 0.5 * math.log(2 * math.pi))
    sel = np.flatnonzero(shape == "box")
    if len(sel):
        ll = pt.set_subtensor(ll[sel], log_box(y[sel], a[sel], b[sel], s[sel]))
    sel = np.flatnonzero(shape == "lower")
    if len(sel):
        ll = pt.set_subtensor(ll[sel], log_ndtr((y[sel] - a[sel]) / s[sel]))
    sel = np.flatnonzero(shape == "upper")
    if len(sel):
        ll = pt.set_subtensor(ll[sel], log_ndtr((b[sel] - y[sel]) / s[sel]))
    if st.robust:
        obs = observed_number(shape, st.claim_kind, a, b)
        r = (obs - y) / st.robust_sd
        wild = -0.5 * r * r - math.log(st.robust_sd) - 0.5 * math.log(2 * math.pi)
        ll = pt.logaddexp(math.log1p(-st.robust_weight) + ll, math.log(st.robust_weight) + wild)
    return ll


def _series_start(first: np.ndarray) -> np.ndarray:
    """Index of the first cell of each cell's series."""
    return np.maximum.accumulate(np.where(first, np.arange(len(first)), 0))


def _segment_cumsum(inc, first: np.ndarray):  # noqa: ANN001, ANN202
    """Cumulative sum restarting at each series' first cell (vectorised)."""
    import pytensor.tensor as pt

    cs = pt.cumsum(inc)
    start = _series_start(first)
    offset = cs[start] - inc[start]
    return cs - offset


def targets_numpy(st: Structure, log_count: np.ndarray, log_bias: np.ndarray, log_rel: np.ndarray):
    """Claim targets ``y`` and spreads ``s`` from posterior draws (numpy, draws first)."""
    y = log_count[:, st.claim_time_cell]
    y = y - np.where(st.claim_ratio, log_count[:, st.claim_since_cell], 0.0)
    y = y + np.where(st.claim_ratio, 0.0, log_bias[:, st.claim_source])
    s = st.claim_spread * np.exp(log_rel[:, st.claim_source])
    return y, s
