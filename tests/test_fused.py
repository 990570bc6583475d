"""The fused claims' term (estimates._fused) against the symbolic one, scipy and itself compiled by Numba.

No MCMC: values and gradients at chosen and random points.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import special, stats

from estimates import _fused
from estimates.claims import normalise
from estimates.interpret import Interpretation, shapes_table
from estimates.model import SHAPES, _claim_terms, build, describe

FAST = pytensor.config.change_flags(mode="FAST_COMPILE")

# z from the far lower tail (the asymptotic branch below -20) to the upper tail
Z = np.concatenate([np.linspace(-45.0, -20.5, 9), [-20.0, -19.99], np.linspace(-15.0, 9.0, 25)])


def _one_shape(k: int, y: np.ndarray, s: np.ndarray, a: np.ndarray, b: np.ndarray, robust=None):
    """The fused kernel's sum and gradients with one claim per cell, all of shape code ``k``, one source each."""
    n = len(y)
    idx = np.arange(n)
    rob = np.array([0.0, 1.0]) if robust is None else np.asarray(robust, float)
    return _fused.claims_logp(
        np.asarray(y, float),
        np.zeros(n),
        np.log(s),
        np.ones(n),
        np.asarray(a, float),
        np.asarray(b, float),
        np.asarray(a, float),
        np.ones(n),
        rob,
        idx,
        idx,
        np.zeros(n),
        idx,
        np.full(n, k),
        robust is not None,
    )


def _symbolic(k: int, y: np.ndarray, s: np.ndarray, a: np.ndarray, b: np.ndarray, robust=None):
    """The symbolic term (estimates.model._claim_terms) and its gradient in y and log s, evaluated by PyTensor.

    The robust mixture is compiled with PyTensor's rewrites (FAST_RUN), as
    models are: its ``logaddexp`` is ``log(exp + exp)`` until a rewrite
    makes it stable, and far from a claim both terms underflow without it.
    """
    n = len(y)
    yv, lsv = pt.dvector("y"), pt.dvector("log_s")
    d = {
        "claim_a": pt.as_tensor(np.asarray(a, float)),
        "claim_b": pt.as_tensor(np.asarray(b, float)),
        "claim_observed": pt.as_tensor(np.asarray(a, float)),
        "robust": pt.as_tensor(np.array([0.0, 1.0]) if robust is None else np.asarray(robust, float)),
    }
    for j, name in enumerate(SHAPES):
        d[f"claims_{name}"] = pt.as_tensor(np.arange(n) if j == k else np.zeros(0, np.int64))
    present = {name: j == k for j, name in enumerate(SHAPES)}
    ll = _claim_terms(d, yv, pt.exp(lsv), present, robust=robust is not None)
    total = pt.sum(ll)
    mode = "FAST_RUN" if robust is not None else "FAST_COMPILE"
    fn = pytensor.function([yv, lsv], [ll, *pt.grad(total, [yv, lsv])], mode=mode)
    return fn(np.asarray(y, float), np.log(s))


def _scipy(k: int, y, s, a, b):
    """Each shape's log-likelihood from scipy (the box as a difference of log-CDFs in the lower tail)."""
    if k == _fused.NORMAL:
        return stats.norm.logpdf(a, y, s)
    if k == _fused.LOWER:
        return special.log_ndtr((y - a) / s)
    if k == _fused.UPPER:
        return special.log_ndtr((b - y) / s)
    u, v = (y - a) / s, (y - b) / s
    flip = u + v > 0
    p, q = np.where(flip, -v, u), np.where(flip, -u, v)
    lp, lq = special.log_ndtr(p), special.log_ndtr(q)
    return lp + np.log(-np.expm1(lq - lp)) - np.log(b - a)


def _points(k: int):
    """Claims whose standardised distance covers :data:`Z`, with spreads 0.05-2 and box widths 0.1-3 spreads."""
    rng = np.random.default_rng(10 + k)
    n = len(Z)
    s = rng.uniform(0.05, 2.0, n)
    a = rng.normal(8.0, 1.0, n)
    b = a + s * rng.uniform(0.1, 3.0, n)
    if k == _fused.UPPER:
        y = b - Z * s
    elif k == _fused.BOX:  # both ends in the tail on either side, and inside
        y = np.where(np.arange(n) % 2 == 0, a + Z * s, b - Z * s)
    else:
        y = a + Z * s
    return y, s, a, b


@pytest.mark.parametrize("k", [_fused.NORMAL, _fused.BOX, _fused.LOWER, _fused.UPPER], ids=SHAPES)
def test_each_shape_matches_scipy_and_the_symbolic_term_with_its_gradient(k):
    """Values against scipy; values and gradients (in y and log s) against the symbolic graph's, from tail to tail.

    Tolerances: the values agree with scipy to 1e-9 relative (scipy's log_ndtr
    and the branch-safe one differ by a few ulp, and in the box's near
    tail the difference of two probabilities carries their rounding
    relative to a difference 1e-3 of their size); the gradients with the
    symbolic graph's to 1e-9 relative (the same derivatives taken in another
    order of operations).
    """
    y, s, a, b = _points(k)
    lls = []
    grads = []
    for i in range(len(y)):  # one claim at a time: the kernel returns the sum
        total, g_cell, _, g_rel = _one_shape(k, y[i : i + 1], s[i : i + 1], a[i : i + 1], b[i : i + 1])
        lls.append(total)
        grads.append((g_cell[0], g_rel[0]))
    got = np.array(lls)
    gy, gls = np.array(grads).T
    np.testing.assert_allclose(got, _scipy(k, y, s, a, b), rtol=1e-9, atol=1e-12)
    ll, dy, dls = _symbolic(k, y, s, a, b)
    np.testing.assert_allclose(got, ll, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gy, dy, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gls, dls, rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(gy)) and np.all(np.isfinite(gls))


@pytest.mark.parametrize("k", [_fused.NORMAL, _fused.BOX, _fused.LOWER, _fused.UPPER], ids=SHAPES)
def test_the_robust_mixture_matches_the_symbolic_term(k):
    """With a wild-claim weight of 0.05 (sd 2): the mixture's value and gradient as the symbolic graph has them."""
    y, s, a, b = _points(k)
    robust = [0.05, 2.0]
    total, g_cell, _, g_rel = _one_shape(k, y, s, a, b, robust=robust)
    ll, dy, dls = _symbolic(k, y, s, a, b, robust=robust)
    assert total == pytest.approx(ll.sum(), rel=1e-12)
    np.testing.assert_allclose(g_cell, dy, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g_rel, dls, rtol=1e-9, atol=1e-12)


def _structure(rows, hierarchy=None, reference=None, robust=False):
    interp = Interpretation()
    cs = normalise(rows, hierarchy=hierarchy, interpretation=interp)
    return describe(shapes_table(cs.used, interp), cs.hierarchy, reference=reference, robust=robust)


ROWS = [
    {"region": "A", "low": 100, "high": 200, "source": "s1", "time": "2020"},
    {"region": "A", "low": 120, "source": "s2", "time": "2020-06"},
    {"region": "B", "high": 300, "source": "s1", "time": "2021"},
    {"region": "B", "value": 150, "source": "s2", "time": "2021"},
    {"region": "A", "value": 154, "kind": "exact", "source": "s3", "time": "2022"},
    {"region": "Both", "low": 250, "high": 400, "source": "s3", "time": "2021"},
    {"region": "All", "low": 500, "source": "s1", "time": "2022"},
    {"region": "A", "low": 1.5, "since": "2020", "time": "2022", "source": "s1"},
]
HIER = {"Both": ["A", "B"], "All": ["Both", "C"]}


@pytest.mark.parametrize("reference,robust", list(itertools.product([None, "s1"], [False, True])))
def test_the_fused_model_is_the_symbolic_model(reference, robust):
    """Every shape, a ratio claim, aggregates: log-density and gradient of the whole model agree at random points.

    Tolerance 1e-10 relative: the fused Op sums the claims' gradients in
    another order than the graph's scatters.
    """
    st = _structure(ROWS, hierarchy=HIER, reference=reference, robust=robust)
    models = [build(st, fused=f) for f in (False, True)]
    with FAST:
        fns = [(m.compile_logp(), m.compile_dlogp()) for m in models]
    rng = np.random.default_rng(5)
    base = models[0].initial_point()
    for _ in range(5):
        point = {k: v + rng.normal(0, 0.7, np.shape(v)) for k, v in base.items()}
        (lp0, dlp0), (lp1, dlp1) = [(f(point), g(point)) for f, g in fns]
        assert lp1 == pytest.approx(lp0, rel=1e-10)
        np.testing.assert_allclose(dlp1, dlp0, rtol=1e-10, atol=1e-10)
    assert _fused.ClaimsLogp in _op_types(models[1])


def test_a_claim_weighted_zero_is_left_out_of_value_and_gradient():
    """Weight 0 (an exact leave-one-out refit) removes a claim: the same as the kernel without it."""
    rng = np.random.default_rng(2)
    n = 6
    y = rng.normal(5.0, 0.3, n)
    args = dict(
        log_bias=np.zeros(1),
        log_reliability=np.array([0.2]),
        robust=np.array([0.0, 1.0]),
        is_robust=False,
    )

    def run(keep, weight):
        idx = np.flatnonzero(keep)
        return _fused.claims_logp(
            y,
            args["log_bias"],
            args["log_reliability"],
            np.full(len(idx), 0.3),
            np.full(len(idx), 4.8),
            np.full(len(idx), 5.4),
            np.full(len(idx), 5.0),
            weight[idx],
            args["robust"],
            idx,
            idx,
            np.zeros(len(idx)),
            np.zeros(len(idx), np.int64),
            np.full(len(idx), _fused.BOX),
            args["is_robust"],
        )

    w = np.ones(n)
    w[2] = 0.0
    with_zero = run(np.ones(n, bool), w)
    without = run(np.arange(n) != 2, np.ones(n))
    assert with_zero[0] == pytest.approx(without[0], rel=1e-14)
    for got, want in zip(with_zero[1:], without[1:], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    assert with_zero[1][2] == 0.0


def test_numba_compiles_the_same_kernel():
    """The Op compiled by Numba (what nutpie runs) gives the Python kernel's numbers, robust or not."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(8)
    for robust in (False, True):
        model = build(_structure(ROWS, hierarchy=HIER, robust=robust), fused=True)
        pt_model_logp = model.logp()
        fns = []
        for mode in ("FAST_COMPILE", "NUMBA"):
            with pytensor.config.change_flags(numba__fastmath=False):
                fns.append(
                    pytensor.function(
                        model.value_vars, [pt_model_logp, *pt.grad(pt_model_logp, model.value_vars)], mode=mode
                    )
                )
        base = model.initial_point()
        for _ in range(3):
            point = [base[v.name] + rng.normal(0, 0.5, np.shape(base[v.name])) for v in model.value_vars]
            py, nb = (f(*point) for f in fns)
            for x, z in zip(py, nb, strict=True):
                np.testing.assert_allclose(z, x, rtol=1e-12, atol=1e-13)


def test_nutpie_compiles_the_fused_model(monkeypatch):
    """Without the kernel, sample() hands nutpie's compile the model with the fused Op (the other engines keep
    the symbolic one)."""
    pytest.importorskip("nutpie")
    from estimates import _nutpie, inference

    seen = []

    class Stop(Exception):
        pass

    def fake_compile(model, key=None):
        seen.append(model)
        raise Stop

    monkeypatch.setattr(_nutpie, "load_compiled", lambda key: None)
    monkeypatch.setattr(_nutpie, "compile_model", fake_compile)
    st = _structure(ROWS, hierarchy=HIER)
    inference.clear_cache()
    with pytest.raises(Stop):
        inference.sample(st, inference.SamplerOptions(sampler="nutpie", kernel=False), 0)
    inference.clear_cache()
    assert _fused.ClaimsLogp in _op_types(seen[0])
    assert _fused.ClaimsLogp not in _op_types(build(st))


def _op_types(model) -> set[type]:
    return {type(v.owner.op) for v in pytensor.graph.ancestors([model.logp()]) if v.owner}
