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
  quantity's; centred when data pin four or more steps of the region, and
  all of them, non-centred otherwise), ``sigma_q ~ LogNormal(log 1.0, 0.6)``;
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
Normal(mu_q, tau_q)``, ``mu_q ~ Normal(0, 0.5)``. The walk describes the
level as the average source states it; the consensus level (reported) is
that minus the sources' mean bias, which removes the level-bias ridge when
one source makes every claim.

Without a reference, a quantity's ``S`` biases are parametrised as their
mean ``tau_q / sqrt(S) z`` plus ``S - 1`` orthonormal contrasts (a Helmert
basis of the vectors summing to zero): the same iid ``Normal(0, tau_q)``
prior, rotated so that the direction the data cannot see (the shared bias)
is one coordinate of its own instead of a diagonal ridge through all of
them. Contrasts are centred when every source makes a tight claim (the data
pin them), non-centred otherwise.

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
)


def model_data(st: Structure) -> dict[str, np.ndarray]:
    """Every number the model reads, as named arrays (the model's ``pm.Data``).

    Two structures with the same :func:`signature` differ only in the arrays
    named in :data:`NUMBERS`, so one compiled model serves both: the sampler
    swaps those in.
    """
    starts = _series_start(st.walk_first)
    nc = np.flatnonzero(~st.walk_centred)
    ce = np.flatnonzero(st.walk_centred)
    q_of_src = st.sources["q_idx"].to_numpy(np.int64) if len(st.sources) else np.zeros(0, np.int64)
    is_ref = st.sources["is_reference"].to_numpy(bool) if len(st.sources) else np.zeros(0, bool)
    n_q, n_src = len(st.quantities), len(st.sources)
    ref_q = np.zeros(n_q, dtype=bool)
    if st.reference is not None:
        ref_q[q_of_src[is_ref]] = True
    bias = _bias_layout(st)
    rel_ce = _reliability_centred(st)
    scale_ce = _scales_centred(st)
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
        "walk_start": starts,
        "walk_pivot": st.walk_pivot,
        "walk_prev": st.walk_prev,
        "walk_mean0": mean0,
        "walk_sd0": sd0,
        "walk_nc": nc,
        "walk_ce": ce,
        "whiten_block": block,
        "whiten_pos": pos,
        "walk_whiten": _walk_whitening(st, block, pos, n_blocks, size, sd0).ravel(),
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
        "scale_nc": np.flatnonzero(~scale_ce),
        "scale_ce": np.flatnonzero(scale_ce),
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
        "claim_weight": np.ones(len(st.claim_row)),
        "robust": np.array([float(st.robust_weight), float(st.robust_sd)]),  # weight, sd
    }
    for name in SHAPES:
        data[f"claims_{name}"] = np.flatnonzero(st.claim_shape == name)
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


#: Centred walk series are whitened in blocks of at most this many cells (see :func:`_walk_whitening`).
WHITEN_BLOCK = 24


def _whitening_layout(st: Structure) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Block and position in its block of every centred walk cell; the number and size of blocks.

    Each centred series (its cells are contiguous and in time order) is cut
    into runs of at most :data:`WHITEN_BLOCK` cells.
    """
    ce = np.flatnonzero(st.walk_centred)
    if not len(ce):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0
    first = st.walk_first[ce]
    if not np.array_equal(st.walk_prev[ce][~first], ce[~first] - 1):
        raise RuntimeError("internal: a centred walk series is not contiguous")
    at = ce - _series_start(st.walk_first)[ce]
    keys = np.stack([_series_start(st.walk_first)[ce], at // WHITEN_BLOCK], axis=1)
    _, block = np.unique(keys, axis=0, return_inverse=True)
    pos = at % WHITEN_BLOCK
    return block.astype(np.int64).ravel(), pos.astype(np.int64), int(block.max()) + 1, int(pos.max()) + 1


def _claim_precision(st: Structure) -> np.ndarray:
    """Roughly how precisely the claims pin each walk cell: the sum of 1 / variance of those on it.

    Only claims about one leaf's level count (not ratios, not sums of
    regions), each on its series' total; a range counts as its softness plus
    a uniform box, a bound as a third of a point.
    """
    prec = np.zeros(len(st.walk_first))
    if not len(st.claim_row):
        return prec
    single = st.cell_mask.sum(axis=1) == 1
    ok = ~st.claim_ratio.astype(bool) & single[st.claim_time_cell]
    cell = st.leaf_root_cell[st.cell_members[st.claim_time_cell[ok], 0]]
    s2 = st.claim_spread[ok].astype(float) ** 2
    shape = st.claim_shape[ok]
    box = shape == "box"
    half = np.zeros(len(s2))
    half[box] = (st.claim_b[ok][box] - st.claim_a[ok][box]).astype(float) / 2.0
    p = np.where(shape == "normal", 1.0 / s2, np.where(box, 1.0 / (s2 + half**2 / 3.0), 0.3 / s2))
    np.add.at(prec, cell, p)
    return prec


def _walk_precision(
    st: Structure, block: np.ndarray, pos: np.ndarray, n_blocks: int, size: int, sd0: np.ndarray
) -> np.ndarray:
    """Per block of a centred series, roughly the posterior precision of its cells (tridiagonal).

    The claims' precisions (:func:`_claim_precision`) plus the walk's own
    (steps of sd ``walk_scale * sqrt(dt)``, the prior median of the scale; a
    step to a cell outside the block only adds to the diagonal) plus the
    level prior at the series' pivot. Positions a short block does not use
    get 1 on the diagonal. Shape (n_blocks, size, size).
    """
    ce = np.flatnonzero(st.walk_centred)
    q = np.zeros((n_blocks, size, size))
    q[:, np.arange(size), np.arange(size)] = 1.0
    q[block, pos, pos] = _claim_precision(st)[ce] + 1e-6
    step = ~st.walk_first[ce]
    k = 1.0 / (PRIORS["walk_scale"] ** 2 * np.where(step, st.walk_sqrt_dt[ce], 1.0) ** 2)
    prev = np.searchsorted(ce, st.walk_prev[ce])  # the previous cell's place in ce (same series)
    inside = step & (block[prev] == block)
    i, j, b, kk = pos[inside], pos[prev[inside]], block[inside], k[inside]
    np.add.at(q, (b, i, i), kk)
    np.add.at(q, (b, j, j), kk)
    np.add.at(q, (b, i, j), -kk)
    np.add.at(q, (b, j, i), -kk)
    cut = step & ~inside  # the step into a block from the one before it
    np.add.at(q, (block[cut], pos[cut], pos[cut]), k[cut])
    np.add.at(q, (block[prev[cut]], pos[prev[cut]], pos[prev[cut]]), k[cut])
    pivot = np.isin(ce, st.walk_pivot[ce])
    np.add.at(q, (block[pivot], pos[pivot], pos[pivot]), 1.0 / sd0[ce][pivot] ** 2)
    return q


def _walk_whitening(
    st: Structure, block: np.ndarray, pos: np.ndarray, n_blocks: int, size: int, sd0: np.ndarray
) -> np.ndarray:
    """Per block of a centred series, the linear map from the sampler's coordinates to the cells.

    The sampler moves in coordinates ``w`` with cells ``u = B w`` (per
    block). ``B = R^-T``, where ``R R^T`` is roughly the posterior precision
    of the block's cells (:func:`_walk_precision`). ``w`` is then close to
    independent standard normal, where the cells themselves are strongly
    correlated (a series' level is pinned less well than its steps). ``B``
    is a constant: the model is unchanged, only its coordinates are (the
    Jacobian is constant).

    The precision is tridiagonal (each cell meets only its neighbours), so
    ``R`` is lower bidiagonal and ``u = B w`` is the back substitution
    ``u_i = w_i / d_i + c_i u_{i+1}`` (``d_i = R_ii``, ``c_i = -R_{i+1,i} /
    d_i``). With ``P_i = c_0 ... c_{i-1}`` that is ``u_i = (1 / P_i)
    sum_{j >= i} P_j w_j / d_j``: a product by constants, a cumulative sum
    from the block's end and another product, linear in the block's length
    where the matrix product was quadratic (it took a third of each gradient
    on the medium benchmark). Returns shape (2, n_blocks, size): ``P / d``
    and ``1 / P``.

    ``c`` lies in (0, 1] (``d_i^2`` is at least the next step's precision),
    and is kept above 1e-8 so that ``P`` stays representable (at least
    1e-184 over a block of 24); where that clips, ``B`` is no longer exactly
    ``R^-T`` but still a constant, invertible, upper triangular map, and the
    model is the same.
    """
    if not n_blocks:
        return np.zeros((2, 0, 0))
    q = _walk_precision(st, block, pos, n_blocks, size, sd0)
    if np.any(np.tril(q, -2)):
        raise RuntimeError("internal: a walk block's precision is not tridiagonal")
    r = np.linalg.cholesky(q)
    d = np.diagonal(r, axis1=1, axis2=2)
    c = np.clip(-np.diagonal(r, offset=-1, axis1=1, axis2=2) / d[:, :-1], 1e-8, 1.0)
    p = np.concatenate([np.ones((n_blocks, 1)), np.cumprod(c, axis=1)], axis=1)
    return np.stack([p / d, 1.0 / p])


def _helmert(n: int) -> np.ndarray:
    """An ``n x (n-1)`` orthonormal basis of the vectors that sum to zero."""
    h = np.zeros((n, max(n - 1, 0)))
    for j in range(1, n):
        h[:j, j - 1] = 1.0 / math.sqrt(j * (j + 1))
        h[j, j - 1] = -j / math.sqrt(j * (j + 1))
    return h


#: A source with at least this many claims has its reliability parametrised centred.
RELIABILITY_CENTRED_CLAIMS = 10


#: A region's walk scale is centred when data pin at least this many of its steps (and all of them).
SCALE_CENTRED_STEPS = 4


def _scales_centred(st: Structure) -> np.ndarray:
    """Per root walk scale: is its region's series centred (every step pinned) and long enough?"""
    n_wr = len(st.walk_root_quantity)
    steps = (~st.walk_first) & (np.arange(len(st.walk_first)) < st.n_total)
    out = np.zeros(n_wr, dtype=bool)
    for sid in range(n_wr):
        mine = steps & (st.walk_scale_idx == sid)
        out[sid] = mine.sum() >= SCALE_CENTRED_STEPS and bool(st.walk_centred[mine].all())
    return out


def _reliability_centred(st: Structure) -> np.ndarray:
    if not len(st.sources):
        return np.zeros(0, dtype=bool)
    return st.sources["n_claims"].to_numpy() >= RELIABILITY_CENTRED_CLAIMS


def _bias_layout(st: Structure) -> dict[str, np.ndarray]:
    """Index arrays of the bias parameters (see :func:`build`).

    Quantities without a reference source: one mean per quantity
    (``bias_level_q``, scaled by ``1/sqrt(S)``) and ``S - 1`` contrasts per
    quantity, the columns of the block-diagonal ``con_basis``; contrasts are
    centred (``con_ce``) when every source of the quantity makes a tight
    claim, non-centred (``con_nc``) otherwise. Quantities with a reference:
    the other sources one by one (``ref_nb`` non-centred, ``ref_cb`` centred).
    """
    n_src = len(st.sources)
    n_q = len(st.quantities)
    q_of_src = st.sources["q_idx"].to_numpy(np.int64) if n_src else np.zeros(0, np.int64)
    is_ref = st.sources["is_reference"].to_numpy(bool) if n_src else np.zeros(0, bool)
    tight = st.sources["centred_bias"].to_numpy(bool) if n_src else np.zeros(0, bool)
    ref_q = np.zeros(n_q, dtype=bool)
    ref_q[q_of_src[is_ref]] = True
    level_q, level_scale = [], np.zeros(n_src)
    blocks: list[tuple[np.ndarray, np.ndarray, int, bool]] = []  # (source rows, basis, q, centred)
    for q in range(n_q):
        rows = np.flatnonzero(q_of_src == q)
        if ref_q[q] or not len(rows):
            continue
        level_q.append(q)
        level_scale[rows] = 1.0 / math.sqrt(len(rows))
        if len(rows) > 1:
            blocks.append((rows, _helmert(len(rows)), q, bool(tight[rows].all())))
    n_con = sum(b.shape[1] for _, b, _, _ in blocks)
    basis = np.zeros((n_src, n_con))
    con_q = np.zeros(n_con, dtype=np.int64)
    con_centred = np.zeros(n_con, dtype=bool)
    col = 0
    for rows, b, q, centred in blocks:
        basis[rows, col : col + b.shape[1]] = b
        con_q[col : col + b.shape[1]] = q
        con_centred[col : col + b.shape[1]] = centred
        col += b.shape[1]
    in_ref_q = ref_q[q_of_src] & ~is_ref
    return {
        "bias_level_q": np.array(level_q, dtype=np.int64),
        "bias_level_scale": level_scale,
        "con_basis": basis,
        "con_quantity": con_q,
        "con_nc": np.flatnonzero(~con_centred),
        "con_ce": np.flatnonzero(con_centred),
        "ref_nb": np.flatnonzero(in_ref_q & ~tight),
        "ref_cb": np.flatnonzero(in_ref_q & tight),
    }


def signature(st: Structure) -> tuple:
    """What fixes a compiled model: its layout (index arrays, sizes, branches), not its numbers.

    Structures with equal signatures share one compiled model; the arrays
    named in :data:`NUMBERS` are swapped in for each call.
    """
    is_ref = st.sources["is_reference"].to_numpy(bool) if len(st.sources) else np.zeros(0, bool)
    b = _bias_layout(st)
    data = model_data(st)
    scale_ce, rel_ce = _scales_centred(st), _reliability_centred(st)
    return (
        ("quantities", len(st.quantities)),
        ("cells", len(st.cells)),
        ("walk", len(st.walk_first), st.n_total, st.n_logit, bool(st.has_walk)),
        ("scales", len(st.walk_quantities), len(st.walk_root_quantity), len(st.share_quantity)),
        ("walk_params", int((~st.walk_centred).sum()), int(st.walk_centred.sum())),  # non-centred, centred
        ("whiten", *_whitening_layout(st)[2:]),  # blocks, cells per block
        ("sources", len(st.sources), bool(is_ref.any())),
        ("scale_params", int((~scale_ce).sum()), int(scale_ce.sum())),
        ("reliability_params", int((~rel_ce).sum()), int(rel_ce.sum())),
        ("bias_params", len(b["bias_level_q"]), len(b["con_nc"]), len(b["con_ce"]), len(b["ref_nb"]), len(b["ref_cb"])),
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
        # ---- random walks: non-centred where data are sparse, centred where dense
        n_walk, _, _, has_walk = sig["walk"]
        n_wq, n_wr, n_sq = sig["scales"]
        n_nc, n_ce = sig["walk_params"]
        if has_walk:
            sigma_q = pm.LogNormal("sigma_walk", math.log(PRIORS["walk_scale"]), PRIORS["scale_log_sd"], shape=n_wq)
            # per-region scales around the quantity's: centred where the data
            # pin a region's steps (its scale is learnt from them; the
            # non-centred pair would trade off along a ridge), else non-centred
            n_sc_nc, n_sc_ce = sig["scale_params"]
            log_sq = pt.log(sigma_q)[d["walk_root_quantity"]]
            log_sr = pt.zeros(n_wr)
            if n_sc_nc:
                eta = pm.Normal("eta_walk", 0.0, 1.0, shape=n_sc_nc)
                i_nc = d["scale_nc"]
                log_sr = pt.set_subtensor(log_sr[i_nc], log_sq[i_nc] + PRIORS["walk_region_sd"] * eta)
            if n_sc_ce:
                i_ce = d["scale_ce"]
                lc = pm.Normal("log_sigma_region", log_sq[i_ce], PRIORS["walk_region_sd"], shape=n_sc_ce)
                log_sr = pt.set_subtensor(log_sr[i_ce], lc)
            sigma_root = pt.exp(log_sr)
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
        values = pt.zeros(n_walk)
        start = d["walk_start"]
        if n_nc:
            # level at the pivot, steps outwards from it
            nc = d["walk_nc"]
            z = pm.Normal("z_walk", 0.0, 1.0, shape=n_nc)
            zf = pt.set_subtensor(pt.zeros(n_walk)[nc], z)
            inc = d["walk_not_first"] * step * zf
            cs = pt.cumsum(inc)
            cs = cs - (cs[start] - inc[start])  # restart the sum at each series' first cell
            level = d["walk_mean0"] + d["walk_sd0"] * zf[start]
            nc_values = level + cs - cs[d["walk_pivot"]]
            values = pt.set_subtensor(values[nc], nc_values[nc])
        if n_ce:
            # the sampler's coordinates are whitened cells (_walk_whitening):
            # u = B w per block, u the latent values minus their series' prior centre
            ce = d["walk_ce"]
            n_blocks, size = sig["whiten"]
            w = pm.Flat("w_walk", shape=n_ce)
            block, pos = d["whiten_block"], d["whiten_pos"]
            wb = pt.set_subtensor(pt.zeros((n_blocks, size))[block, pos], w)
            # u = B w by back substitution (_walk_whitening): scale, sum from the block's end, scale
            white = d["walk_whiten"].reshape((2, n_blocks, size))
            u = (pt.cumsum((wb * white[0])[:, ::-1], axis=1)[:, ::-1] * white[1])[block, pos]
            values = pt.set_subtensor(values[ce], d["walk_mean0"][ce] + u)
            lev = (values[d["walk_pivot"][ce]] - d["walk_mean0"][ce]) / d["walk_sd0"][ce]
            st_ce = pt.maximum(step[ce], 1e-12)
            stp = (values[ce] - values[d["walk_prev"][ce]]) / st_ce
            lp = pt.switch(pt.gt(d["walk_not_first"][ce], 0.5), -0.5 * stp * stp - pt.log(st_ce), -0.5 * lev * lev)
            pm.Potential("walk_centred", pt.sum(lp))
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
        n_lev, n_con_nc, n_con_ce, n_ref_nb, n_ref_cb = sig["bias_params"]
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
        if n_con_nc or n_con_ce:
            q_of_con = d["con_quantity"]
            con = pt.zeros(n_con_nc + n_con_ce)
            if n_con_nc:  # contrasts the data say little about: non-centred
                zc = pm.Normal("z_bias", 0.0, 1.0, shape=n_con_nc)
                con = pt.set_subtensor(con[d["con_nc"]], tau[q_of_con[d["con_nc"]]] * zc)
            if n_con_ce:  # contrasts the data pin (several sources, tight claims): centred
                cc = pm.Normal("bias_centred", 0.0, tau[q_of_con[d["con_ce"]]], shape=n_con_ce)
                con = pt.set_subtensor(con[d["con_ce"]], cc)
            delta = delta + pt.dot(d["con_basis"], con)
        if has_ref:
            # with a reference: its bias is 0, the others' ~ N(mu, tau)
            mu = pm.Normal("bias_mean", 0.0, PRIORS["bias_mean_sd"], dims="quantity")
            centre = d["src_ref_centre"] * mu[q_of_src]
            if n_ref_nb:
                nb = d["ref_nb"]
                zb = pm.Normal("z_bias_ref", 0.0, 1.0, shape=n_ref_nb)
                delta = pt.set_subtensor(delta[nb], centre[nb] + tau[q_of_src[nb]] * zb)
            if n_ref_cb:
                cb = d["ref_cb"]
                db = pm.Normal("bias_centred_ref", centre[cb], tau[q_of_src[cb]], shape=n_ref_cb)
                delta = pt.set_subtensor(delta[cb], db)
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
    n_nc, n_ce = sig["walk_params"]
    out: dict[str, np.ndarray] = {}
    if has_walk:
        log_sq = free["sigma_walk_log__"][:, d["walk_root_quantity"]]
        out["sigma_walk"] = np.exp(free["sigma_walk_log__"])
        log_sr = np.zeros((n, n_wr))
        n_sc_nc, n_sc_ce = sig["scale_params"]
        if n_sc_nc:
            i_nc = d["scale_nc"]
            log_sr[:, i_nc] = log_sq[:, i_nc] + PRIORS["walk_region_sd"] * free["eta_walk"]
        if n_sc_ce:
            log_sr[:, d["scale_ce"]] = free["log_sigma_region"]
        scales = np.exp(log_sr)
        if n_sq:
            out["sigma_share"] = np.exp(free["sigma_share_log__"])
            scales = np.concatenate([scales, out["sigma_share"]], axis=1)
        step = scales[:, d["walk_scale_idx"]] * d["walk_sqrt_dt"]
    else:
        step = np.zeros((n, n_walk))
    values = np.zeros((n, n_walk))
    start = d["walk_start"]
    if n_nc:
        nc = d["walk_nc"]
        zf = np.zeros((n, n_walk))
        zf[:, nc] = free["z_walk"]
        inc = d["walk_not_first"] * step * zf
        cs = np.cumsum(inc, axis=1)
        cs = cs - (cs[:, start] - inc[:, start])
        level = d["walk_mean0"] + d["walk_sd0"] * zf[:, start]
        values[:, nc] = (level + cs - cs[:, d["walk_pivot"]])[:, nc]
    if n_ce:
        ce = d["walk_ce"]
        n_blocks, size = sig["whiten"]
        block, pos = d["whiten_block"], d["whiten_pos"]
        wb = np.zeros((n, n_blocks, size))
        wb[:, block, pos] = free["w_walk"]
        white = d["walk_whiten"].reshape((2, n_blocks, size))
        u = (np.cumsum((wb * white[0])[:, :, ::-1], axis=2)[:, :, ::-1] * white[1])[:, block, pos]
        values[:, ce] = d["walk_mean0"][ce] + u
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
    n_lev, n_con_nc, n_con_ce, n_ref_nb, n_ref_cb = sig["bias_params"]
    tau = np.exp(free["bias_sd_log__"])
    out["bias_sd"] = tau
    delta = np.zeros((n, n_src))
    if n_lev:
        zm_full = np.zeros((n, n_q))
        zm_full[:, d["bias_level_q"]] = free["z_bias_mean"]
        delta = delta + tau[:, q_of_src] * d["bias_level_scale"] * zm_full[:, q_of_src]
    if n_con_nc or n_con_ce:
        q_of_con = d["con_quantity"]
        con = np.zeros((n, n_con_nc + n_con_ce))
        if n_con_nc:
            con[:, d["con_nc"]] = tau[:, q_of_con[d["con_nc"]]] * free["z_bias"]
        if n_con_ce:
            con[:, d["con_ce"]] = free["bias_centred"]
        delta = delta + con @ d["con_basis"].T
    if has_ref:
        centre = d["src_ref_centre"] * free["bias_mean"][:, q_of_src]
        if n_ref_nb:
            nb = d["ref_nb"]
            delta[:, nb] = centre[:, nb] + tau[:, q_of_src[nb]] * free["z_bias_ref"]
        if n_ref_cb:
            delta[:, d["ref_cb"]] = free["bias_centred_ref"]
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
