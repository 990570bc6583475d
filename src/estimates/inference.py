"""Sampling and convergence diagnostics.

NUTS through nutpie when it is installed (the ``fast`` extra), PyMC's own
sampler otherwise. One ``random_seed`` is split with
:class:`numpy.random.SeedSequence` into the sampler's seed and the seed of
every later random draw (posterior predictive checks).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _convergence, _nutpie
from ._deps import quiet_import
from .errors import ApproximationWarning, ConvergenceWarning, OptionError
from .results import column_blocks

SAMPLERS = ("auto", "nutpie", "pymc", "numpyro", "nutpie-jax")

#: nutpie mass-matrix adaptations (see :class:`SamplerOptions`).
ADAPTATIONS = ("auto", "gradient", "stan")
#: Where nutpie's chains start (``SamplerOptions.init``).
INITS = ("mode", "prior")

#: Thresholds for ``diagnostics["converged"]``.
RHAT_MAX = 1.01
ESS_MIN = 400


@dataclass(frozen=True)
class SamplerOptions:
    """Options of the NUTS run."""

    draws: int = 1000
    tune: int = 500
    chains: int = 4
    target_accept: float = 0.8
    sampler: str = "auto"
    #: nutpie's mass-matrix adaptation: ``gradient`` (nutpie's default, from
    #: draws and gradients), ``stan`` (draw variances only) or ``auto``
    #: (see :func:`nutpie_adaptation`).
    adaptation: str = "auto"
    #: nutpie's log-density: the hand-written kernel (:mod:`estimates._kernel`,
    #: compiled once per machine) or, with ``False``, PyTensor's graph of the
    #: PyMC model (compiled per layout; kept to measure one against the other).
    kernel: bool = True
    #: Where nutpie's chains start: ``mode`` (a mode of the log-density found
    #: by L-BFGS, :func:`estimates._nutpie.mode`) or ``prior`` (the priors'
    #: support points); both plus U(-1, 1) jitter on every coordinate.
    init: str = "mode"

    def __post_init__(self) -> None:
        for name in ("draws", "tune", "chains"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise OptionError(f"{name}={v!r} must be a positive whole number")
        if not 0.5 <= self.target_accept < 1:
            raise OptionError(f"target_accept={self.target_accept!r} must be in [0.5, 1)")
        if self.sampler not in SAMPLERS:
            raise OptionError(f"sampler={self.sampler!r} is not supported; use one of: {', '.join(SAMPLERS)}")
        if self.init not in INITS:
            raise OptionError(f"init={self.init!r} is not supported; use one of: {', '.join(INITS)}")
        if self.adaptation not in ADAPTATIONS:
            raise OptionError(f"adaptation={self.adaptation!r} is not supported; use one of: {', '.join(ADAPTATIONS)}")


def resolve_sampler(name: str) -> str:
    """The sampler that will run: ``nutpie`` when installed and asked for (or auto).

    ``auto`` is nutpie's Numba backend, the fastest engine measured here
    (``benchmarks/run.py``); PyMC's own NUTS otherwise. ``numpyro`` (through
    PyMC) and ``nutpie-jax`` need JAX (``pip install 'estimates[jax]'``).
    """
    has_nutpie = importlib.util.find_spec("nutpie") is not None
    if name in ("nutpie", "nutpie-jax") and not has_nutpie:
        raise OptionError(f"sampler={name!r} needs nutpie: pip install 'estimates[fast]'")
    if name in ("numpyro", "nutpie-jax"):
        for mod in ("jax", "numpyro") if name == "numpyro" else ("jax",):
            if importlib.util.find_spec(mod) is None:
                raise OptionError(f"sampler={name!r} needs {mod}: pip install 'estimates[jax]'")
    if name == "auto":
        return "nutpie" if has_nutpie else "pymc"
    return name


def seeds(random_seed: int | None) -> tuple[int, np.random.Generator]:
    """Split one seed into the sampler's integer seed and a generator for later draws."""
    ss = np.random.SeedSequence(random_seed)
    a, b = ss.spawn(2)
    return int(a.generate_state(1, dtype=np.uint32)[0]), np.random.default_rng(b)


@dataclass
class _Entry:
    """One signature: its PyMC models (built when first needed) and what each engine compiled from them.

    Two models: the symbolic one (PyMC's C backend, JAX) and, for graphs
    Numba compiles, the one whose claims' term is a single Op
    (:mod:`estimates._fused`). nutpie's compiled model may come from its
    on-disk record (:func:`estimates._nutpie.load_compiled`), in which case
    no PyMC model is built.
    """

    st: Any
    signature: tuple
    compiled: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    builds: int = 0
    _models: dict[bool, Any] = field(default_factory=dict)

    @property
    def built(self) -> bool:
        return bool(self._models)

    def get_model(self, fused: bool = False) -> Any:
        if fused not in self._models:
            from .model import build

            t = time.perf_counter()
            self._models[fused] = build(self.st, fused=fused)
            self.build_seconds = time.perf_counter() - t
            self.builds += 1
        return self._models[fused]

    @property
    def model(self) -> Any:
        """The symbolic model (PyMC's sampler, ADVI, JAX)."""
        return self.get_model(False)

    @property
    def numba_model(self) -> Any:
        """The model nutpie's Numba backend compiles (and whose record is kept on disk): the claims' term fused."""
        return self.get_model(True)


#: In-process cache of built and compiled models, by signature (most recent last).
_CACHE: OrderedDict[tuple, _Entry] = OrderedDict()
CACHE_SIZE = 32


#: The key of nutpie's kernel model in an entry's ``compiled`` (``"nutpie"`` is its model on PyTensor's graph).
KERNEL = "nutpie-kernel"


def clear_cache() -> None:
    """Forget every model compiled in this process (see :func:`cache_info` for the on-disk caches)."""
    _CACHE.clear()


def cache_info() -> dict[str, Any]:
    """What is cached: models in this process, and the folders where compiled code is kept on disk.

    The in-process cache holds up to ``CACHE_SIZE`` compiled models, keyed by
    :func:`estimates.model.signature`; a call whose claims differ only in
    their numbers (or in how many claims there are) reuses one. On disk,
    under PyTensor's ``base_compiledir`` (``PYTENSOR_FLAGS=base_compiledir=...``
    moves it): ``compiledir`` (PyTensor's compiled C, for PyMC's sampler),
    ``numba`` (Numba's compiled log-densities and nutpie's callbacks) and
    ``estimates`` (the layout records of :mod:`estimates._nutpie`, which let
    a new process skip PyMC and PyTensor altogether). ``folders`` lists the
    three. ``kernel_files``: Numba's cache of the kernel's two callbacks
    (:mod:`estimates._callbacks`, what nutpie samples by default; compiled
    once per machine, kept beside the module's own ``__pycache__`` files or,
    where that is not writable, in Numba's user-wide cache).
    ``estimates cache --clear`` deletes the folders and those files.
    """
    pytensor = quiet_import("pytensor")
    base = pytensor.config.base_compiledir
    folders = [str(pytensor.config.compiledir), str(base / "numba"), str(_nutpie.records_dir())]
    kernel_files: list[str] = []
    if importlib.util.find_spec("nutpie") is not None:
        from . import _callbacks

        kernel_files = [str(f) for f in _callbacks.cache_files()]
    return {
        "models_in_process": len(_CACHE),
        "capacity": CACHE_SIZE,
        "compiledir": folders[0],
        "folders": folders,
        "kernel_files": kernel_files,
    }


def _entry(st: Any) -> tuple[_Entry, bool]:
    """The cached entry for ``st``'s signature (built now if new); ``True`` when it was cached."""
    from .model import signature

    key = signature(st)
    hit = key in _CACHE
    if hit:
        _CACHE.move_to_end(key)
    else:
        _CACHE[key] = _Entry(st, key)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return _CACHE[key], hit


@contextlib.contextmanager
def _no_blas_notice() -> Iterator[None]:
    """Silence PyTensor's "could not link to a BLAS installation" while compiling.

    PyTensor looks for a C BLAS the first time a rewrite meets a dot product
    and warns when pip installed it without one. nutpie compiles with Numba,
    which brings its own; the notice would only alarm users (and, emitted
    inside a caller's ``pytest.warns`` block, fail their test).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*could not link to a BLAS", category=UserWarning)
        yield


def nutpie_adaptation(adaptation: str) -> str:
    """The mass-matrix adaptation nutpie runs: ``gradient`` or ``stan``.

    ``auto`` is ``stan`` (variances of the draws), measured over three seeds
    on every benchmark problem (``benchmarks/adaptation.py``): on the sparse
    UCDP/PRIO problem nutpie's gradient-based default converged in 0 of 3
    runs (min ESS 210) and the Stan-style one in 3 of 3 (min ESS 2,620); on
    the article and medium problems it gave 18% and 15% more ESS per second.
    """
    if adaptation != "auto":
        return adaptation
    return "stan"


def sample(
    st: Any, options: SamplerOptions, seed: int, claim_weight: np.ndarray | None = None
) -> tuple[Any, dict[str, Any]]:
    """Run NUTS for the structure ``st``, reusing a compiled model of the same signature.

    Returns ``(idata, timing)``; ``timing`` has ``sampler``, ``cached``
    (a compiled model was reused from this process), ``from_disk`` (nutpie's
    kernel came from Numba's cache or, on PyTensor's graph, the layout's
    compiled model from its on-disk record; no PyMC model built either way), ``build_seconds``, ``compile_seconds``,
    ``sample_seconds`` (PyMC's sampler compiles inside it, from its on-disk
    C cache; with nutpie, the search for the chains' start is part of it)
    and ``gradients`` (log-density gradient evaluations, warm-up and that
    search included). ``claim_weight`` (one per used claim, default all 1) scales
    each claim's log-likelihood: 0 leaves a claim out without recompiling.
    """
    from .model import expand_draws, model_data, pack_numbers, set_numbers

    which = resolve_sampler(options.sampler)
    data = model_data(st, claim_weight)
    entry, hit = _entry(st)
    builds = entry.builds
    t0 = time.perf_counter()
    cached = hit and (KERNEL if which == "nutpie" and options.kernel else which) in entry.compiled
    if which in ("numpyro", "nutpie-jax"):  # the JAX backends: the whitening Op as JAX (imports JAX)
        from ._whiten import register_jax

        register_jax()
    from_disk = False
    if which in ("nutpie", "nutpie-jax"):
        nutpie = quiet_import("nutpie")
        if which == "nutpie-jax":
            # nutpie's JAX backend freezes the data into its graph: compiled per call
            set_numbers(entry.model, data)
            with _no_blas_notice():
                compiled = nutpie.compile_pymc_model(entry.model, backend="jax", gradient_backend="jax")
        elif options.kernel:
            if KERNEL not in entry.compiled:
                from . import _callbacks

                entry.compiled[KERNEL] = _nutpie.kernel_model(st, data)
                from_disk = _callbacks.callbacks()[0].cache_hits > 0
            compiled = _nutpie.with_numbers(entry.compiled[KERNEL], pack_numbers(data))
            # the priors' point depends on the numbers too (estimates.model.scale_offsets)
            compiled = _nutpie.start_at(compiled, _nutpie.kernel_start(st, data))
        else:
            if which not in entry.compiled:
                key = _nutpie.record_key(entry.signature)
                compiled = _nutpie.load_compiled(key)
                from_disk = compiled is not None
                if compiled is None:
                    with _no_blas_notice():
                        compiled = _nutpie.compile_model(entry.numba_model, key=key)
                entry.compiled[which] = compiled
            compiled = _nutpie.with_numbers(entry.compiled[which], pack_numbers(data))
        t1 = time.perf_counter()
        start_gradients = 0
        if options.kernel and which == "nutpie" and options.init == "mode":
            start, start_gradients = _nutpie.mode(compiled)
            if start is not None:
                compiled = _nutpie.start_at(compiled, start)
        raw = nutpie.sample(
            compiled,
            draws=options.draws,
            tune=options.tune,
            chains=options.chains,
            seed=seed,
            target_accept=options.target_accept,
            use_grad_based_mass_matrix=nutpie_adaptation(options.adaptation) == "gradient",
            progress_bar=False,
            cores=min(options.chains, os.cpu_count() or 1),
            return_raw_trace=True,
        )
        # the warm-up's draws are not converted at all (on large problems
        # they were a third of the peak memory), only its gradients counted
        expand = functools.partial(expand_draws, st, data) if _nutpie.expands_in_numpy(compiled) else None
        idata, gradients = _nutpie.to_inference_data(raw, compiled.coords, compiled.dims, expand)
        gradients += start_gradients  # the search for the chains' start
        del raw
    else:
        pm = quiet_import("pymc")
        # the built model is reused, but pm.sample compiles anew each call (from
        # PyTensor's on-disk C cache; numpyro: JAX's), so it is never "cached"
        set_numbers(entry.model, data)
        extra = {"nuts_sampler": "numpyro"} if which == "numpyro" else {}
        t1 = time.perf_counter()
        logger = logging.getLogger("pymc")
        level = logger.level
        logger.setLevel(logging.ERROR)  # our own diagnostics report problems
        try:
            with entry.model, warnings.catch_warnings(), _no_blas_notice():
                warnings.simplefilter("ignore", category=FutureWarning)
                idata = pm.sample(
                    draws=options.draws,
                    tune=options.tune,
                    chains=options.chains,
                    cores=min(options.chains, os.cpu_count() or 1),
                    random_seed=seed,
                    target_accept=options.target_accept,
                    progressbar=False,
                    compute_convergence_checks=False,
                    return_inferencedata=True,
                    discard_tuned_samples=False,
                    **extra,
                )
        finally:
            logger.setLevel(level)
        gradients = _gradients(idata)
        # warm-up draws were kept only to count their gradients
        az = quiet_import("arviz")
        idata = az.InferenceData(**{g: idata[g] for g in idata.groups() if not g.startswith("warmup")})
    t2 = time.perf_counter()
    if "quantity" in idata.posterior.coords:  # a reused model carries its first call's labels
        idata.posterior = idata.posterior.assign_coords(quantity=list(st.quantities))
    build_seconds = entry.build_seconds if entry.builds > builds else 0.0
    timing = {
        "sampler": which,
        "cached": bool(cached),
        "from_disk": from_disk,
        "build_seconds": build_seconds,
        "compile_seconds": t1 - t0 - build_seconds,
        "sample_seconds": t2 - t1,
        "gradients": gradients,
    }
    return idata, timing


def _gradients(idata: Any) -> int:
    """Gradient evaluations over warm-up and draws (leapfrog steps, from ``n_steps``)."""
    n = 0
    for group in ("warmup_sample_stats", "sample_stats"):
        if group in idata.groups() and "n_steps" in idata[group]:
            n += int(idata[group]["n_steps"].sum())
    return n


def diagnostics(idata: Any, var_names: list[str], sampler: str, seconds: float) -> dict[str, Any]:
    """Convergence figures of DESIGN section 3 over ``var_names``.

    Variables (or elements) that are constant across draws, such as a
    reference source's fixed bias, are left out: R-hat is undefined there.
    Divergences are counted from ``sample_stats.diverging``.
    """
    post = idata.posterior[[v for v in var_names if v in idata.posterior]]
    r_hat_max = 0.0
    ess_min = np.inf
    for v in post.data_vars:
        x = post[v].transpose("chain", "draw", ...).to_numpy()
        x = x.reshape(x.shape[:2] + (-1,))
        # in blocks of elements: ranks and FFTs of a whole 24,000-cell
        # variable took 4 GB at 2 x 1,000 draws (benchmarks' large problem)
        for cols in column_blocks(x.shape[0] * x.shape[1], x.shape[2]):
            xb = x[:, :, cols]
            keep = xb.std(axis=(0, 1)) > 1e-12
            # ArviZ's rank R-hat and bulk ESS, vectorised (ArviZ loops per element)
            r = np.atleast_1d(_convergence.rhat(xb))[keep]
            e = np.atleast_1d(_convergence.ess_bulk(xb))[keep]
            if np.isfinite(r).any():
                r_hat_max = max(r_hat_max, float(np.nanmax(r)))
            if np.isfinite(e).any():
                ess_min = min(ess_min, float(np.nanmin(e)))
    if post.sizes.get("chain", 0) < 2:
        r_hat_max = float("nan")  # R-hat compares chains: one chain cannot show it has converged
    div = int(idata.sample_stats["diverging"].sum().values) if "diverging" in idata.sample_stats else 0
    converged = bool(r_hat_max <= RHAT_MAX and ess_min >= ESS_MIN and div == 0)
    return {
        "r_hat_max": r_hat_max,
        "ess_bulk_min": float(ess_min) if np.isfinite(ess_min) else float("nan"),
        "divergences": div,
        "converged": converged,
        "sampler": sampler,
        "seconds": float(seconds),
    }


def warn_if_unconverged(diag: dict[str, Any], options: SamplerOptions) -> None:
    """Warn with a concrete hint for each failed check; silent only when all pass."""
    problems = []
    if diag["divergences"]:
        higher = 0.95 if options.target_accept < 0.95 else 0.99 if options.target_accept < 0.99 else None
        step = f"try target_accept={higher} (now {options.target_accept}), or " if higher else ""
        problems.append(
            f"{diag['divergences']} divergent transitions: intervals may be biased; {step}"
            "robust=True if claims conflict sharply"
        )
    if np.isnan(diag["r_hat_max"]):  # a single chain: nothing to compare
        problems.append("R-hat needs at least 2 chains to compare; sample with chains=4")
    elif diag["r_hat_max"] > RHAT_MAX:
        problems.append(
            f"R-hat {diag['r_hat_max']:.3f} > {RHAT_MAX}: chains disagree; try tune={2 * options.tune} "
            f"and draws={2 * options.draws}"
        )
    ess = diag["ess_bulk_min"]
    if not ess >= ESS_MIN:
        problems.append(
            f"bulk ESS {ess:.0f} < {ESS_MIN}: too few effective draws for stable intervals; "
            f"try draws={max(2 * options.draws, int(options.draws * ESS_MIN / max(ess, 1.0)) + 1)}"
        )
    if problems:
        warnings.warn("sampler did not converge: " + "; ".join(problems), ConvergenceWarning, stacklevel=3)


#: Pareto k above which importance weights from the approximation are unreliable
#: (Vehtari et al. 2024, "Pareto smoothed importance sampling").
PARETO_K_MAX = 0.7


def approximate(st: Any, options: SamplerOptions, seed: int, steps: int = 20_000) -> tuple[Any, dict[str, Any]]:
    """Mean-field ADVI: a fast look, labelled approximate, with a check of its quality.

    Fits a Gaussian in the model's unconstrained space, draws
    ``draws * chains`` points from it, and scores the fit by Pareto-smoothed
    importance sampling of the true posterior against it: the Pareto ``k``
    of the weights says whether the approximation can be trusted (below
    0.7) or not. Mean-field ADVI ignores posterior correlations and tends
    to make intervals too narrow; the benchmark compares it with NUTS.
    """
    pm = quiet_import("pymc")
    az = quiet_import("arviz")
    import xarray as xr

    from .model import model_data, set_numbers

    entry, hit = _entry(st)
    builds = entry.builds
    t0 = time.perf_counter()
    model = entry.model
    build_seconds = entry.build_seconds if entry.builds > builds else 0.0
    data = model_data(st)
    set_numbers(model, data)
    names = [v for v in _KEPT if v in model.named_vars]
    fn = entry.compiled.get("advi")
    cached = hit and fn is not None
    if fn is None:
        outs = model.replace_rvs_by_values([model.logp(jacobian=True), *(model[v] for v in names)])
        with _no_blas_notice():
            fn = entry.compiled["advi"] = pm.pytensorf.compile(model.value_vars, outs, on_unused_input="ignore")
    t1 = time.perf_counter()
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with model, warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            fit = pm.fit(n=steps, method="advi", random_seed=seed, progressbar=False)
    finally:
        logger.setLevel(level)
    group = fit.groups[0]
    mu, sd = group.mean.eval(), group.std.eval()
    rng = np.random.default_rng(seed)
    n = options.draws * options.chains
    eps = rng.standard_normal((n, mu.size))
    z = mu + sd * eps
    logq = -0.5 * np.sum(eps * eps, axis=1) - np.sum(np.log(sd)) - 0.5 * mu.size * np.log(2 * np.pi)
    value_vars = model.value_vars
    by_name = {name: (slc, shape) for name, slc, shape, _ in group.ordering.values()}
    by_var = {v: by_name[v.name] for v in value_vars}
    logp = np.empty(n)
    kept: dict[str, list[np.ndarray]] = {v: [] for v in names}
    for i in range(n):
        args = [z[i, by_var[v][0]].reshape(by_var[v][1]) for v in value_vars]
        res = fn(*args)
        logp[i] = res[0]
        for name, val in zip(names, res[1:], strict=True):
            kept[name].append(np.asarray(val))
    t2 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # arviz warns on high k; we report it
        _, k_hat = az.psislw(logp - logq)
    posterior = xr.Dataset(
        {name: (("chain", "draw", f"{name}_dim_0"), np.stack(vals)[None]) for name, vals in kept.items()}
    )
    idata = az.InferenceData(posterior=posterior)
    timing = {
        "sampler": "advi",
        "approximate": True,
        "pareto_k": float(k_hat),
        "cached": bool(cached),
        "build_seconds": build_seconds,
        "compile_seconds": t1 - t0 - build_seconds,
        "sample_seconds": t2 - t1,
        "gradients": int(steps),
    }
    return idata, timing


#: Posterior quantities the results are computed from (those the model has).
_KEPT = ("log_count", "log_bias", "log_reliability", "bias_sd", "bias_mean", "reliability_mean")


def approximation_diagnostics(timing: dict[str, Any]) -> dict[str, Any]:
    """Diagnostics of an approximate fit: no R-hat or ESS (no chains), the Pareto k instead."""
    return {
        "r_hat_max": float("nan"),
        "ess_bulk_min": float("nan"),
        "divergences": 0,
        "converged": False,
        "seconds": timing["build_seconds"] + timing["compile_seconds"] + timing["sample_seconds"],
        **timing,
    }


def warn_if_poor_approximation(diag: dict[str, Any]) -> None:
    """Warn, with a hint, when the approximation's Pareto k says it is far from the posterior."""
    k = diag["pareto_k"]
    if not k <= PARETO_K_MAX:
        warnings.warn(
            f"approximate result (mean-field ADVI) is far from the posterior: Pareto k {k:.2f} > {PARETO_K_MAX}; "
            "its intervals are likely too narrow. Use method='nuts' (the default) for intervals you report.",
            ApproximationWarning,
            stacklevel=3,
        )
