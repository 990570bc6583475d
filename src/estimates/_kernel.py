"""The model's whole log-density and its gradient as one Numba function, for nutpie.

:func:`estimates.model.build` writes the model in PyMC, and PyTensor turns
its log-density and gradient into a graph of a few hundred small nodes
(237 on the article example), each a function Numba compiles and, at run
time, a call that allocates its output. :func:`model_logp` is the same
function written out by hand: the priors, the random walks (non-centred and
whitened centred series), the shares and aggregates (log-sum-exp), the
sources' biases and reliabilities and the claims (:func:`claims_logp`),
then the gradient by reverse accumulation through the same steps. It reads
the model's layout from two flat arrays (:func:`pack`), so one compiled
function serves every layout: Numba compiles it once per machine and
caches it on disk, and no model has to be built or compiled per layout.

PyMC's model stays the definition: the C and JAX backends, ADVI and the
tests use it, and ``tests/test_kernel.py`` holds :func:`model_logp` to its
log-density and gradient (1e-10 relative) at random points of layouts that
take every branch. Nothing here imports PyMC or PyTensor.

The claims' part (:func:`claims_logp`, with :func:`_claim` and
:func:`_log_ndtr`) is also the kernel of :class:`estimates._fused.ClaimsLogp`.
Its arithmetic is that of :func:`estimates.model.log_ndtr` and
:func:`estimates.model.log_box` (the same branch at ``z = -20``, the same
flip of a box into its lower tail), differentiated by hand.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
_CUT = -20.0
_PAD = -1.0e3  # as estimates.model._PAD: a padded member's stand-in for log(0)

try:  # plain Python functions that Numba compiles into its callers
    from numba.extending import register_jitable as _jitable
except ImportError:  # pragma: no cover - without Numba they stay plain Python

    def _jitable(f: Any) -> Any:
        return f


#: Codes of the claim shapes (the order of :data:`estimates.model.SHAPES`).
NORMAL, BOX, LOWER, UPPER = 0, 1, 2, 3


@_jitable
def _log_ndtr(z: float) -> tuple[float, float]:
    """``log Phi(z)`` and its derivative, branch-safe (see :func:`estimates.model.log_ndtr`)."""
    if z >= _CUT:
        lp = math.log(0.5 * math.erfc(-z * _SQRT_HALF))
        return lp, math.exp(-0.5 * z * z - _LOG_SQRT_2PI - lp)
    r = 1.0 / (z * z)
    poly = r * (-1.0 + r * (3.0 + r * (-15.0 + 105.0 * r)))
    lp = -0.5 * z * z - math.log(-z) - _LOG_SQRT_2PI + math.log1p(poly)
    dpoly = -1.0 + r * (6.0 + r * (-45.0 + 420.0 * r))  # d poly / d r
    return lp, -z - 1.0 / z + dpoly * (-2.0 * r / z) / (1.0 + poly)


@_jitable
def _claim(k: int, y: float, s: float, log_s: float, a: float, b: float) -> tuple[float, float, float]:
    """One claim's log-likelihood and its derivatives in ``y`` and ``log s``."""
    if k == NORMAL:
        r = (a - y) / s
        return -0.5 * r * r - log_s - _LOG_SQRT_2PI, r / s, r * r - 1.0
    if k == LOWER:
        z = (y - a) / s
        ll, g = _log_ndtr(z)
        return ll, g / s, -g * z
    if k == UPPER:
        z = (b - y) / s
        ll, g = _log_ndtr(z)
        return ll, -g / s, -g * z
    # box: Phi(u) - Phi(v), flipped into the lower tail (p > q, p + q <= 0)
    u = (y - a) / s
    v = (y - b) / s
    if u + v > 0.0:
        p, q, sign = -v, -u, -1.0
    else:
        p, q, sign = u, v, 1.0
    if q >= _CUT:
        # both probabilities are above Phi(-20) = 2.8e-89: their difference
        # directly (as accurate as the difference of their logs, and half
        # the special functions)
        diff = 0.5 * (math.erfc(-p * _SQRT_HALF) - math.erfc(-q * _SQRT_HALF))
        ll = math.log(diff) - math.log(b - a)
        dp = math.exp(-0.5 * p * p - _LOG_SQRT_2PI) / diff
        dq = -math.exp(-0.5 * q * q - _LOG_SQRT_2PI) / diff
    else:
        lp, gp = _log_ndtr(p)
        lq, gq = _log_ndtr(q)
        d = lq - lp
        em = math.expm1(d)
        ll = lp + math.log(-em) - math.log(b - a)
        f = (em + 1.0) / em  # d/dd log(-expm1(d))
        dp = gp * (1.0 - f)
        dq = f * gq
    return ll, sign * (dp + dq) / s, -(dp * p + dq * q)


@_jitable
def claims_logp(
    log_count: np.ndarray,
    log_bias: np.ndarray,
    log_reliability: np.ndarray,
    spread: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    observed: np.ndarray,
    weight: np.ndarray,
    robust: np.ndarray,
    time_cell: np.ndarray,
    since_cell: np.ndarray,
    ratio: np.ndarray,
    source: np.ndarray,
    shape: np.ndarray,
    is_robust: bool,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The weighted sum of the claims' log-likelihoods and its gradient.

    A claim ``i`` reads ``y = log_count[time_cell] - ratio * log_count[since_cell]
    + (1 - ratio) * log_bias[source]`` with spread ``s = spread *
    exp(log_reliability[source])``, as :func:`estimates.model.build` does;
    with ``is_robust`` its likelihood is the mixture with a wild claim
    (weight ``robust[0]``, normal of sd ``robust[1]`` around ``observed``).
    Returns the sum of ``weight * loglik`` and its gradient with respect
    to ``log_count``, ``log_bias`` and ``log_reliability``.
    """
    g_cell = np.zeros(log_count.shape[0])
    g_bias = np.zeros(log_bias.shape[0])
    g_rel = np.zeros(log_reliability.shape[0])
    total = 0.0
    w_ok = w_wild = sd = 0.0
    if is_robust:
        w_ok = np.log1p(-robust[0])
        w_wild = np.log(robust[0])
        sd = robust[1]
    kappa = np.exp(log_reliability)
    for i in range(shape.shape[0]):
        j = source[i]
        r = ratio[i]
        k = shape[i]
        y = log_count[time_cell[i]] - r * log_count[since_cell[i]] + (1.0 - r) * log_bias[j]
        s = spread[i] * kappa[j]
        log_s = math.log(spread[i]) + log_reliability[j] if k == NORMAL else 0.0
        ll, dy, dlog_s = _claim(k, y, s, log_s, a[i], b[i])
        if is_robust:
            rw = (observed[i] - y) / sd
            x0 = w_ok + ll
            x1 = w_wild - 0.5 * rw * rw - math.log(sd) - _LOG_SQRT_2PI
            top = max(x0, x1)
            ll = top + math.log(math.exp(x0 - top) + math.exp(x1 - top))
            share = math.exp(x0 - ll)  # the claim's responsibility of the non-wild part
            dy = share * dy + (1.0 - share) * rw / sd
            dlog_s = share * dlog_s
        wi = weight[i]
        total += wi * ll
        gy = wi * dy
        g_cell[time_cell[i]] += gy
        g_cell[since_cell[i]] -= r * gy
        g_bias[j] += (1.0 - r) * gy
        g_rel[j] += wi * dlog_s  # log s = log spread + log_reliability
    return total, g_cell, g_bias, g_rel


# ----------------------------------------------------------------------------- the layout, packed

#: Index arrays of :func:`estimates.model.model_data` the kernel reads, then the claims' shape codes.
INTS = (
    "walk_root_quantity",
    "walk_scale_idx",
    "walk_pivot",
    "whiten_block",
    "whiten_pos",
    "whiten_scale",
    "walk_prev",
    "sibling_groups",
    "logit_group",
    "leaf_root_cell",
    "leaf_paths",
    "leaf_quantity",
    "cell_members",
    "src_quantity",
    "bias_level_q",
    "con_quantity",
    "ref_b",
    "rel_nc",
    "rel_ce",
    "claim_time_cell",
    "claim_since_cell",
    "claim_source",
    "claim_shape",
)
(
    I_ROOT_Q,
    I_SCALE_IDX,
    I_PIVOT,
    I_BLOCK,
    I_POS,
    I_WHITEN_SCALE,
    I_PREV,
    I_SIB,
    I_LOGIT_GROUP,
    I_LEAF_ROOT,
    I_LEAF_PATHS,
    I_LEAF_Q,
    I_MEMBERS,
    I_SRC_Q,
    I_LEVEL_Q,
    I_CON_Q,
    I_REF_B,
    I_REL_NC,
    I_REL_CE,
    I_TIME_CELL,
    I_SINCE_CELL,
    I_SOURCE,
    I_SHAPE,
) = range(len(INTS))

#: Constant (per layout) real arrays of :func:`estimates.model.model_data` the kernel reads.
FLOATS = (
    "walk_not_first",
    "sibling_mask",
    "cell_mask",
    "bias_level_scale",
    "con_basis",
    "src_ref_centre",
    "src_weights",
    "claim_ratio",
)
F_NOT_FIRST, F_SIB_MASK, F_CELL_MASK, F_LEVEL_SCALE, F_CON_BASIS, F_REF_CENTRE, F_SRC_WEIGHTS, F_RATIO = range(
    len(FLOATS)
)

#: The model's free variables, in :func:`estimates.model.build`'s order (the sampler's coordinates).
FREE = (
    "sigma_walk_log__",
    "z_sigma_region",
    "sigma_share_log__",
    "w_walk",
    "bias_sd_log__",
    "z_bias_mean",
    "w_bias",
    "bias_mean",
    "w_bias_ref",
    "reliability_mean",
    "z_reliability",
    "reliability_centred",
)
(
    X_SIGMA_WALK,
    X_Z_SIGMA_REGION,
    X_SIGMA_SHARE,
    X_W_WALK,
    X_BIAS_SD,
    X_Z_BIAS_MEAN,
    X_W_BIAS,
    X_BIAS_MEAN,
    X_W_BIAS_REF,
    X_RELIABILITY_MEAN,
    X_Z_RELIABILITY,
    X_RELIABILITY_CENTRED,
) = range(len(FREE))

#: Whole numbers of the layout.
META = ("n_walk", "n_total", "n_wr", "n_blocks", "size", "n_q", "n_src", "n_cells", "sum_cells", "robust", "n_dim")
M_N_WALK, M_N_TOTAL, M_N_WR, M_N_BLOCKS, M_SIZE, M_N_Q, M_N_SRC, M_N_CELLS, M_SUM_CELLS, M_ROBUST, M_N_DIM = range(
    len(META)
)

#: Constants of the priors, at the end of the real header (:data:`estimates.model.PRIORS`).
PRIOR_KEYS = (
    "walk_scale",
    "scale_log_sd",
    "walk_region_sd",
    "share_walk_scale",
    "bias_scale",
    "bias_mean_sd",
    "reliability_mean",
    "reliability_mean_sd",
    "reliability_sd",
)
P_WALK, P_SCALE_SD, P_REGION_SD, P_SHARE, P_BIAS, P_BIAS_MEAN_SD, P_REL_MEAN, P_REL_MEAN_SD, P_REL_SD = range(
    len(PRIOR_KEYS)
)

# Where things are in the packed arrays. ``ints`` starts with a header: per
# int array, per real array, per number array and per free variable its
# offset and length (in ``ints``, ``floats``, ``numbers`` and ``x``), then
# the widths of the three padded tables, then META. ``floats`` starts with
# the priors.
_H_INTS = 0
_H_FLOATS = _H_INTS + 2 * len(INTS)
_H_NUMBERS = _H_FLOATS + 2 * len(FLOATS)
_H_FREE = _H_NUMBERS + 2 * 12  # len(estimates.model.NUMBERS), checked in pack()
_H_WIDTH = _H_FREE + 2 * len(FREE)
_H_META = _H_WIDTH + 3
HEADER = _H_META + len(META)
W_SIB, W_PATHS, W_MEMBERS = 0, 1, 2


@_jitable
def _int(ints: np.ndarray, k: int) -> np.ndarray:
    o = ints[_H_INTS + 2 * k]
    return ints[o : o + ints[_H_INTS + 2 * k + 1]]


@_jitable
def _real(ints: np.ndarray, floats: np.ndarray, k: int) -> np.ndarray:
    o = ints[_H_FLOATS + 2 * k]
    return floats[o : o + ints[_H_FLOATS + 2 * k + 1]]


@_jitable
def _number(ints: np.ndarray, numbers: np.ndarray, k: int) -> np.ndarray:
    o = ints[_H_NUMBERS + 2 * k]
    return numbers[o : o + ints[_H_NUMBERS + 2 * k + 1]]


@_jitable
def _span(ints: np.ndarray, k: int) -> tuple[int, int]:
    """Offset and length of free variable ``k`` in the sampler's vector."""
    return ints[_H_FREE + 2 * k], ints[_H_FREE + 2 * k + 1]


@_jitable
def _normal(v: float, mu: float, sd: float) -> tuple[float, float]:
    """``log N(v | mu, sd)`` and its derivative in ``v`` (minus that in ``mu``)."""
    r = (v - mu) / sd
    return -0.5 * r * r - math.log(sd) - _LOG_SQRT_2PI, -r / sd


@_jitable
def _std_normals(x: np.ndarray, grad: np.ndarray, o: int, n: int) -> float:
    """``sum log N(x[o:o+n] | 0, 1)``; adds its gradient to ``grad``."""
    total = 0.0
    for i in range(o, o + n):
        total += -0.5 * x[i] * x[i] - _LOG_SQRT_2PI
        grad[i] -= x[i]
    return total


@_jitable
def _lse_rows(x: np.ndarray, idx: np.ndarray, mask: np.ndarray, width: int, out: np.ndarray) -> None:
    """``out[r]`` = log-sum-exp of ``x[idx[r, :]]`` over ``mask[r, :]`` (padded to ``width``), as the model's."""
    for r in range(out.shape[0]):
        top = -np.inf
        for c in range(width):
            v = x[idx[r * width + c]] if mask[r * width + c] != 0.0 else _PAD
            top = max(top, v)
        acc = 0.0
        for c in range(width):
            v = x[idx[r * width + c]] if mask[r * width + c] != 0.0 else _PAD
            acc += math.exp(v - top)
        out[r] = top + math.log(acc)


@_jitable
def _lse_rows_grad(
    x: np.ndarray, idx: np.ndarray, mask: np.ndarray, width: int, lse: np.ndarray, g_out: np.ndarray, g_x: np.ndarray
) -> None:
    """Adds to ``g_x`` the gradient of :func:`_lse_rows` given ``g_out`` (masked members get none)."""
    for r in range(lse.shape[0]):
        for c in range(width):
            if mask[r * width + c] != 0.0:
                j = idx[r * width + c]
                g_x[j] += g_out[r] * math.exp(x[j] - lse[r])


@_jitable
def model_logp(x: np.ndarray, numbers: np.ndarray, ints: np.ndarray, floats: np.ndarray) -> tuple[float, np.ndarray]:
    """The model's log-density at the sampler's point ``x`` and its gradient.

    ``numbers`` is :func:`estimates.model.pack_numbers`; ``ints`` and
    ``floats`` the layout from :func:`pack`. The same function as the
    log-density of :func:`estimates.model.build`'s model in its value
    space (log-normal scales as normals on their logs, which is their
    density with the log transform's Jacobian).
    """
    meta = ints[_H_META : _H_META + len(META)]
    n_walk, n_total, n_wr = meta[M_N_WALK], meta[M_N_TOTAL], meta[M_N_WR]
    n_blocks, size = meta[M_N_BLOCKS], meta[M_SIZE]
    n_q, n_src, n_cells = meta[M_N_Q], meta[M_N_SRC], meta[M_N_CELLS]
    prior = floats[: len(PRIOR_KEYS)]
    grad = np.zeros(x.shape[0])
    total = 0.0

    # ---------------------------------------------------------------- forward
    # walk scales: log sigma_q (normal on the log), per-region scales around it
    o_sw, n_sw = _span(ints, X_SIGMA_WALK)
    o_lsr, n_lsr = _span(ints, X_Z_SIGMA_REGION)  # one per region scale (n_wr) where there is a walk
    omega = _number(ints, numbers, 11)  # partially non-centred (estimates.model.scale_offsets)
    o_ss, n_ss = _span(ints, X_SIGMA_SHARE)
    root_q = _int(ints, I_ROOT_Q)
    log_sr = np.zeros(n_wr)
    for k in range(n_sw):
        lp, d = _normal(x[o_sw + k], math.log(prior[P_WALK]), prior[P_SCALE_SD])
        total += lp
        grad[o_sw + k] += d
    for i in range(n_lsr):
        log_sr[i] = x[o_lsr + i] + omega[i] * x[o_sw + root_q[i]]
        lp, d = _normal(log_sr[i], x[o_sw + root_q[i]], prior[P_REGION_SD])
        total += lp
        grad[o_lsr + i] += d
        grad[o_sw + root_q[i]] += (omega[i] - 1.0) * d
    scales = np.zeros(n_wr + n_ss)
    for i in range(n_wr):
        scales[i] = math.exp(log_sr[i])
    for k in range(n_ss):
        scales[n_wr + k] = math.exp(x[o_ss + k])
        lp, d = _normal(x[o_ss + k], math.log(prior[P_SHARE]), prior[P_SCALE_SD])
        total += lp
        grad[o_ss + k] += d
    sqrt_dt = _number(ints, numbers, 0)
    mean0 = _number(ints, numbers, 1)
    sd0 = _number(ints, numbers, 2)
    whiten = _number(ints, numbers, 3)
    not_first = _real(ints, floats, F_NOT_FIRST)
    scale_idx = _int(ints, I_SCALE_IDX)
    step = np.zeros(n_walk)
    if n_sw > 0:
        for j in range(n_walk):
            step[j] = scales[scale_idx[j]] * sqrt_dt[j]
    pivot = _int(ints, I_PIVOT)
    values = np.zeros(n_walk)
    # the series, whitened: u = R^-T w per block by back substitution
    o_w, n_w = _span(ints, X_W_WALK)  # one per walk cell
    block = _int(ints, I_BLOCK)
    pos = _int(ints, I_POS)
    prev = _int(ints, I_PREV)
    n_bs = n_blocks * size
    ufull = np.zeros(n_bs)
    w_scale = _int(ints, I_WHITEN_SCALE)
    w_tau = np.zeros(n_blocks)  # 1 / sigma^2 of each block's series
    w_d = np.ones(n_bs)  # R's diagonal, its subdiagonal, and the recursion's s_p and h_p (a step's precision)
    w_l = np.zeros(n_bs)
    w_s = np.zeros(n_bs)
    w_h = np.zeros(n_bs)
    if n_w > 0:
        wb = np.zeros(n_bs)
        for k in range(n_w):
            wb[block[k] * size + pos[k]] = x[o_w + k]
        for bl in range(n_blocks):  # R R^T = the block's precision at its scale (estimates.model.whiten_walk)
            tau_b = 1.0 / scales[w_scale[bl]] ** 2 if n_sw > 0 else 0.0
            w_tau[bl] = tau_b
            o = bl * size
            s_p = whiten[o] + tau_b * whiten[2 * n_bs + o]
            for p in range(size):
                h = tau_b * whiten[n_bs + o + p] + whiten[3 * n_bs + o + p]  # the step's precision
                w_s[o + p] = s_p
                w_h[o + p] = h
                w_d[o + p] = math.sqrt(s_p + h)
                w_l[o + p] = -h / w_d[o + p]
                total -= math.log(w_d[o + p])  # log |det du/dw|
                if p + 1 < size:
                    s_p = whiten[o + p + 1] + tau_b * whiten[2 * n_bs + o + p + 1] + h * s_p / (s_p + h)
            nxt = 0.0
            for p in range(size - 1, -1, -1):
                nxt = (wb[o + p] - w_l[o + p] * nxt) / w_d[o + p]
                ufull[o + p] = nxt
        for j in range(n_w):
            values[j] = mean0[j] + ufull[block[j] * size + pos[j]]
        for j in range(n_w):  # the walk's own density
            if not_first[j] > 0.5:
                st = max(step[j], 1e-12)
                r = (values[j] - values[prev[j]]) / st
                total += -0.5 * r * r - math.log(st)
            else:
                lev = (values[pivot[j]] - mean0[j]) / sd0[j]
                total += -0.5 * lev * lev
    # shares of aggregates: logits within sibling groups
    n_logit = n_walk - n_total
    sib = _int(ints, I_SIB)
    sib_mask = _real(ints, floats, F_SIB_MASK)
    w_sib = ints[_H_WIDTH + W_SIB]
    logit_group = _int(ints, I_LOGIT_GROUP)
    n_groups = sib.shape[0] // w_sib if w_sib > 0 else 0
    lse_sib = np.zeros(n_groups)
    padded = np.zeros(n_logit + 1)
    if n_logit > 0:
        _lse_rows(values[n_total:], sib, sib_mask, w_sib, lse_sib)
        for j in range(n_logit):
            padded[j] = values[n_total + j] - lse_sib[logit_group[j]]
    leaf_root = _int(ints, I_LEAF_ROOT)
    paths = _int(ints, I_LEAF_PATHS)
    w_paths = ints[_H_WIDTH + W_PATHS]
    n_leaf = leaf_root.shape[0]
    leaf = np.zeros(n_leaf)
    for i in range(n_leaf):
        leaf[i] = values[leaf_root[i]]
        if n_logit > 0:
            acc = 0.0
            for c in range(w_paths):
                acc += padded[paths[i * w_paths + c]]
            leaf[i] += acc
    # sources' biases: the quantity's mean bias and contrasts, or around a reference
    q_of_src = _int(ints, I_SRC_Q)
    o_bsd, n_bsd = _span(ints, X_BIAS_SD)
    tau = np.zeros(n_q)
    for q in range(n_bsd):
        tau[q] = math.exp(x[o_bsd + q])
        lp, d = _normal(x[o_bsd + q], math.log(prior[P_BIAS]), prior[P_SCALE_SD])
        total += lp
        grad[o_bsd + q] += d
    delta = np.zeros(n_src)
    o_zm, n_zm = _span(ints, X_Z_BIAS_MEAN)
    level_q = _int(ints, I_LEVEL_Q)
    level_scale = _real(ints, floats, F_LEVEL_SCALE)
    zm_full = np.zeros(n_q)
    if n_zm > 0:
        total += _std_normals(x, grad, o_zm, n_zm)
        for k in range(n_zm):
            zm_full[level_q[k]] = x[o_zm + k]
        for s in range(n_src):
            q = q_of_src[s]
            delta[s] += tau[q] * level_scale[s] * zm_full[q]
    # each contrast (and reference-case bias about its mean) is w r, r =
    # 1 / sqrt(P + 1 / tau^2), P the claims' rough precision on it
    # (estimates.model.bias_precision): its N(0, tau) prior plus log r
    bias_prec = _number(ints, numbers, 10)
    o_wc, n_con = _span(ints, X_W_BIAS)
    con_q = _int(ints, I_CON_Q)
    basis = _real(ints, floats, F_CON_BASIS)
    con = np.zeros(n_con)
    r_con = np.zeros(n_con)
    for c in range(n_con):
        q = con_q[c]
        r = 1.0 / math.sqrt(bias_prec[c] + 1.0 / (tau[q] * tau[q]))
        r_con[c] = r
        con[c] = x[o_wc + c] * r
        lp, d = _normal(con[c], 0.0, tau[q])
        total += lp + math.log(r)
        grad[o_wc + c] += d * r
        # d/d log tau of the prior at fixed con, then through r (d log r = r^2 / tau^2)
        e = r * r / (tau[q] * tau[q])
        grad[o_bsd + q] += -1.0 + (con[c] / tau[q]) ** 2 + (d * con[c] + 1.0) * e
    for s in range(n_src):
        acc = 0.0
        for c in range(n_con):
            acc += basis[s * n_con + c] * con[c]
        delta[s] += acc
    o_mu, n_mu = _span(ints, X_BIAS_MEAN)
    o_wb, n_ref = _span(ints, X_W_BIAS_REF)
    ref_centre = _real(ints, floats, F_REF_CENTRE)
    ref_b = _int(ints, I_REF_B)
    r_ref = np.zeros(n_ref)
    for q in range(n_mu):
        lp, d = _normal(x[o_mu + q], 0.0, prior[P_BIAS_MEAN_SD])
        total += lp
        grad[o_mu + q] += d
    for k in range(n_ref):
        s = ref_b[k]
        q = q_of_src[s]
        r = 1.0 / math.sqrt(bias_prec[n_con + k] + 1.0 / (tau[q] * tau[q]))
        r_ref[k] = r
        off = x[o_wb + k] * r
        delta[s] = ref_centre[s] * x[o_mu + q] + off
        lp, d = _normal(off, 0.0, tau[q])
        total += lp + math.log(r)
        grad[o_wb + k] += d * r
        e = r * r / (tau[q] * tau[q])
        grad[o_bsd + q] += -1.0 + (off / tau[q]) ** 2 + (d * off + 1.0) * e
    # the consensus is the average source's level minus the sources' mean bias
    weights = _real(ints, floats, F_SRC_WEIGHTS)
    leaf_q = _int(ints, I_LEAF_Q)
    mean_bias = np.zeros(n_q)
    for q in range(n_q):
        acc = 0.0
        for s in range(n_src):
            acc += weights[q * n_src + s] * delta[s]
        mean_bias[q] = acc
    for i in range(n_leaf):
        leaf[i] -= mean_bias[leaf_q[i]]
    # reported cells: log-sum-exp of their leaves
    members = _int(ints, I_MEMBERS)
    cell_mask = _real(ints, floats, F_CELL_MASK)
    w_members = ints[_H_WIDTH + W_MEMBERS]
    log_count = np.zeros(n_cells)
    if meta[M_SUM_CELLS] != 0:
        _lse_rows(leaf, members, cell_mask, w_members, log_count)
    else:
        for c in range(n_cells):
            log_count[c] = leaf[members[c * w_members]]
    # reliabilities: softplus, never below 1
    o_mk, n_mk = _span(ints, X_RELIABILITY_MEAN)
    o_wk, n_wk = _span(ints, X_Z_RELIABILITY)
    o_ak, n_ak = _span(ints, X_RELIABILITY_CENTRED)
    rel_nc = _int(ints, I_REL_NC)
    rel_ce = _int(ints, I_REL_CE)
    for q in range(n_mk):
        lp, d = _normal(x[o_mk + q], prior[P_REL_MEAN], prior[P_REL_MEAN_SD])
        total += lp
        grad[o_mk + q] += d
    arg = np.zeros(n_src)
    total += _std_normals(x, grad, o_wk, n_wk)
    for k in range(n_wk):
        s = rel_nc[k]
        arg[s] = x[o_mk + q_of_src[s]] + prior[P_REL_SD] * x[o_wk + k]
    for k in range(n_ak):
        s = rel_ce[k]
        q = q_of_src[s]
        arg[s] = x[o_ak + k]
        lp, d = _normal(x[o_ak + k], x[o_mk + q], prior[P_REL_SD])
        total += lp
        grad[o_ak + k] += d
        grad[o_mk + q] -= d
    log_kappa = np.zeros(n_src)
    for s in range(n_src):
        a = arg[s]  # softplus, stable both ways
        log_kappa[s] = a + math.log1p(math.exp(-a)) if a > 0.0 else math.log1p(math.exp(a))
    # the claims
    lc_total, g_lc, g_delta, g_lk = claims_logp(
        log_count,
        delta,
        log_kappa,
        _number(ints, numbers, 6),
        _number(ints, numbers, 4),
        _number(ints, numbers, 5),
        _number(ints, numbers, 7),
        _number(ints, numbers, 8),
        _number(ints, numbers, 9),
        _int(ints, I_TIME_CELL),
        _int(ints, I_SINCE_CELL),
        _real(ints, floats, F_RATIO),
        _int(ints, I_SOURCE),
        _int(ints, I_SHAPE),
        meta[M_ROBUST] != 0,
    )
    total += lc_total

    # ---------------------------------------------------------------- backward
    for s in range(n_src):  # reliabilities
        ga = g_lk[s] / (1.0 + math.exp(-arg[s]))  # softplus' = sigmoid
        arg[s] = ga  # arg now holds its gradient
    for k in range(n_wk):
        s = rel_nc[k]
        grad[o_mk + q_of_src[s]] += arg[s]
        grad[o_wk + k] += prior[P_REL_SD] * arg[s]
    for k in range(n_ak):
        grad[o_ak + k] += arg[rel_ce[k]]
    g_leaf = np.zeros(n_leaf)  # cells -> leaves
    if meta[M_SUM_CELLS] != 0:
        _lse_rows_grad(leaf, members, cell_mask, w_members, log_count, g_lc, g_leaf)
    else:
        for c in range(n_cells):
            g_leaf[members[c * w_members]] += g_lc[c]
    g_mean = np.zeros(n_q)  # the sources' mean bias
    for i in range(n_leaf):
        g_mean[leaf_q[i]] -= g_leaf[i]
    for q in range(n_q):
        for s in range(n_src):
            g_delta[s] += weights[q * n_src + s] * g_mean[q]
    g_tau = np.zeros(n_q)
    for k in range(n_ref):  # around a reference: d off / d tau = off r^2 / tau^3
        s = ref_b[k]
        q = q_of_src[s]
        r = r_ref[k]
        grad[o_wb + k] += g_delta[s] * r
        g_tau[q] += g_delta[s] * x[o_wb + k] * r * r * r / (tau[q] * tau[q] * tau[q])
        grad[o_mu + q] += g_delta[s] * ref_centre[s]
    if n_con > 0:  # contrasts
        g_con = np.zeros(n_con)
        for s in range(n_src):
            for c in range(n_con):
                g_con[c] += basis[s * n_con + c] * g_delta[s]
        for c in range(n_con):
            q = con_q[c]
            r = r_con[c]
            grad[o_wc + c] += g_con[c] * r
            g_tau[q] += g_con[c] * con[c] * r * r / (tau[q] * tau[q] * tau[q])
    if n_zm > 0:  # the quantity's mean bias
        g_zm = np.zeros(n_q)
        for s in range(n_src):
            q = q_of_src[s]
            g_tau[q] += g_delta[s] * level_scale[s] * zm_full[q]
            g_zm[q] += g_delta[s] * tau[q] * level_scale[s]
        for k in range(n_zm):
            grad[o_zm + k] += g_zm[level_q[k]]
    for q in range(n_bsd):
        grad[o_bsd + q] += g_tau[q] * tau[q]
    g_values = np.zeros(n_walk)  # leaves -> walk values and shares
    g_padded = np.zeros(n_logit + 1)
    for i in range(n_leaf):
        g_values[leaf_root[i]] += g_leaf[i]
        if n_logit > 0:
            for c in range(w_paths):
                g_padded[paths[i * w_paths + c]] += g_leaf[i]
    if n_logit > 0:
        g_lse = np.zeros(n_groups)
        for j in range(n_logit):
            g_values[n_total + j] += g_padded[j]
            g_lse[logit_group[j]] -= g_padded[j]
        g_logits = np.zeros(n_logit)
        _lse_rows_grad(values[n_total:], sib, sib_mask, w_sib, lse_sib, g_lse, g_logits)
        for j in range(n_logit):
            g_values[n_total + j] += g_logits[j]
    g_step = np.zeros(n_walk)
    g_step_scale = np.zeros(scales.shape[0])  # walk scales' gradient (from the whitening, then the steps)
    if n_w > 0:  # the walk's density
        for j in range(n_w):
            if not_first[j] > 0.5:
                st = max(step[j], 1e-12)
                r = (values[j] - values[prev[j]]) / st
                g_values[j] -= r / st
                g_values[prev[j]] += r / st
                if step[j] > 1e-12:
                    g_step[j] += (r * r - 1.0) / st
            else:
                lev = (values[pivot[j]] - mean0[j]) / sd0[j]
                g_values[pivot[j]] -= lev / sd0[j]
        g_u = np.zeros(n_blocks * size)  # whitening: u = R^-T w
        for j in range(n_w):
            g_u[block[j] * size + pos[j]] += g_values[j]
        # w: R^-1 g_u by forward substitution; tau: u = R^-T w moves with R
        # (du = -R^-T dR^T u), R's derivative in tau by forward accumulation
        # of the recursion, and the log-determinant -sum log d with it
        g_wb = np.zeros(n_bs)
        for bl in range(n_blocks):
            o = bl * size
            tau_b = w_tau[bl]
            prv = 0.0
            g_tau = 0.0
            ds = whiten[2 * n_bs + o]
            for p in range(size):
                d_p, l_p, s_p, h = w_d[o + p], w_l[o + p], w_s[o + p], w_h[o + p]
                v = (g_u[o + p] - (w_l[o + p - 1] * prv if p > 0 else 0.0)) / d_p
                g_wb[o + p] = v
                prv = v
                f_p = whiten[n_bs + o + p]
                dd = (ds + f_p) / (2.0 * d_p)
                dl = (-f_p - l_p * dd) / d_p
                u_next = ufull[o + p + 1] if p + 1 < size else 0.0
                g_tau -= v * (dd * ufull[o + p] + dl * u_next) + dd / d_p
                if p + 1 < size:
                    ds = whiten[2 * n_bs + o + p + 1] + (f_p * s_p * s_p + h * h * ds) / ((s_p + h) ** 2)
            if n_sw > 0 and tau_b > 0.0:
                # tau = sigma^-2: d tau / d sigma = -2 tau / sigma
                g_step_scale[w_scale[bl]] += g_tau * (-2.0 * tau_b / scales[w_scale[bl]])
        for k in range(n_w):
            grad[o_w + k] += g_wb[block[k] * size + pos[k]]
    if n_sw > 0:  # walk scales
        g_scales = g_step_scale
        for j in range(n_walk):
            g_scales[scale_idx[j]] += g_step[j] * sqrt_dt[j]
        for i in range(n_lsr):
            g = g_scales[i] * scales[i]
            grad[o_lsr + i] += g
            grad[o_sw + root_q[i]] += omega[i] * g
        for k in range(n_ss):
            grad[o_ss + k] += g_scales[n_wr + k] * scales[n_wr + k]
    return total, grad


def pack(st: Any, data: dict[str, np.ndarray], free: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The layout :func:`model_logp` reads: ``(ints, floats)``.

    ``data`` is :func:`estimates.model.model_data` of the structure ``st``;
    ``free`` the model's free variables as ``(name, size)`` in the
    sampler's order (names from :data:`FREE`).
    """
    from .model import NUMBERS, PRIORS, shape_codes, signature

    if len(NUMBERS) != (_H_FREE - _H_NUMBERS) // 2:
        raise RuntimeError("internal: the kernel's header does not match estimates.model.NUMBERS")
    sig = {k[0]: k[1:] for k in signature(st)}
    arrays = {**data, "claim_shape": shape_codes(data)}
    header = np.zeros(HEADER, dtype=np.int64)
    int_parts, at = [], HEADER
    for k, name in enumerate(INTS):
        a = np.ascontiguousarray(arrays[name], dtype=np.int64).ravel()
        header[_H_INTS + 2 * k : _H_INTS + 2 * k + 2] = at, a.size
        int_parts.append(a)
        at += a.size
    real_parts, at = [np.array([float(PRIORS[p]) for p in PRIOR_KEYS])], len(PRIOR_KEYS)
    for k, name in enumerate(FLOATS):
        a = np.ascontiguousarray(arrays[name], dtype=np.float64).ravel()
        header[_H_FLOATS + 2 * k : _H_FLOATS + 2 * k + 2] = at, a.size
        real_parts.append(a)
        at += a.size
    at = 0
    for k, name in enumerate(NUMBERS):
        header[_H_NUMBERS + 2 * k : _H_NUMBERS + 2 * k + 2] = at, np.size(data[name])
        at += np.size(data[name])
    offsets = dict.fromkeys(FREE, (0, 0))
    at = 0
    for name, size in free:
        if name not in offsets:
            raise RuntimeError(f"internal: the kernel does not know the free variable {name!r}")
        offsets[name] = (at, size)
        at += size
    for k, name in enumerate(FREE):
        header[_H_FREE + 2 * k : _H_FREE + 2 * k + 2] = offsets[name]
    header[_H_WIDTH + W_SIB] = data["sibling_groups"].shape[1]
    header[_H_WIDTH + W_PATHS] = data["leaf_paths"].shape[1]
    header[_H_WIDTH + W_MEMBERS] = data["cell_members"].shape[1]
    n_blocks, size = sig["whiten"]
    meta = {
        "n_walk": sig["walk"][0],
        "n_total": st.n_total,
        "n_wr": sig["scales"][1],
        "n_blocks": n_blocks,
        "size": size,
        "n_q": len(st.quantities),
        "n_src": len(st.sources),
        "n_cells": len(st.cells),
        "sum_cells": int(sig["sum_cells"][0]),
        "robust": int(sig["robust"][0]),
        "n_dim": at,
    }
    header[_H_META : _H_META + len(META)] = [meta[m] for m in META]
    return np.concatenate([header, *int_parts]), np.concatenate(real_parts)


def free_variables(st: Any) -> list[tuple[str, int]]:
    """The model's free variables as ``(name, size)``, in :func:`estimates.model.build`'s order.

    What PyMC's model of ``st`` would list as its value variables (a test
    compares the two), from the structure's signature alone.
    """
    from .model import signature

    sig = {k[0]: k[1:] for k in signature(st)}
    n_q = len(st.quantities)
    has_walk = sig["walk"][3]
    n_wq, _, n_sq = sig["scales"]
    n_wr = sig["scales"][1]
    _, has_ref = sig["sources"]
    n_lev, n_con, n_ref = sig["bias_params"]
    n_rel_nc, n_rel_ce = sig["reliability_params"]
    sizes = {
        "sigma_walk_log__": n_wq if has_walk else 0,
        "z_sigma_region": n_wr if has_walk else 0,
        "sigma_share_log__": n_sq if has_walk else 0,
        "w_walk": sig["walk"][0],
        "bias_sd_log__": n_q,
        "z_bias_mean": n_lev,
        "w_bias": n_con,
        "bias_mean": n_q if has_ref else 0,
        "w_bias_ref": n_ref,
        "reliability_mean": n_q,
        "z_reliability": n_rel_nc,
        "reliability_centred": n_rel_ce,
    }
    return [(name, sizes[name]) for name in FREE if sizes[name] > 0]


def initial_point(st: Any, free: list[tuple[str, int]], data: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """PyMC's initial point of :func:`estimates.model.build`'s model, in the sampler's coordinates.

    Its default, each variable's support point: a normal's mean (given the
    others' support points), a log-normal's mean (on the log scale, ``mu +
    sigma^2 / 2``), 0 for the flat whitened walk and biases. ``data`` is
    :func:`estimates.model.model_data` of ``st`` (made if not given). A test
    compares it with ``model.initial_point()``.
    """
    from .model import PRIORS, model_data

    sd = PRIORS["scale_log_sd"]
    sigma_walk = math.log(PRIORS["walk_scale"]) + 0.5 * sd * sd
    at: dict[str, Any] = {
        "sigma_walk_log__": sigma_walk,
        "sigma_share_log__": math.log(PRIORS["share_walk_scale"]) + 0.5 * sd * sd,
        "bias_sd_log__": math.log(PRIORS["bias_scale"]) + 0.5 * sd * sd,
        "reliability_mean": PRIORS["reliability_mean"],
        "reliability_centred": PRIORS["reliability_mean"],
    }
    if "z_sigma_region" in dict(free):  # N((1 - omega) log sigma_q, .) at log sigma_q's support point
        omega = (data if data is not None else model_data(st))["scale_omega"]
        at["z_sigma_region"] = (1.0 - omega) * sigma_walk
    return np.concatenate([np.broadcast_to(at.get(name, 0.0), (size,)) for name, size in free]) if free else np.zeros(0)


def variable_dims(st: Any, free: list[tuple[str, int]]) -> dict[str, tuple[str, ...]]:
    """The named dimensions of the model's variables (PyMC's ``named_vars_to_dims``); the rest are numbered."""
    dims = {
        "bias_sd": ("quantity",),
        "bias_mean": ("quantity",),  # a free variable only with a reference source
        "log_bias": ("source",),
        "log_count": ("cell",),
        "reliability_mean": ("quantity",),
        "log_reliability": ("source",),
    }
    if "bias_mean" not in dict(free):
        del dims["bias_mean"]
    return dims
