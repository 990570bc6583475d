"""The walk's whitening as one PyTensor Op, for the graphs PyMC's C backend, Numba and JAX compile.

The sampler's walk coordinates ``w`` are turned into cells ``u = R^-T w``
per block, ``R R^T`` the block's rough posterior precision at its series'
walk scale (:func:`estimates.model.whiten_walk`; ``docs/model.md``, *What
the sampler sees*). ``R`` is lower bidiagonal, so ``u`` and its gradient
are two short recursions per block. Written as PyTensor's batched dense
Cholesky factor and triangular solve, it made one log-density and
gradient in PyMC's C backend 6-12 times slower (``Blockwise`` loops over
the blocks in Python, and the Cholesky factor's gradient is dense:
article 1,265 us against 194 us with these Ops, medium 3,880 against 325,
``python benchmarks/gradient.py article medium --c``), and so PyMC's NUTS
and ADVI. :class:`WhitenWalk` runs the recursion of
:func:`estimates.model.whiten_walk` (the kernel, :mod:`estimates._kernel`,
runs the same one inside the whole model) compiled by Numba, and its
gradient is :class:`WhitenWalkGrad`, the reverse pass of the kernel.

In PyTensor's Numba backend both Ops are the same Numba functions; JAX
(numpyro through PyMC, nutpie's JAX backend) takes the dense Cholesky
factor and differentiates it itself (:func:`register_jax`, called by the
engines that need it, so that building a model does not import JAX).
``tests/test_whiten.py`` holds the Ops to the dense factor, their gradient
to finite differences, and the graph's log-density to the kernel's.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytensor.tensor as pt
from numba import njit
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

__all__ = ["WhitenWalk", "WhitenWalkGrad", "register_jax", "whiten", "whiten_forward", "whiten_vjp"]


@njit(cache=True, error_model="numpy", fastmath=False)  # IEEE, as the rest of the compiled code
def _factor(
    t: float, terms: np.ndarray, bl: int, d: np.ndarray, ell: np.ndarray, s_at: np.ndarray, h_at: np.ndarray
) -> None:
    """Block ``bl``'s factor at ``tau = t`` into ``d``, ``ell`` (and the recursion's ``s_p``, ``h_p``).

    ``R_pp = d_p``, ``R_{p+1,p} = l_p`` from each step's precision ``h_p =
    tau f_p + g_p``: ``d_p^2 = s_p + h_p``, ``l_p = -h_p / d_p``, ``s_{p+1}
    = a_{p+1} + tau c_{p+1} + h_p s_p / (s_p + h_p)``
    (:func:`estimates.model.whiten_walk`).
    """
    size = d.shape[0]
    s = terms[0, bl, 0] + t * terms[2, bl, 0]
    for p in range(size):
        h = t * terms[1, bl, p] + terms[3, bl, p]
        s_at[p], h_at[p] = s, h
        d[p] = math.sqrt(s + h)
        ell[p] = -h / d[p]
        if p + 1 < size:
            s = terms[0, bl, p + 1] + t * terms[2, bl, p + 1] + h * s / (s + h)


@njit(cache=True, error_model="numpy", fastmath=False)
def _back_substitute(wb: np.ndarray, bl: int, d: np.ndarray, ell: np.ndarray, u: np.ndarray) -> None:
    """``u = R^-T w`` for block ``bl``, from the block's end."""
    nxt = 0.0
    for p in range(d.shape[0] - 1, -1, -1):
        nxt = (wb[bl, p] - ell[p] * nxt) / d[p]
        u[p] = nxt


@njit(cache=True, error_model="numpy", fastmath=False)
def whiten_forward(wb: np.ndarray, tau: np.ndarray, terms: np.ndarray) -> tuple[np.ndarray, float]:
    """``(u, log |det du/dw|)`` for blocks ``wb`` (n_blocks, size) at ``tau`` (n_blocks); ``terms`` (4, n_blocks, size).

    Per block the factor ``R`` (:func:`_factor`), then ``u`` by back
    substitution; the log-determinant is ``-sum log d``.
    """
    n_blocks, size = wb.shape
    u = np.empty((n_blocks, size))
    d, ell, s_at, h_at = np.empty(size), np.empty(size), np.empty(size), np.empty(size)
    log_det = 0.0
    for bl in range(n_blocks):
        _factor(tau[bl], terms, bl, d, ell, s_at, h_at)
        _back_substitute(wb, bl, d, ell, u[bl])
        for p in range(size):
            log_det -= math.log(d[p])
    return u, log_det


@njit(cache=True, error_model="numpy", fastmath=False)
def whiten_vjp(
    wb: np.ndarray, tau: np.ndarray, terms: np.ndarray, g_u: np.ndarray, g_log_det: float
) -> tuple[np.ndarray, np.ndarray]:
    """The gradient of ``sum(g_u * u) + g_log_det * log_det`` in ``wb`` and ``tau`` (:func:`whiten_forward`).

    In ``w``: ``R^-1 g_u`` by forward substitution. In ``tau``: ``u`` moves
    with ``R`` (``du = -R^-T dR^T u``), ``R``'s derivative by forward
    accumulation of the recursion, and ``log_det = -sum log d`` with it.
    """
    n_blocks, size = wb.shape
    g_wb = np.empty((n_blocks, size))
    g_tau = np.zeros(n_blocks)
    d, ell, s_at, h_at, u = np.empty(size), np.empty(size), np.empty(size), np.empty(size), np.empty(size)
    for bl in range(n_blocks):
        _factor(tau[bl], terms, bl, d, ell, s_at, h_at)
        _back_substitute(wb, bl, d, ell, u)
        prv = 0.0
        gt = 0.0
        ds = terms[2, bl, 0]  # d s_p / d tau
        for p in range(size):
            v = (g_u[bl, p] - (ell[p - 1] * prv if p > 0 else 0.0)) / d[p]
            g_wb[bl, p] = v
            prv = v
            f = terms[1, bl, p]
            dd = (ds + f) / (2.0 * d[p])
            dl = (-f - ell[p] * dd) / d[p]
            u_next = u[p + 1] if p + 1 < size else 0.0
            gt -= v * (dd * u[p] + dl * u_next) + g_log_det * dd / d[p]
            if p + 1 < size:
                sp, hp = s_at[p], h_at[p]
                ds = terms[2, bl, p + 1] + (f * sp * sp + hp * hp * ds) / ((sp + hp) ** 2)
        g_tau[bl] = gt
    return g_wb, g_tau


def _inputs(wb: Any, tau: Any, terms: Any) -> list:
    wb = pt.as_tensor_variable(wb).astype("float64")
    tau = pt.as_tensor_variable(tau).astype("float64")
    terms = pt.as_tensor_variable(terms).astype("float64")
    if (wb.ndim, tau.ndim, terms.ndim) != (2, 1, 3):
        raise TypeError(
            f"WhitenWalk: wb, tau, terms must be 2-, 1- and 3-dimensional, not {wb.ndim, tau.ndim, terms.ndim}"
        )
    return [wb, tau, terms]


class WhitenWalk(Op):
    """``(u, log |det du/dw|)`` from ``(wb, tau, terms)``: :func:`whiten_forward` as one node."""

    __props__ = ()

    def make_node(self, wb: Any, tau: Any, terms: Any) -> Apply:
        return Apply(self, _inputs(wb, tau, terms), [pt.dmatrix(), pt.dscalar()])

    def perform(self, node: Any, inputs: list, outputs: list) -> None:
        u, log_det = whiten_forward(*inputs)
        outputs[0][0] = u
        outputs[1][0] = np.asarray(log_det)

    def infer_shape(self, fgraph: Any, node: Any, shapes: list) -> list:
        return [shapes[0], ()]

    def L_op(self, inputs: list, outputs: list, output_grads: list) -> list:
        wb, tau, terms = inputs
        g_u, g_ld = output_grads
        if isinstance(g_u.type, DisconnectedType):
            g_u = pt.zeros_like(outputs[0])
        if isinstance(g_ld.type, DisconnectedType):
            g_ld = pt.zeros((), dtype="float64")
        g_wb, g_tau = _GRAD(wb, tau, terms, g_u, g_ld)
        # the terms are numbers of the data (the claims' precisions), never a variable of the model
        return [g_wb, g_tau, grad_not_implemented(self, 2, terms)]


class WhitenWalkGrad(Op):
    """``(g_wb, g_tau)`` from ``(wb, tau, terms, g_u, g_log_det)``: :func:`whiten_vjp` as one node."""

    __props__ = ()

    def make_node(self, wb: Any, tau: Any, terms: Any, g_u: Any, g_ld: Any) -> Apply:
        g_u = pt.as_tensor_variable(g_u).astype("float64")
        g_ld = pt.as_tensor_variable(g_ld).astype("float64")
        return Apply(self, [*_inputs(wb, tau, terms), g_u, g_ld], [pt.dmatrix(), pt.dvector()])

    def perform(self, node: Any, inputs: list, outputs: list) -> None:
        wb, tau, terms, g_u, g_ld = inputs
        outputs[0][0], outputs[1][0] = whiten_vjp(wb, tau, terms, g_u, float(g_ld))

    def infer_shape(self, fgraph: Any, node: Any, shapes: list) -> list:
        return [shapes[0], shapes[1]]


_OP = WhitenWalk()
_GRAD = WhitenWalkGrad()


def whiten(wb: Any, tau: Any, terms: Any) -> tuple[Any, Any]:
    """``(u, log |det du/dw|)`` in a PyTensor graph (:class:`WhitenWalk`)."""
    u, log_det = _OP(wb, tau, terms)
    return u, log_det


def _source_key() -> int:
    """PyTensor's Numba cache key of the two Ops: a hash of this module's source (not only the Ops' names)."""
    return int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15], 16)


try:
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key
except ImportError:  # pragma: no cover - PyTensor without its Numba backend: perform() serves
    pass
else:

    @register_funcify_default_op_cache_key(WhitenWalk)
    def _numba_whiten(op: WhitenWalk, node: Any = None, **kwargs: Any) -> tuple[Any, int]:
        @numba_njit(error_model="numpy", fastmath=False)
        def fn(wb, tau, terms):  # noqa: ANN001, ANN202
            u, log_det = whiten_forward(wb, tau, terms)
            return u, np.asarray(log_det)

        return fn, _source_key()

    @register_funcify_default_op_cache_key(WhitenWalkGrad)
    def _numba_whiten_grad(op: WhitenWalkGrad, node: Any = None, **kwargs: Any) -> tuple[Any, int]:
        @numba_njit(error_model="numpy", fastmath=False)
        def fn(wb, tau, terms, g_u, g_ld):  # noqa: ANN001, ANN202
            return whiten_vjp(wb, tau, terms, g_u, g_ld.item())

        return fn, _source_key()


_JAX_REGISTERED = False


def register_jax() -> None:
    """Teach PyTensor's JAX backend the two Ops (imports JAX; the engines that compile to JAX call it)."""
    global _JAX_REGISTERED
    if _JAX_REGISTERED:
        return
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import cholesky, solve_triangular
    from pytensor.link.jax.dispatch import jax_funcify

    def forward(wb, tau, terms):  # noqa: ANN001, ANN202
        a, f, c, g = terms[0], terms[1], terms[2], terms[3]
        t = tau[:, None]
        h = t * f + g
        below = jnp.concatenate([jnp.zeros((f.shape[0], 1)), h[:, :-1]], axis=1)
        q = jax.vmap(jnp.diag)(a + t * c + below + h)
        q = q - jax.vmap(lambda x: jnp.diag(x, 1))(h[:, :-1]) - jax.vmap(lambda x: jnp.diag(x, -1))(h[:, :-1])
        r = cholesky(q, lower=True)
        u = jax.vmap(lambda rr, ww: solve_triangular(rr, ww, trans="T", lower=True))(r, wb)
        return u, -jnp.sum(jnp.log(jnp.diagonal(r, axis1=1, axis2=2)))

    @jax_funcify.register(WhitenWalk)
    def _jax_whiten(op: WhitenWalk, **kwargs: Any) -> Any:
        return forward

    @jax_funcify.register(WhitenWalkGrad)
    def _jax_whiten_grad(op: WhitenWalkGrad, **kwargs: Any) -> Any:
        def grad(wb, tau, terms, g_u, g_ld):  # noqa: ANN001, ANN202
            _, back = jax.vjp(lambda w, t: forward(w, t, terms), wb, tau)
            return back((g_u, g_ld))

        return grad

    _JAX_REGISTERED = True
