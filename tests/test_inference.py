"""Diagnostics, warnings, seeds and options on fake posteriors (no MCMC)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from estimates._deps import quiet_import
from estimates.errors import ConvergenceWarning, OptionError
from estimates.inference import ESS_MIN, RHAT_MAX, SamplerOptions, diagnostics, seeds, warn_if_unconverged

az = quiet_import("arviz")


def _idata(mixed: bool, n_div: int, rng: np.random.Generator):
    chains, draws = 4, 500
    good = rng.normal(size=(chains, draws, 3))
    if mixed:
        # chains centred in different places: R-hat far above 1.01
        good = good + np.arange(chains)[:, None, None] * 2.0
    const = np.zeros((chains, draws, 2))  # e.g. a reference source's fixed bias
    diverging = np.zeros((chains, draws), dtype=bool)
    diverging.flat[:n_div] = True
    return az.from_dict(
        posterior={"log_count": good, "log_bias": const},
        sample_stats={"diverging": diverging},
    )


def test_diagnostics_of_a_good_posterior():
    d = diagnostics(_idata(False, 0, np.random.default_rng(0)), ["log_count", "log_bias", "absent"], "pymc", 1.5)
    assert d["r_hat_max"] < RHAT_MAX
    assert d["ess_bulk_min"] > ESS_MIN  # 2,000 independent draws
    assert d["divergences"] == 0 and d["converged"] is True
    assert (d["sampler"], d["seconds"]) == ("pymc", 1.5)


def test_constant_variables_are_left_out_and_divergences_counted():
    d = diagnostics(_idata(False, 7, np.random.default_rng(1)), ["log_count", "log_bias"], "nutpie", 1.0)
    assert np.isfinite(d["r_hat_max"])  # the constant log_bias (R-hat NaN) did not poison it
    assert d["divergences"] == 7
    assert d["converged"] is False


@pytest.mark.parametrize("mixed", [False, True])
def test_diagnostics_in_blocks_of_one_element_change_nothing(mixed, monkeypatch):
    """Large variables are diagnosed in blocks of elements (bounded memory); the figures are the same."""
    idata = _idata(mixed, 2, np.random.default_rng(5))
    whole = diagnostics(idata, ["log_count", "log_bias"], "nutpie", 1.0)
    monkeypatch.setattr("estimates.results.BLOCK_BYTES", 1)
    assert diagnostics(idata, ["log_count", "log_bias"], "nutpie", 1.0) == whole


def test_unmixed_chains_fail_and_warn_with_hints():
    d = diagnostics(_idata(True, 3, np.random.default_rng(2)), ["log_count"], "pymc", 1.0)
    assert d["r_hat_max"] > 1.1 and not d["converged"]
    with pytest.warns(ConvergenceWarning) as rec:
        warn_if_unconverged(d, SamplerOptions(draws=500, tune=500))
    msg = str(rec[0].message)
    assert "3 divergent transitions" in msg and "target_accept" in msg
    assert "R-hat" in msg and "tune=1000" in msg


def test_one_chain_has_no_r_hat_and_says_so():
    rng = np.random.default_rng(3)
    one = az.from_dict(
        posterior={"log_count": rng.normal(size=(1, 2000, 3))},
        sample_stats={"diverging": np.zeros((1, 2000), dtype=bool)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy "All-NaN slice" leaking out
        d = diagnostics(one, ["log_count"], "nutpie", 1.0)
    assert np.isnan(d["r_hat_max"]) and d["ess_bulk_min"] > ESS_MIN
    assert d["converged"] is False  # one chain cannot show that chains agree
    with pytest.warns(ConvergenceWarning, match="R-hat needs at least 2 chains"):
        warn_if_unconverged(d, SamplerOptions(chains=1))


@pytest.mark.parametrize(
    ("now", "hint"), [(0.8, "target_accept=0.95 (now 0.8)"), (0.95, "target_accept=0.99 (now 0.95)")]
)
def test_divergence_hint_raises_target_accept_above_the_current_value(now, hint):
    d = {"r_hat_max": 1.001, "ess_bulk_min": 900.0, "divergences": 2}
    with pytest.warns(ConvergenceWarning, match=hint.replace("(", r"\(").replace(")", r"\)")):
        warn_if_unconverged(d, SamplerOptions(target_accept=now))


def test_no_warning_when_converged():
    d = {"r_hat_max": 1.001, "ess_bulk_min": 900.0, "divergences": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_unconverged(d, SamplerOptions())


def test_low_ess_hint_names_more_draws():
    d = {"r_hat_max": 1.001, "ess_bulk_min": 100.0, "divergences": 0}
    with pytest.warns(ConvergenceWarning, match=r"bulk ESS 100 < 400.*draws=4001"):
        warn_if_unconverged(d, SamplerOptions(draws=1000))


def test_one_seed_gives_reproducible_and_distinct_streams():
    s1, g1 = seeds(0)
    s2, g2 = seeds(0)
    s3, _ = seeds(1)
    assert s1 == s2 and s1 != s3
    np.testing.assert_array_equal(g1.random(5), g2.random(5))


@pytest.mark.parametrize(
    "kw",
    [
        {"draws": 0},
        {"tune": -1},
        {"chains": 1.5},
        {"target_accept": 1.0},
        {"sampler": "stan"},
        {"draws": True},
        {"init": "map"},
    ],
)
def test_bad_sampler_options_raise(kw):
    with pytest.raises(OptionError):
        SamplerOptions(**kw)


def test_sampler_defaults_have_one_home():
    """``reconcile``'s and the command line's draws, tune, chains and target acceptance are SamplerOptions'."""
    import inspect

    import estimates as est
    from estimates.cli import _parser

    params = inspect.signature(est.reconcile).parameters
    defaults = SamplerOptions()
    for name in ("draws", "tune", "chains", "target_accept"):
        assert params[name].default == getattr(defaults, name), name
    args = _parser().parse_args(["reconcile", "claims.csv"])
    assert (args.draws, args.tune, args.chains) == (defaults.draws, defaults.tune, defaults.chains)


def test_the_speed_benchmark_runs_the_library_and_its_peers_at_the_librarys_defaults():
    """``benchmarks/run.py`` and its hand-written peers sample with what ``reconcile()`` uses by default."""
    import importlib.util
    import re
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location("bench_run", bench / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    d = SamplerOptions()
    assert (run.DRAWS, run.TUNE, run.CHAINS, run.TARGET_ACCEPT) == (d.draws, d.tune, d.chains, d.target_accept)
    # peers.py imports JAX at the top (not installed for the tests): read its setting from the source
    found = re.search(r"^TARGET_ACCEPT = ([0-9.]+)$", (bench / "peers.py").read_text(), re.M)
    assert found and float(found.group(1)) == d.target_accept
