"""``reconcile``: claims in, a :class:`~estimates.results.Reconciliation` out.

The one function that walks the chain claims -> interpretation -> model ->
inference -> results. Each stage lives in its own module; this one only
passes data along.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .claims import ClaimsLike, Hierarchy, normalise, read_claims
from .errors import ApproximationWarning, OptionError
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
    posterior_draws,
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
    tune: int = 500,
    chains: int = 4,
    target_accept: float = 0.8,
    sampler: str = "auto",
    decimal: str | None = None,
    method: str = "nuts",
    refits: int = 10,
) -> Reconciliation:
    """Reconcile conflicting claims into posterior intervals per region and time.

    Each claim is read as a noisy, possibly censored, possibly biased
    observation of a hidden count per region and time; one model fits them
    all, with a bias and a reliability per source, and each claim is then
    checked against the rest by leave-one-out.

    Parameters
    ----------
    claims : DataFrame, list of dict, or path to a CSV file
        The claims table: one row per statement, with ``region``, the
        statement as text in ``claim`` or as numbers in ``low``/``high``/
        ``value``, and optionally ``kind``, ``time``, ``since``, ``source``,
        ``quantity`` and ``coverage``; other columns are carried through to
        ``result.claims``. Never modified.
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
        claims (see ``estimates.inference.cache_info()``).
    decimal : {None, ".", ","}
        Decimal mark of numbers in ``claim`` texts (see :func:`estimates.parse_claim`).
    method : {"nuts", "advi"}
        ``nuts`` samples the posterior (the default; use it for intervals you
        report). ``advi`` fits a mean-field Gaussian approximation: faster on
        large problems, labelled ``approximate`` in ``diagnostics`` with its
        Pareto ``k`` (above 0.7 it warns: the approximation is far from the
        posterior and its intervals are likely too narrow).
    refits : int
        At most this many exact refits (leaving out a source for its
        influence, then a claim for its tension) where the importance
        weights of PSIS-LOO are unreliable (Pareto k above 0.7). Each reuses
        the compiled model and costs a short sampling run (2 chains of 300 +
        500 iterations); 0 keeps every PSIS estimate and says which are
        unreliable (``claims["loo"]``, ``sources["influence_method"]``,
        ``diagnostics["loo"]``).

    Returns
    -------
    Reconciliation
        ``intervals``, ``sources``, ``claims``, ``diagnostics``, ``idata``.

    Raises
    ------
    ClaimError
        A row that cannot be used, with ``errors="raise"`` (one of its
        subclasses, e.g. :class:`~estimates.errors.InvalidRangeError`; the
        message names the row, the column and what to do).
    EmptyClaimsError
        No row to reconcile (also when every row is rejected with
        ``errors="skip"``).
    HierarchyError
        A malformed ``hierarchy``.
    OptionError
        An option out of range or unknown.

    Warns
    -----
    ConvergenceWarning
        When R-hat, ESS or divergences fail their thresholds, with a hint.
    ApproximationWarning
        With ``method="advi"``, when the approximation fails its check; and
        when leave-one-out checks stay unreliable after ``refits`` refits.

    See Also
    --------
    estimates.Reconciliation : What is returned, with its tables and figures.
    estimates.parse_claim : How a ``claim`` text is read.
    estimates.baselines : Simple per-cell summaries to compare with.

    Notes
    -----
    The claims are checked before anything is compiled or sampled, so a bad
    table fails at once. A second call with the same layout of claims (other
    numbers) reuses the compiled model.

    Examples
    --------
    >>> import estimates as est
    >>> claims = est.load_example("isis-2022")
    >>> len(claims), claims.attrs["hierarchy"]["Iraq and Syria"]
    (10, ['Iraq', 'Syria'])
    >>> result = est.reconcile(claims)  # doctest: +SKIP

    Sampling takes a while, so the test suite supplies that fit as
    ``result``:

    >>> result.diagnostics["converged"]
    True
    >>> result.intervals[["quantity", "region", "time"]].head(2)
       quantity          region     time
    0  fighters  Iraq and Syria  2021-08
    1  fighters  Iraq and Syria  2022-02

    Claims can also be a list of dicts, numbers or text:

    >>> result = est.reconcile(  # doctest: +SKIP
    ...     [{"region": "Syria", "low": 6000, "high": 8000, "source": "UN"},
    ...      {"region": "Syria", "claim": "8,000 to 16,000 fighters", "source": "US"}],
    ...     draws=300, tune=300, chains=2)

    The table is checked before any sampling:

    >>> est.reconcile([{"region": "Syria", "low": 8000, "high": 6000}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.InvalidRangeError: claim 0 (...): high = 6000: is below low (8,000). swap low and high, ...
    """
    if not (isinstance(prob, (int, float)) and 0 < prob < 1):
        raise OptionError(f"prob={prob!r} must be strictly between 0 and 1, e.g. 0.9")
    if random_seed is not None and not isinstance(random_seed, (int, np.integer)):
        raise OptionError(f"random_seed={random_seed!r} must be a whole number or None")
    if isinstance(refits, bool) or not isinstance(refits, (int, np.integer)) or refits < 0:
        raise OptionError(f"refits={refits!r} must be a whole number >= 0 (0: no refits)")
    if method not in METHODS:
        raise OptionError(f"method={method!r} is not supported; use one of: {', '.join(METHODS)}")
    options = SamplerOptions(draws=draws, tune=tune, chains=chains, target_accept=target_accept, sampler=sampler)
    interp = Interpretation.from_options(interpretation)
    if hierarchy is None and isinstance(claims, pd.DataFrame):
        hierarchy = claims.attrs.get("hierarchy")
    hier = Hierarchy.from_mapping(hierarchy)

    t_start = time.perf_counter()
    table_in = read_claims(claims)
    cs, st = prepare(table_in, hier, interp, reference=reference, robust=robust, errors=errors, decimal=decimal)
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
    checks, influence, loo_diag = _checks(st, idata, options, sampler_seed, prob, refits, method == "nuts")
    diag["loo"] = loo_diag
    t_checked = time.perf_counter()
    tables = {
        "intervals": summarise_intervals(st, idata, prob),
        "sources": _with_influence(summarise_sources(st, idata, prob), influence),
        "claims": summarise_claims(st, idata, cs.table, prob, rng, checks),
    }
    t_end = time.perf_counter()
    meta["timings"] = {
        "prepare": t_prepared - t_start,
        "build": timing["build_seconds"],
        "compile": timing["compile_seconds"],
        "sample": timing["sample_seconds"],
        "checks": t_checked - t_fitted,
        "summarise": t_end - t_checked,
        "total": t_end - t_start,
    }
    result = Reconciliation(**tables, diagnostics=diag, idata=idata, meta=meta)
    result.influence_table = influence
    return result


def _checks(
    st: Any, idata: Any, options: SamplerOptions, seed: int, prob: float, refits: int, exact: bool
) -> tuple[dict[str, np.ndarray], pd.DataFrame, dict[str, Any]]:
    """Leave-one-out tension of every claim and the influence of every source (:mod:`estimates.loo`).

    PSIS first; where a Pareto k exceeds :data:`~estimates.loo.LOO_K_MAX`,
    an exact refit with the source's claims (or the claim) weighted 0,
    sources first, then claims worst k first, while ``refits`` lasts.
    ``exact`` is False for an approximate posterior: its draws are not MCMC
    draws, nothing is refit, and every estimate says so.
    """
    from . import loo

    t0 = time.perf_counter()
    n = len(st.claim_row)
    cc = loo.claim_checks(st, idata)
    tension, k = cc.tension, cc.pareto_k
    label = "psis" if exact else "psis (approximate posterior)"
    how = np.array([label] * n, dtype=object)
    memo: dict[tuple[int, ...], Any] = {}
    budget = [refits if exact else 0]
    refit_divergences = [0]
    # a refit estimates tail probabilities and intervals, not a whole
    # posterior: 2 chains x (300 warm-up, nutpie's own default, + 500 draws)
    # (the tails are exact per draw: the error is that of a mean of 1,000)
    refit_options = dataclasses.replace(
        options, chains=min(options.chains, 2), draws=min(options.draws, 500), tune=min(options.tune, 300)
    )

    def without(cols: np.ndarray) -> Any | None:
        key = tuple(sorted(int(c) for c in cols))
        if key not in memo:
            if budget[0] <= 0:
                return None
            budget[0] -= 1
            w = np.ones(n)
            w[list(key)] = 0.0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a refit's own convergence is not the user's fit
                memo[key] = sample(st, refit_options, seed + 1 + len(memo), claim_weight=w)[0]
            # not warned (the user's fit is not at fault) but counted in diagnostics["loo"]
            refit_divergences[0] += int(memo[key].sample_stats["diverging"].sum())
        return memo[key]

    # the only claim about a quantity has nothing to be in tension with (left
    # out, its quantity is back to the prior, which is centred on the claims);
    # nor has the only claim that gives a quantity its level when the others
    # are ratios ("doubled since"): they fix changes, not the level, so the
    # level left out is again the prior centred on the claim itself (and a
    # refit of that near-flat level, its steps pinned, is a needle the
    # sampler threads with the smallest steps: the article's costliest refit)
    q_of_claim = st.sources["q_idx"].to_numpy(np.int64)[st.claim_source] if n else np.zeros(0, np.int64)
    n_q = len(st.quantities)
    ratio = st.claim_ratio.astype(bool)
    alone = np.bincount(q_of_claim, minlength=n_q)[q_of_claim] == 1
    only_level = ~alone & ~ratio & (np.bincount(q_of_claim[~ratio], minlength=n_q)[q_of_claim] == 1)
    no_tension = alone | only_level
    tension[no_tension] = np.nan
    how[alone] = "no other claim"
    how[only_level] = "no other level claim"
    # ---- influence of each source (first: a source's refit moves every interval)
    log_count = posterior_draws(idata, "log_count")
    parts = []
    shared: dict = {}  # each quantity's quantiles and sort order of the full draws
    q_of_src = st.sources["q_idx"].to_numpy(np.int64)
    for j in range(len(st.sources)):
        if not len(loo.source_claims(st, j)):
            continue
        w, kj = loo.source_psis(cc, j)
        if (q_of_src == q_of_src[j]).sum() == 1:  # without it the quantity has no data
            rows = loo.influence_rows(st, log_count, j, log_count, None, prob, "only source", kj, shared)
            rows[["median_without", "lower_without", "upper_without", "shift", "width_ratio"]] = np.nan
            parts.append(rows)
            continue
        fit = without(loo.source_claims(st, j)) if kj > loo.LOO_K_MAX else None
        if fit is not None:
            parts.append(
                loo.influence_rows(st, log_count, j, posterior_draws(fit, "log_count"), None, prob, "refit", kj, shared)
            )
        else:
            m = label if kj <= loo.LOO_K_MAX else f"{label}, k > {loo.LOO_K_MAX}: unreliable"
            parts.append(loo.influence_rows(st, log_count, j, log_count, w, prob, m, kj, shared))
    # ---- claims, worst k first, while refits last
    for i in np.argsort(-k):
        if k[i] <= loo.LOO_K_MAX:
            break
        if no_tension[i]:
            continue
        fit = without(np.array([i]))
        if fit is None:
            how[i] = f"{label}, k > {loo.LOO_K_MAX}: unreliable"
            continue
        tension[i] = loo.refit_tension(st, fit, int(i))
        how[i] = "refit"
    checks = {
        "tension": tension,
        "tension_in_sample": cc.tension_in_sample,
        "pareto_k": k,
        "loo": how,
        "p_wild": cc.p_wild,
    }
    influence = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=loo.INFLUENCE_COLUMNS)
    unreliable = int(sum("unreliable" in h for h in how))
    sources_unreliable = sum("unreliable" in str(p["method"].iloc[0]) for p in parts)
    diag = {
        "refits": len(memo),
        "refit_divergences": refit_divergences[0],
        "claims_refit": int((how == "refit").sum()),
        "claims_unreliable": unreliable,
        "sources_unreliable": int(sources_unreliable),
        "pareto_k_max": float(k.max()) if n else float("nan"),
        "seconds": time.perf_counter() - t0,
    }
    if (unreliable or sources_unreliable) and exact:
        warnings.warn(
            f"{unreliable} claim(s) and {sources_unreliable} source(s) have PSIS Pareto k above "
            f"{loo.LOO_K_MAX} and were not refit "
            f"({'refits=0 asked for none' if refits == 0 else f'all refits={refits} were used'}): "
            "their tension or influence "
            "is unreliable (claims['loo'] and sources['influence_method'] say which). "
            "Pass a larger refits= to refit them.",
            ApproximationWarning,
            stacklevel=3,
        )
    return checks, influence[loo.INFLUENCE_COLUMNS], diag


def _with_influence(sources: pd.DataFrame, influence: pd.DataFrame) -> pd.DataFrame:
    """Add ``influence`` (largest relative move of any median when the source is dropped) and its method."""
    out = sources.copy()
    out["influence"] = np.nan
    out["influence_method"] = pd.Series([""] * len(out), index=out.index, dtype=object)
    if not len(influence):
        return out
    g = influence.assign(abs_shift=influence["shift"].abs()).groupby(["quantity", "source"], sort=False)
    top = g["abs_shift"].max()
    meth = influence.groupby(["quantity", "source"], sort=False)["method"].first()
    keys = list(zip(out["quantity"], out["source"], strict=True))
    out["influence"] = [top.get(key, np.nan) for key in keys]
    out["influence_method"] = [meth.get(key, "") for key in keys]
    return out


def prepare(
    table: pd.DataFrame,
    hierarchy: Hierarchy,
    interp: Interpretation,
    *,
    reference: str | None = None,
    robust: bool = False,
    errors: str = "raise",
    decimal: str | None = None,
) -> tuple[Any, Any]:
    """Claims table to ``(ClaimSet, Structure)``: everything :func:`reconcile` does before the model."""
    cs = normalise(table, hierarchy=hierarchy, interpretation=interp, errors=errors, decimal=decimal)
    shaped = shapes_table(cs.used, interp)
    st = describe(
        shaped,
        cs.hierarchy,
        reference=reference,
        robust=robust,
        robust_weight=interp.robust_weight,
        robust_sd=interp.robust_sd,
    )
    return cs, st


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
