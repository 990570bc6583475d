"""Sampling and convergence diagnostics.

NUTS through nutpie when it is installed (the ``fast`` extra), PyMC's own
sampler otherwise. One ``random_seed`` is split with
:class:`numpy.random.SeedSequence` into the sampler's seed and the seed of
every later random draw (posterior predictive checks).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._deps import quiet_import
from .errors import ConvergenceWarning, OptionError

SAMPLERS = ("auto", "nutpie", "pymc")

#: Thresholds for ``diagnostics["converged"]``.
RHAT_MAX = 1.01
ESS_MIN = 400


@dataclass(frozen=True)
class SamplerOptions:
    """Options of the NUTS run."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.95
    sampler: str = "auto"

    def __post_init__(self) -> None:
        for name in ("draws", "tune", "chains"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise OptionError(f"{name}={v!r} must be a positive whole number")
        if not 0.5 <= self.target_accept < 1:
            raise OptionError(f"target_accept={self.target_accept!r} must be in [0.5, 1)")
        if self.sampler not in SAMPLERS:
            raise OptionError(f"sampler={self.sampler!r} is not supported; use one of: {', '.join(SAMPLERS)}")


def resolve_sampler(name: str) -> str:
    """The sampler that will run: ``nutpie`` when installed and asked for (or auto)."""
    has_nutpie = importlib.util.find_spec("nutpie") is not None
    if name == "nutpie" and not has_nutpie:
        raise OptionError("sampler='nutpie' needs nutpie: pip install 'estimates[fast]'")
    if name == "auto":
        return "nutpie" if has_nutpie else "pymc"
    return name


def seeds(random_seed: int | None) -> tuple[int, np.random.Generator]:
    """Split one seed into the sampler's integer seed and a generator for later draws."""
    ss = np.random.SeedSequence(random_seed)
    a, b = ss.spawn(2)
    return int(a.generate_state(1, dtype=np.uint32)[0]), np.random.default_rng(b)


def sample(model: Any, options: SamplerOptions, seed: int) -> tuple[Any, str, float]:
    """Run NUTS on ``model``; return ``(idata, sampler name, seconds)``."""
    which = resolve_sampler(options.sampler)
    t0 = time.perf_counter()
    if which == "nutpie":
        nutpie = quiet_import("nutpie")

        compiled = nutpie.compile_pymc_model(model)
        idata = nutpie.sample(
            compiled,
            draws=options.draws,
            tune=options.tune,
            chains=options.chains,
            seed=seed,
            target_accept=options.target_accept,
            progress_bar=False,
            cores=min(options.chains, os.cpu_count() or 1),
        )
    else:
        pm = quiet_import("pymc")

        logger = logging.getLogger("pymc")
        level = logger.level
        logger.setLevel(logging.ERROR)  # our own diagnostics report problems
        try:
            with model, warnings.catch_warnings():
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
                )
        finally:
            logger.setLevel(level)
    return idata, which, time.perf_counter() - t0


def diagnostics(idata: Any, var_names: list[str], sampler: str, seconds: float) -> dict[str, Any]:
    """Convergence figures of DESIGN section 3 over ``var_names``.

    Variables (or elements) that are constant across draws, such as a
    reference source's fixed bias, are left out: R-hat is undefined there.
    Divergences are counted from ``sample_stats.diverging``.
    """
    az = quiet_import("arviz")

    post = idata.posterior[[v for v in var_names if v in idata.posterior]]
    r_hat_max = 0.0
    ess_min = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        rhat = az.rhat(post)
        ess = az.ess(post, method="bulk")
    for v in post.data_vars:
        keep = np.atleast_1d(post[v].std(dim=("chain", "draw")).values > 1e-12)
        r = np.atleast_1d(rhat[v].values)[keep]
        e = np.atleast_1d(ess[v].values)[keep]
        if r.size:
            r_hat_max = max(r_hat_max, float(np.nanmax(r)))
            ess_min = min(ess_min, float(np.nanmin(e)))
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
        problems.append(
            f"{diag['divergences']} divergent transitions: intervals may be biased; try "
            f"target_accept=0.95 (now {options.target_accept}), or robust=True if claims conflict sharply"
        )
    if diag["r_hat_max"] > RHAT_MAX:
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
