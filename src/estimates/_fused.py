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

It is used only where the graph is compiled by Numba (nutpie on PyTensor's
graph, ``SamplerOptions(kernel=False)``, :func:`estimates.model.build` with
``fused=True``; by default nutpie samples :mod:`estimates._kernel`); PyMC's C
backend and the JAX backends compile the symbolic term. The two are the same
function: ``tests/test_fused.py`` compares values and gradients, claim shape
by claim shape, in both tails and with the robust mixture, with each other
and with scipy.

The arithmetic is that of :func:`estimates.model.log_ndtr` and
:func:`estimates.model.log_box` (the same branch at ``z = -20``, the same
flip of a box into its lower tail), differentiated by hand; the kernel,
:func:`estimates._kernel.claims_logp`, is also the claims' part of the
whole model's kernel that nutpie samples by default (:mod:`estimates._kernel`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ._kernel import BOX, LOWER, NORMAL, UPPER, claims_logp

#: The claims' kernel is :mod:`estimates._kernel`'s (also part of the whole model's kernel there).
__all__ = ["BOX", "LOWER", "NORMAL", "UPPER", "ClaimsLogp", "claims_logp", "claims_op"]


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
    """A number from the source of this module and of the kernel's: PyTensor's Numba cache key of the Op.

    PyTensor keys its on-disk cache by the Op's class and properties, not
    by the code behind them; without this, a changed kernel would be loaded
    from the cache as it was before the change.
    """
    from pathlib import Path

    here = Path(__file__).parent
    text = b"".join((here / f).read_bytes() for f in ("_fused.py", "_kernel.py"))
    return int(hashlib.sha256(text).hexdigest()[:15], 16)
