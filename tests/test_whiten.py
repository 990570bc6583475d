"""The walk's whitening as a PyTensor Op (estimates._whiten) against the dense factor, differences and itself compiled.

No MCMC: values and gradients at random blocks and scales.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from estimates import _whiten
from estimates.model import walk_precision, whiten_walk


def _blocks(seed: int, n_blocks: int = 5, size: int = 7):
    """Random precision terms of the kind ``model._walk_precision_terms`` makes, blocks and scales."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.0, 3.0, (n_blocks, size)) * (rng.uniform(size=(n_blocks, size)) < 0.6)  # cells with claims
    a[:, 0] += 1.0  # the level prior at the pivot
    f = np.full((n_blocks, size), 1.0)
    f[:, -1] = 0.0  # a block's last cell has no step after it
    c = np.zeros((n_blocks, size))
    c[1:, 0] = 1.0  # a later block of a series: the step from the block before it
    g = rng.uniform(0.0, 2.0, (n_blocks, size)) * (rng.uniform(size=(n_blocks, size)) < 0.2)  # ratio claims
    g[:, -1] = 0.0
    terms = np.stack([a, f, c, g])
    return rng, terms, rng.uniform(0.05, 400.0, n_blocks), rng.normal(size=(n_blocks, size))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_is_the_inverse_transposed_dense_cholesky_factor(seed):
    """``u = R^-T w`` and ``-log det R`` with ``R`` numpy's Cholesky factor (1e-10: two orders of the same sums)."""
    _, terms, tau, wb = _blocks(seed)
    u, log_det = _whiten.whiten_forward(wb, tau, terms)
    q = walk_precision(terms, tau)
    r = np.linalg.cholesky(q)
    want = np.linalg.solve(np.swapaxes(r, 1, 2), wb[..., None])[..., 0]
    np.testing.assert_allclose(u, want, rtol=1e-10, atol=1e-12)
    assert log_det == pytest.approx(-0.5 * np.linalg.slogdet(q)[1].sum(), rel=1e-12)
    # and the numpy recursion the kernel and expand_draws use, to the last bits
    u_np, ld_np = whiten_walk(wb, tau, terms)
    np.testing.assert_allclose(u, u_np, rtol=1e-14, atol=0)
    assert log_det == pytest.approx(float(ld_np), rel=1e-14)


@pytest.mark.parametrize("seed", [0, 3])
def test_reverse_pass_matches_central_differences(seed):
    """The gradient in ``w`` and ``tau`` against central differences (step 1e-6: error about 1e-9 relative)."""
    rng, terms, tau, wb = _blocks(seed, n_blocks=3, size=5)
    g_u, g_ld = rng.normal(size=wb.shape), 0.7

    def objective(w, t):
        u, ld = _whiten.whiten_forward(w, t, terms)
        return float((g_u * u).sum() + g_ld * ld)

    g_w, g_t = _whiten.whiten_vjp(wb, tau, terms, g_u, g_ld)
    eps = 1e-6
    for i in range(len(tau)):
        e = np.zeros_like(tau)
        e[i] = eps * tau[i]  # relative step: tau runs over four orders of magnitude
        num = (objective(wb, tau + e) - objective(wb, tau - e)) / (2 * e[i])
        assert g_t[i] == pytest.approx(num, rel=1e-6, abs=1e-9)
    for idx in np.ndindex(wb.shape):
        e = np.zeros_like(wb)
        e[idx] = eps
        num = (objective(wb + e, tau) - objective(wb - e, tau)) / (2 * eps)
        assert g_w[idx] == pytest.approx(num, rel=1e-6, abs=1e-8)


def _graph(terms):
    w, t = pt.dmatrix("w"), pt.dvector("tau")
    g_u = pt.dmatrix("g_u")
    u, ld = _whiten.whiten(w, t, terms)
    obj = (g_u * u).sum() + 0.7 * ld
    return [w, t, g_u], [obj, *pytensor.grad(obj, [w, t])]


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_the_op_and_its_gradient_compile_to_the_same_numbers(mode):
    """PyMC's C backend (the Ops' ``perform``) and PyTensor's Numba backend give the functions' values exactly."""
    rng, terms, tau, wb = _blocks(4)
    g_u = rng.normal(size=wb.shape)
    fn = pytensor.function(*_graph(terms), mode=mode)
    obj, g_w, g_t = fn(wb, tau, g_u)
    u, ld = _whiten.whiten_forward(wb, tau, terms)
    want_w, want_t = _whiten.whiten_vjp(wb, tau, terms, g_u, 0.7)
    assert obj == pytest.approx((g_u * u).sum() + 0.7 * ld, rel=1e-14)
    np.testing.assert_array_equal(g_w, want_w)
    np.testing.assert_array_equal(g_t, want_t)


def test_jax_backend_differentiates_the_dense_factor_to_the_same_gradient():
    """numpyro and nutpie's JAX backend: the Ops as a dense Cholesky factor that JAX differentiates."""
    pytest.importorskip("jax")
    _whiten.register_jax()
    rng, terms, tau, wb = _blocks(5)
    g_u = rng.normal(size=wb.shape)
    obj, g_w, g_t = pytensor.function(*_graph(terms), mode="JAX")(wb, tau, g_u)
    want_w, want_t = _whiten.whiten_vjp(wb, tau, terms, g_u, 0.7)
    np.testing.assert_allclose(g_w, want_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_t, want_t, rtol=1e-10, atol=1e-12)


def test_the_model_graph_has_no_batched_linear_algebra(make_planted_world):
    """The PyMC model's log-density graph whitens by the Op, not PyTensor's ``Blockwise`` Cholesky and solve.

    Those loop over the blocks in Python in PyMC's C backend: a log-density
    and gradient of the article took 1,265 us with them, 194 us with the Op
    (``docs/performance.md``, Geometry).
    """
    from pytensor.graph.traversal import ancestors
    from pytensor.tensor.blockwise import Blockwise

    from estimates.claims import normalise
    from estimates.interpret import Interpretation, shapes_table
    from estimates.model import build, describe

    claims, _ = make_planted_world()
    cs = normalise(claims.drop(columns=["claim_id", "quote"], errors="ignore"), interpretation=Interpretation())
    model = build(describe(shapes_table(cs.used, Interpretation()), cs.hierarchy))
    logp = model.logp()
    ops = [v.owner.op for v in ancestors([logp, *pytensor.grad(logp, model.value_vars)]) if v.owner]
    assert any(isinstance(op, _whiten.WhitenWalk) for op in ops)
    assert any(isinstance(op, _whiten.WhitenWalkGrad) for op in ops)
    assert not any(isinstance(op, Blockwise) for op in ops)
