"""``reconcile``: claims in, a :class:`~estimates.results.Reconciliation` out.

The one function that walks the chain claims -> interpretation -> model ->
inference -> results. Each stage lives in its own module; this one only
passes data along.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .claims import ClaimsLike, Hierarchy, normalise, read_claims
from .errors import OptionError
from .inference import (
    SamplerOptions,
    approximate,
    approximation_diagnostics,
    diagnostics,
    sample,
    seeds,
    warn_if_poor_approximation,
    warn_if_unconverged,
)
from .interpret import DEFAULT_PROB, Interpretation, shapes_table
from .model import describe
from .results import (
    Reconciliation,
    summarise_claims,
    summarise_intervals,
    summarise_sources,
)

#: Ways to fit: NUTS, or a labelled approximation.
METHODS = ("nuts", "advi")

#: Variables whose convergence ``diagnostics`` checks.
DIAGNOSED = [
    "log_count",
    "log_bias",
    "log_reliability",
    "sigma_walk",
    "sigma_share",
    "bias_sd",
    "bias_mean",
    "reliability_mean",
]


def reconcile(
    claims: ClaimsLike,
    *,
    hierarchy: Mapping[str, Iterable[str]] | None = None,
    reference: str | None = None,
    prob: float = DEFAULT_PROB,
    random_seed: int | None = 0,
    errors: str = "raise",
    robust: bool = False,
    interpretation: Interpretation | Mapping[str, Any] | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    target_accept: float = 0.95,
    sampler: str = "auto",
    decimal: str | None = None,
    method: str = "nuts",
) -> Reconciliation:
    """Reconcile conflicting claims into posterior intervals per region and time.

    Parameters
    ----------
    claims : DataFrame, list of dict, or path to a CSV file
        The claims table (DESIGN section 3). Never modified.
    hierarchy : mapping, optional
        ``{aggregate: [members]}``; members may be aggregates. When omitted,
        ``claims.attrs["hierarchy"]`` is used if present (the embedded examples
        carry theirs there).
    reference : str, optional
        A source taken as unbiased (bias fixed at 1.0).
    prob : float
        Probability of the equal-tailed intervals reported.
    random_seed : int or None
        One seed for every random draw (sampling and predictive checks).
    errors : {"raise", "skip"}
        What to do with a bad row: raise a :class:`~estimates.errors.ClaimError`,
        or keep it in ``result.claims`` with ``status = "rejected: <reason>"``.
    robust : bool
        Give every claim a small probability of being wild, so one claim
        cannot drag the rest.
    interpretation : mapping or Interpretation, optional
        Overrides of the reading of statements (see
        :class:`~estimates.interpret.Interpretation`), e.g. ``{"coverage": 0.8}``.
    draws, tune, chains : int
        NUTS draws kept, tuning steps and chains.
    target_accept : float
        NUTS target acceptance rate.
    sampler : {"auto", "nutpie", "pymc", "numpyro", "nutpie-jax"}
        The NUTS engine. ``auto`` uses nutpie (Numba) when installed, PyMC's
        NUTS otherwise: the fastest measured here (``benchmarks/run.py``).
        ``numpyro`` and ``nutpie-jax`` need ``pip install 'estimates[jax]'``.
        A compiled model is reused by later calls with the same layout of
        claims (see :func:`estimates.inference.cache_info`).
    decimal : {None, ".", ","}
        Decimal mark of numbers in ``claim`` texts (see :func:`estimates.parse_claim`).
    method : {"nuts", "advi"}
        ``nuts`` samples the posterior (the default; use it for intervals you
        report). ``advi`` fits a mean-field Gaussian approximation: faster on
        large problems, labelled ``approximate`` in ``diagnostics`` with its
        Pareto ``k`` (above 0.7 it warns: the approximation is far from the
        posterior and its intervals are likely too narrow).

    Returns
    -------
    Reconciliation
        ``intervals``, ``sources``, ``claims``, ``diagnostics``, ``idata``.

    Warns
    -----
    ConvergenceWarning
        When R-hat, ESS or divergences fail their thresholds, with a hint.

    Examples
    --------
    >>> import estimates as est
    >>> result = est.reconcile(
    ...     [{"region": "Syria", "low": 6000, "high": 8000, "source": "UN"},
    ...      {"region": "Syria", "low": 8000, "high": 16000, "source": "US"}],
    ...     draws=300, tune=300, chains=2)  # doctest: +SKIP
    >>> result.intervals[["region", "median", "lower", "upper"]]  # doctest: +SKIP
    """
    if not (isinstance(prob, (int, float)) and 0 < prob < 1):
        raise OptionError(f"prob={prob!r} must be strictly between 0 and 1, e.g. 0.9")
    if random_seed is not None and not isinstance(random_seed, (int, np.integer)):
        raise OptionError(f"random_seed={random_seed!r} must be a whole number or None")
    if method not in METHODS:
        raise OptionError(f"method={method!r} is not supported; use one of: {', '.join(METHODS)}")
    options = SamplerOptions(draws=draws, tune=tune, chains=chains, target_accept=target_accept, sampler=sampler)
    interp = Interpretation.from_options(interpretation)
    if hierarchy is None and isinstance(claims, pd.DataFrame):
        hierarchy = claims.attrs.get("hierarchy")
    hier = Hierarchy.from_mapping(hierarchy)

    t_start = time.perf_counter()
    table_in = read_claims(claims)
    cs = normalise(table_in, hierarchy=hier, interpretation=interp, errors=errors, decimal=decimal)
    shaped = shapes_table(cs.used, interp)
    st = describe(
        shaped,
        cs.hierarchy,
        reference=reference,
        robust=robust,
        robust_weight=interp.robust_weight,
        robust_sd=interp.robust_sd,
    )
    for note in st.notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    t_prepared = time.perf_counter()
    sampler_seed, rng = seeds(random_seed)
    if method == "nuts":
        idata, timing = sample(st, options, sampler_seed)
        _add_observed(idata, st)
        diag = diagnostics(idata, DIAGNOSED, timing["sampler"], _fit_seconds(timing))
        diag.update(timing, approximate=False)
        warn_if_unconverged(diag, options)
    else:
        idata, timing = approximate(st, options, sampler_seed)
        _add_observed(idata, st)
        diag = approximation_diagnostics(timing)
        warn_if_poor_approximation(diag)
    which = diag["sampler"]

    meta = {
        "estimates_version": __version__,
        "options": {
            "hierarchy": cs.hierarchy.to_dict(),
            "reference": reference,
            "prob": prob,
            "random_seed": random_seed,
            "errors": errors,
            "decimal": decimal,
            "robust": robust,
            "interpretation": interp.__dict__,
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "target_accept": target_accept,
            "sampler": which,
            "method": method,
        },
        "input_sha256": _hash_table(table_in),
        "notes": list(st.notes),
    }
    idata.posterior.attrs.update({"estimates_version": __version__, "input_sha256": meta["input_sha256"]})
    t_fitted = time.perf_counter()
    tables = {
        "intervals": summarise_intervals(st, idata, prob),
        "sources": summarise_sources(st, idata, prob),
        "claims": summarise_claims(st, idata, cs.table, prob, rng),
    }
    t_end = time.perf_counter()
    meta["timings"] = {
        "prepare": t_prepared - t_start,
        "build": timing["build_seconds"],
        "compile": timing["compile_seconds"],
        "sample": timing["sample_seconds"],
        "summarise": t_end - t_fitted,
        "total": t_end - t_start,
    }
    return Reconciliation(**tables, diagnostics=diag, idata=idata, meta=meta)


def _fit_seconds(timing: dict[str, Any]) -> float:
    return timing["build_seconds"] + timing["compile_seconds"] + timing["sample_seconds"]


def _hash_table(df: pd.DataFrame) -> str:
    return hashlib.sha256(df.to_csv(index=False).encode("utf-8")).hexdigest()


def _add_observed(idata: Any, st: Any) -> None:
    """Record what each used claim stated (log scale) as ``observed_data``."""
    import xarray as xr

    from .interpret import observed_number

    obs = observed_number(st.claim_shape, st.claim_kind, st.claim_a, st.claim_b)
    ds = xr.Dataset(
        {
            "claim_number": ("claim", obs),
            "claim_spread": ("claim", st.claim_spread),
            "claim_row": ("claim", st.claim_row),
        },
        coords={"claim": np.arange(len(obs))},
    )
    if "observed_data" in idata.groups():
        del idata.observed_data
    idata.add_groups(observed_data=ds)
