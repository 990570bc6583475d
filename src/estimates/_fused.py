"""The claims' log-likelihood and its gradient as one PyTensor Op, for the Numba backend.

Written symbolically (:func:`estimates.model._claim_terms`), the claims'
term and its gradient are 34 (medium benchmark) to 38 (article) nodes of
the compiled graph: gathers of each claim's cell, source bias and
reliability, a selection per shape, the log-Phi branches, their gradients
and the scatters back, each a call that allocates its output.
:class:`ClaimsLogp` does the same arithmetic in one loop over the claims
and returns the sum and its gradient with respect to the cells'
log-counts, the sources' log-biases and log-reliabilities at once; its
gradient in the graph is those outputs times the incoming gradient. On the
medium benchmark (2,179 claims) a log-density and gradient went from 155
to 99 microseconds; on the article (10 claims) from 26 to 24, its cost
being the rest of the graph (``docs/performance.md``, Geometry).

It is used only where the graph is compiled by Numba (nutpie's default
backend, :func:`estimates.model.build` with ``fused=True``); PyMC's C
backend and the JAX backends compile the symbolic term. The two are the same
function: ``tests/test_fused.py`` compares values and gradients, claim shape
by claim shape, in both tails and with the robust mixture, with each other
and with scipy.

The arithmetic is that of :func:`estimates.model.log_ndtr` and
:func:`estimates.model.log_box` (the same branch at ``z = -20``, the same
flip of a box into its lower tail), differentiated by hand.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
_CUT = -20.0

try:  # plain Python functions that Numba compiles into the Op's kernel when it is used
    from numba.extending import register_jitable as _jitable
except ImportError:  # pragma: no cover - without Numba they stay plain Python (the Op's perform)

    def _jitable(f: Any) -> Any:
        return f


#: Codes of the claim shapes in the ``shape`` input (the order of :data:`estimates.model.SHAPES`).
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


class ClaimsLogp(Op):
    """The claims' summed log-likelihood and its gradient (:func:`claims_logp`) as one node.

    Inputs, in order: ``log_count``, ``log_bias``, ``log_reliability``
    (the model's variables), ``spread``, ``a``, ``b``, ``observed``,
    ``weight``, ``robust`` (numbers), ``time_cell``, ``since_cell``,
    ``ratio``, ``source``, ``shape`` (the layout). Outputs: the sum and its
    gradient with respect to the first three inputs. Only the sum can be
    differentiated; its gradient is the other outputs (so a log-density
    and its gradient evaluate the claims once).
    """

    __props__ = ("robust",)

    def __init__(self, robust: bool) -> None:
        self.robust = bool(robust)

    def make_node(self, *inputs: Any) -> Apply:
        if len(inputs) != 14:
            raise TypeError(f"ClaimsLogp takes 14 inputs, not {len(inputs)}")
        kinds = ["float64"] * 9 + ["int64", "int64", "float64", "int64", "int64"]
        ins = [pt.as_tensor_variable(x).astype(k) for x, k in zip(inputs, kinds, strict=True)]
        return Apply(self, ins, [pt.dscalar(), pt.dvector(), pt.dvector(), pt.dvector()])

    def perform(self, node: Any, inputs: list, outputs: list) -> None:
        total, *grads = claims_logp(*inputs, self.robust)
        outputs[0][0] = np.asarray(total)
        for k, g in enumerate(grads, start=1):
            outputs[k][0] = g

    def connection_pattern(self, node: Any) -> list[list[bool]]:
        return [[True] * 4 if i < 9 else [False] * 4 for i in range(14)]

    def L_op(self, inputs: list, outputs: list, output_grads: list) -> list:
        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            raise NotImplementedError("ClaimsLogp: only its first output (the sum) can be differentiated")
        g = output_grads[0]
        return [
            g * outputs[1],
            g * outputs[2],
            g * outputs[3],
            *(grad_not_implemented(self, i, inputs[i]) for i in range(3, 9)),
            *(disconnected_type() for _ in range(9, 14)),
        ]


_OPS: dict[bool, ClaimsLogp] = {}


def claims_op(robust: bool) -> ClaimsLogp:
    """The :class:`ClaimsLogp` Op, with or without the robust mixture."""
    return _OPS.setdefault(bool(robust), ClaimsLogp(robust))


try:
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key
except ImportError:  # pragma: no cover - without Numba the Op evaluates in Python (perform)
    pass
else:

    @register_funcify_default_op_cache_key(ClaimsLogp)
    def _numba_claims(op: ClaimsLogp, node: Any = None, **kwargs: Any) -> tuple[Any, int]:
        is_robust = op.robust

        @numba_njit(error_model="numpy", fastmath=False)  # IEEE, as the rest of the graph (estimates._nutpie)
        def claims(lc, lb, lr, spread, a, b, observed, weight, robust, tc, sc, ratio, src, shape):  # noqa: ANN001, ANN202
            total, g_cell, g_bias, g_rel = claims_logp(
                lc, lb, lr, spread, a, b, observed, weight, robust, tc, sc, ratio, src, shape, is_robust
            )
            return np.asarray(total), g_cell, g_bias, g_rel

        return claims, _source_key()


def _source_key() -> int:
    """A number from this module's source: PyTensor's Numba cache key of the Op, so an edit compiles anew.

    PyTensor keys its on-disk cache by the Op's class and properties, not
    by the code behind them; without this, a changed kernel would be loaded
    from the cache as it was before the change.
    """
    from pathlib import Path

    return int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15], 16)
