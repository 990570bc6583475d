"""Model unit tests: likelihood terms against scipy, finite log-density and
gradient at the initial point, coherent aggregates. No MCMC here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import integrate, special, stats

from estimates.claims import normalise
from estimates.interpret import Interpretation, shapes_table
from estimates.model import build, claim_loglik, describe, log_box, log_ndtr

FAST = pytensor.config.change_flags(mode="FAST_COMPILE")


def _values_fn(model, name):
    """Compile ``name`` as a function of the model's value variables (a point dict)."""
    (out,) = model.replace_rvs_by_values([model[name]])
    with FAST:
        fn = pytensor.function(model.value_vars, out, on_unused_input="ignore")
    names = [v.name for v in model.value_vars]
    return lambda point: fn(*[point[n] for n in names])


def _structure(rows, hierarchy=None, reference=None, robust=False, interp=None):
    interp = interp or Interpretation()
    cs = normalise(rows, hierarchy=hierarchy, interpretation=interp)
    return describe(shapes_table(cs.used, interp), cs.hierarchy, reference=reference, robust=robust)


# ----------------------------------------------------------------------------- log Phi


def test_log_ndtr_matches_scipy_over_tails():
    """The branch-safe log Phi agrees with scipy from deep lower tail to upper tail."""
    z = np.concatenate([np.linspace(-60, -19.5, 50), np.linspace(-19.5, 12, 200)])
    x = pt.dvector("x")
    with FAST:
        f = pytensor.function([x], log_ndtr(x))
        g = pytensor.function([x], pt.grad(pt.sum(log_ndtr(x)), x))
    np.testing.assert_allclose(f(z), special.log_ndtr(z), rtol=1e-9, atol=1e-12)
    grad = g(z)
    assert np.all(np.isfinite(grad))
    # d/dz log Phi(z) = phi(z) / Phi(z)
    expected = np.exp(stats.norm.logpdf(z) - special.log_ndtr(z))
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


# ----------------------------------------------------------------------------- shapes


def _scipy_box(y, a, b, s):
    hi = stats.norm.cdf((y - a) / s)
    lo = stats.norm.cdf((y - b) / s)
    # use the survival form where both CDFs are near one
    alt = stats.norm.sf((y - b) / s) - stats.norm.sf((y - a) / s)
    d = np.where(y > (a + b) / 2, alt, hi - lo)
    return np.log(d) - np.log(b - a)


def test_log_box_matches_scipy_and_is_finite_in_the_tails():
    y = np.linspace(4.0, 12.0, 161)
    a, b, s = 7.5, 8.2, 0.1
    yy = pt.dvector("y")
    with FAST:
        f = pytensor.function([yy], log_box(yy, a, b, s))
        g = pytensor.function([yy], pt.grad(pt.sum(log_box(yy, a, b, s)), yy))
    got = f(y)
    ok = np.abs(y - 7.85) < 2.5  # where scipy's direct difference is still accurate
    np.testing.assert_allclose(got[ok], _scipy_box(y[ok], a, b, s), rtol=1e-7, atol=1e-9)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(g(y)))


def test_box_is_a_proper_density_in_the_stated_bound():
    """Integrated over where the source puts its bound, the box density is 1 for any spread.

    This is what keeps reliability (which scales the spread) from being pushed
    around by the normalising constant.
    """
    yy = pt.dscalar("y")
    aa = pt.dscalar("a")
    w = math.log(2.0)
    sv = pt.dscalar("s")
    with FAST:
        fn = pytensor.function([yy, aa, sv], pt.exp(log_box(yy, aa, aa + w, sv)))
    for s in (0.05, 0.1, 0.4):
        total, _ = integrate.quad(lambda a, s=s: float(fn(8.0, a, s)), 8.0 - w - 12 * s, 8.0 + 12 * s, limit=200)
        assert total == pytest.approx(1.0, abs=1e-6)


ROWS_ALL_KINDS = [
    {"region": "A", "low": 100, "high": 200, "source": "s1", "time": "2020"},
    {"region": "A", "low": 120, "source": "s2", "time": "2020"},
    {"region": "A", "high": 300, "source": "s1", "time": "2021"},
    {"region": "A", "value": 150, "source": "s2", "time": "2021"},
    {"region": "A", "value": 154, "kind": "exact", "source": "s3", "time": "2021"},
    {"region": "A", "low": 1.1, "since": "2020", "time": "2021", "source": "s1"},
]


@pytest.mark.parametrize("robust", [False, True])
@pytest.mark.parametrize("bounds", ["soft", "censored"])
def test_claim_loglik_matches_scipy(robust, bounds):
    """Each shape's per-claim log-likelihood equals its scipy computation."""
    interp = Interpretation(bounds=bounds)
    st = _structure(ROWS_ALL_KINDS, robust=robust, interp=interp)
    rng = np.random.default_rng(1)
    y = np.log(150.0) + rng.normal(0, 0.5, len(st.claim_row))
    y[st.claim_ratio] = rng.normal(0.1, 0.3, st.claim_ratio.sum())
    s = st.claim_spread * rng.uniform(1.0, 2.0, len(y))
    yv, sv = pt.dvector("y"), pt.dvector("s")
    with FAST:
        got = pytensor.function([yv, sv], claim_loglik(st, yv, sv))(y, s)
    a, b = st.claim_a, st.claim_b
    want = np.empty(len(y))
    for i, shape in enumerate(st.claim_shape):
        if shape == "normal":
            want[i] = stats.norm.logpdf(a[i], y[i], s[i])
        elif shape == "box":
            want[i] = _scipy_box(y[i], a[i], b[i], s[i])
        elif shape == "lower":
            want[i] = special.log_ndtr((y[i] - a[i]) / s[i])
        else:
            want[i] = special.log_ndtr((b[i] - y[i]) / s[i])
    if robust:
        obs = np.where((st.claim_kind == "at_most"), b, a)
        wild = stats.norm.logpdf(obs, y, interp.robust_sd)
        want = np.logaddexp(np.log1p(-interp.robust_weight) + want, np.log(interp.robust_weight) + wild)
    np.testing.assert_allclose(got, want, rtol=1e-8)
    expected_shapes = {"soft": "box", "censored": "lower"}
    assert st.claim_shape[1] == expected_shapes[bounds]


# ----------------------------------------------------------------------------- the model

HIER = {"Both": ["A", "B"], "All": ["Both", "C"]}


def _rows(with_time, with_hierarchy):
    rows = [
        {"region": "A", "low": 100, "high": 200, "source": "s1"},
        {"region": "A", "low": 120, "source": "s2"},
        {"region": "B", "high": 300, "source": "s1"},
        {"region": "B", "value": 150, "source": "s2"},
        {"region": "A", "value": 154, "kind": "exact", "source": "s3"},
    ]
    if with_hierarchy:
        rows += [
            {"region": "Both", "low": 250, "high": 400, "source": "s3"},
            {"region": "All", "low": 500, "source": "s1"},
        ]
    if with_time:
        times = ["2020", "2020-06", "2021", "2021", "2022", "2021", "2022"]
        rows = [dict(r, time=t) for r, t in zip(rows, times, strict=False)]
        rows.append({"region": "A", "low": 1.5, "since": "2020", "time": "2022", "source": "s1"})
    return rows


@pytest.mark.parametrize(
    "with_time,with_hierarchy,reference,robust",
    list(itertools.product([False, True], [False, True], [None, "s1"], [False, True])),
)
def test_logp_and_gradient_finite_at_initial_point(with_time, with_hierarchy, reference, robust):
    """Every claim kind, with and without time, hierarchy, reference and robust."""
    st = _structure(
        _rows(with_time, with_hierarchy),
        hierarchy=HIER if with_hierarchy else None,
        reference=reference,
        robust=robust,
    )
    model = build(st)
    ip = model.initial_point()
    with FAST:
        logp = model.compile_logp()(ip)
        dlogp = model.compile_dlogp()(ip)
    assert np.isfinite(logp)
    assert np.all(np.isfinite(dlogp))
    if reference is not None:
        assert st.sources.loc[st.sources["source"] == reference, "is_reference"].all()


def test_aggregates_are_sums_of_leaves_at_any_point():
    """log_count of an aggregate is the log of the sum of its leaves' counts (also nested),
    in every quantity (a second quantity with its own tree guards per-quantity bookkeeping)."""
    second = [
        {"region": "Both", "low": 10, "high": 20, "quantity": "other", "time": "2020"},
        {"region": "C", "value": 5, "quantity": "other", "time": "2021"},
        {"region": "All", "low": 30, "quantity": "other", "time": "2021"},
    ]
    st = _structure(_rows(True, True) + second, hierarchy=HIER)
    model = build(st)
    rng = np.random.default_rng(3)
    ip = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    lc = _values_fn(model, "log_count")(ip)
    cells = st.cells.assign(count=np.exp(lc))
    checked = 0
    for _, grp in cells.groupby(["quantity", "time"]):
        c = grp.set_index("region")["count"]
        assert c["Both"] == pytest.approx(c["A"] + c["B"], rel=1e-10)
        assert c["All"] == pytest.approx(c["A"] + c["B"] + c["C"], rel=1e-10)
        checked += 1
    assert checked == 4 + 2  # four periods of the first quantity, two of the second


def test_periods_are_those_that_occur_and_walk_uses_elapsed_years():
    st = _structure(_rows(True, False))
    times = list(st.cells.loc[st.cells["region"] == "A", "time"])
    assert times == ["2020-06", "2020", "2021", "2022"]  # midpoints: 2020.45 < 2020.50
    # elapsed years between period midpoints: 2020 (mid-year, 2020.50) -> 2020-06
    # (mid-June, 2020.45) are out of order, so the midpoints sort June first.
    pos = list(st.cells.loc[st.cells["region"] == "A", "time_pos"])
    assert pos == sorted(pos)
    dts = st.walk_sqrt_dt[~st.walk_first][:3] ** 2
    assert dts == pytest.approx(np.diff(pos), abs=1e-9)


def test_reference_source_has_zero_bias_and_others_pool_around_estimated_mean():
    st = _structure(_rows(False, False), reference="s2")
    model = build(st)
    assert "bias_mean" in model.named_vars
    lb = _values_fn(model, "log_bias")(model.initial_point())
    ref = st.sources["source"].to_numpy() == "s2"
    assert np.all(lb[ref] == 0.0)


def test_mixed_quantities_single_period_hierarchy_beside_a_time_series():
    """A one-period quantity with an aggregate next to a multi-period quantity without one.

    Guards the indexing of walk scales: series that never step must not index
    scales that do not exist.
    """
    rows = [
        {"region": "A", "value": 100, "quantity": "q1", "time": "2020"},
        {"region": "A", "value": 150, "quantity": "q1", "time": "2021"},
        {"region": "Both", "low": 50, "quantity": "q2", "time": "2021"},
        {"region": "B", "value": 30, "quantity": "q2", "time": "2021"},
    ]
    st = _structure(rows, hierarchy=HIER)
    model = build(st)
    ip = model.initial_point()
    with FAST:
        assert np.isfinite(model.compile_logp()(ip))
        assert np.all(np.isfinite(model.compile_dlogp()(ip)))
    lc = _values_fn(model, "log_count")(ip)
    c = st.cells.assign(n=np.exp(lc)).query("quantity == 'q2'").set_index("region")["n"]
    assert c["Both"] == pytest.approx(c["A"] + c["B"])


def test_whitened_walk_is_the_inverse_transposed_cholesky_factor_at_each_scale(make_planted_world):
    """The sampler's ``w_walk`` are whitened cells: per block ``u = R^-T w``, ``R R^T`` its precision at its scale.

    ``whiten_walk`` runs a cancellation-free recursion; here it is held to
    numpy's dense Cholesky factor of ``walk_precision`` at random scales
    (1e-10 relative: two orders of summation of the same factor), its
    log-determinant to ``slogdet``, and the precision to its parts: claims
    and the level prior on the diagonal, ``-tau / dt`` between neighbours.
    """
    from estimates.model import (
        WHITEN_TERMS,
        _claim_precision,
        _whitening_layout,
        model_data,
        walk_precision,
        whiten_walk,
    )

    claims, _ = make_planted_world()
    st = _structure(claims.drop(columns=["claim_id", "quote"], errors="ignore"))
    md = model_data(st)
    block, pos, n_blocks, size = _whitening_layout(st)
    assert n_blocks == 3 and size == 4  # three regions, four years: one block each
    terms = md["walk_whiten"].reshape(WHITEN_TERMS, n_blocks, size)
    rng = np.random.default_rng(8)
    for tau in (np.zeros(n_blocks), rng.uniform(0.01, 400.0, n_blocks), np.full(n_blocks, 1e8)):
        q = walk_precision(terms, tau)
        r = np.linalg.cholesky(q)
        w = rng.normal(size=(5, n_blocks, size))
        u, log_det = whiten_walk(w, np.broadcast_to(tau, (5, n_blocks)), terms)
        want = np.linalg.solve(np.swapaxes(r, 1, 2)[None], w[..., None])[..., 0]
        np.testing.assert_allclose(u, want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(log_det, -0.5 * np.linalg.slogdet(q)[1].sum(), rtol=1e-12)
    # the walk's part: neighbours in a block are one step apart, dt = 1 year here
    dt = st.walk_sqrt_dt**2
    q1 = walk_precision(terms, np.full(n_blocks, 2.0))
    q0 = walk_precision(terms, np.zeros(n_blocks))
    step = ~st.walk_first
    np.testing.assert_allclose(q1[block[step], pos[step], pos[step] - 1], -2.0 / dt[step])
    assert not np.any(np.triu(q0, 1)) and not np.any(np.triu(q1, 2))  # tridiagonal; steps only through tau
    # the diagonal at tau = 0: what the claims pin, plus the level prior at the pivot
    cells = np.arange(len(st.walk_first))
    want = _claim_precision(st) + 1e-6 + np.where(st.walk_pivot == cells, 1.0 / md["walk_sd0"] ** 2, 0.0)
    np.testing.assert_allclose(q0[block, pos, pos], want, rtol=1e-14)


# ----------------------------------------------------------------------------- derived variables in numpy


def _derived_cases(make_planted_world):
    """Structures that between them take every branch of ``expand_draws`` (checked by the test below)."""
    from estimates import load_example

    example = load_example("isis-2022")
    planted, _ = make_planted_world()
    loose = [*_rows(True, True), {"region": "A", "low": 1.2, "since": "2020", "time": "2021", "source": "s4"}]
    # s4 states only a ratio, which says nothing of its bias: with a reference, that bias is non-centred (P = 0)
    rng = np.random.default_rng(1)
    long = [  # six years of tight claims by two sources: the region's walk scale is centred
        {"region": "R", "time": str(y), "source": s, "low": round(c * 0.9), "high": round(c * 1.1)}
        for y, c in zip(range(2015, 2021), 1000 * np.exp(np.cumsum(rng.normal(0, 0.2, 6))), strict=True)
        for s in ("a", "b")
    ]
    return {
        "time, aggregates": _structure(_rows(True, True), hierarchy=HIER),
        "time, aggregates, reference": _structure(_rows(True, True), hierarchy=HIER, reference="s1", robust=True),
        "one period": _structure(_rows(False, False)),
        "article": _structure(example, hierarchy=example.attrs["hierarchy"]),
        "dense": _structure(planted),
        "dense, reference": _structure(planted, reference="A"),
        "a loose source, reference": _structure(loose, hierarchy=HIER, reference="s1"),
        "a loose source": _structure(loose, hierarchy=HIER),
        "long and dense": _structure(long),
    }


def test_derived_variables_in_numpy_are_the_models(make_planted_world, monkeypatch):
    """``expand_draws`` (what nutpie's draws are expanded with) gives the graph's deterministics at random points.

    Tolerance 1e-12 relative: the same operations in the same order, except
    ``log(exp(x))`` (the graph's, PyTensor may rewrite it) and the softplus's
    formula, which differ in the last bits. Series are whitened in blocks
    of 3 here, so the longer ones take the steps between blocks.
    """
    from estimates import model as model_module
    from estimates.model import DERIVED, WHITEN_TERMS, bias_precision, expand_draws, model_data, signature

    monkeypatch.setattr(model_module, "WHITEN_BLOCK", 3)
    branches = set()
    for name, st in _derived_cases(make_planted_world).items():
        model = build(st)
        sig = {k[0]: k[1:] for k in signature(st)}
        md = model_data(st)
        branches |= {
            ("walk", sig["walk"][3]),
            ("a step the claims pin by a ratio", bool(md["walk_whiten"].reshape(WHITEN_TERMS, -1)[3].any())),
            ("a series in more than one block", sig["whiten"][0] > int(st.walk_first.sum())),
            ("shares", sig["scales"][2] > 0 and st.n_logit > 0),
            ("bias level", sig["bias_params"][0] > 0),
            ("bias contrasts", sig["bias_params"][1] > 0),
            ("reference", sig["bias_params"][2] > 0),
            ("a bias the claims pin", bool((bias_precision(st) > 0).any())),
            ("a bias the claims say nothing of", bool((bias_precision(st) == 0).any())),
            ("reliability nc", sig["reliability_params"][0] > 0),
            ("reliability ce", sig["reliability_params"][1] > 0),
            ("sums", sig["sum_cells"][0]),
        }
        names = [n for n in DERIVED if n in model.named_vars]
        (outs) = model.replace_rvs_by_values([model[n] for n in names])
        with FAST:
            fn = pytensor.function(model.value_vars, outs, on_unused_input="ignore")
        rng = np.random.default_rng(8)
        base = model.initial_point()
        points = [{k: v + rng.normal(0, 0.7, np.shape(v)) for k, v in base.items()} for _ in range(4)]
        free = {k: np.stack([p[k] for p in points]) for k in base}
        got = expand_draws(st, model_data(st), free)
        assert list(got) == names, name
        for i, p in enumerate(points):
            want = fn(*[p[v.name] for v in model.value_vars])
            for n, w in zip(names, want, strict=True):
                np.testing.assert_allclose(got[n][i], w, rtol=1e-12, atol=1e-12, err_msg=f"{name}: {n}")
    missing = {b for b, on in branches if on} ^ {b for b, _ in branches}
    assert not missing, f"no case takes the branch(es) {sorted(missing)}"


def test_the_kernel_is_the_models_log_density(make_planted_world, monkeypatch):
    """``estimates._kernel.model_logp`` (what nutpie samples) is the PyMC model's log-density and gradient.

    At random points of layouts that take every branch (see above), in the
    sampler's coordinates. Tolerance 1e-10 relative for the gradient and for
    differences of the log-density between points: the kernel sums in other
    orders than the graph (and writes ``log N`` where PyMC writes a
    log-normal's density plus its transform's Jacobian). The log-density
    itself differs by a constant: PyTensor types the constant 0.5 (a prior
    sd) as float32 and takes its log in float32, 1.9e-9 off per such normal
    term (``pm.logp(pm.Normal.dist(0, 0.5), 0.3)`` against scipy shows it);
    the kernel's log is float64's. A constant does not move the sampler.
    Series are whitened in blocks of 3, as above.
    """
    from estimates import _kernel
    from estimates import model as model_module
    from estimates.model import model_data, pack_numbers

    monkeypatch.setattr(model_module, "WHITEN_BLOCK", 3)

    for name, st in _derived_cases(make_planted_world).items():
        model = build(st)
        free = _kernel.free_variables(st)
        base = model.initial_point()
        assert free == [(v.name, np.size(base[v.name])) for v in model.value_vars], name
        start = np.concatenate([np.ravel(base[v.name]) for v in model.value_vars])
        np.testing.assert_allclose(_kernel.initial_point(st, free), start, rtol=1e-14, atol=1e-15, err_msg=name)
        assert _kernel.variable_dims(st, free) == model.named_vars_to_dims, name
        data = model_data(st)
        ints, floats = _kernel.pack(st, data, free)
        numbers = pack_numbers(data)
        with FAST:
            logp_fn, dlogp_fn = model.compile_logp(), model.compile_dlogp()
        rng = np.random.default_rng(12)
        first = None
        for _ in range(4):
            point = {k: v + rng.normal(0, 0.7, np.shape(v)) for k, v in base.items()}
            x = np.concatenate([np.ravel(point[v.name]) for v in model.value_vars])
            logp, grad = _kernel.model_logp(x, numbers, ints, floats)
            want = float(logp_fn(point))
            assert abs(logp - want) < 1e-8 * x.size, name  # the float32 constant, at most once per coordinate
            first = first or (logp, want)
            assert logp - first[0] == pytest.approx(want - first[1], rel=1e-10, abs=1e-10), name
            np.testing.assert_allclose(grad, dlogp_fn(point), rtol=1e-10, atol=1e-10, err_msg=name)
