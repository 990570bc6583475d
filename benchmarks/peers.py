"""Hand-written peers of the library's model: Stan (pystan 3) and numpyro.

Both fit exactly the model that ``estimates`` builds for a *flat* problem
(one random walk per region, no aggregates, no ratio claims), to the plain
arrays of ``problems.export_arrays``, with the library's sampler settings
(NUTS, diagonal mass matrix, target acceptance 0.95, max tree depth 10), so
the speed benchmark compares samplers, not models.

The model
---------
``R`` regions, ``K`` periods, ``S`` sources, ``N`` claims, everything on the
log scale.

Latent log-levels ``T[r, k]`` follow a Gaussian random walk whose level prior
sits at the region's *pivot* period ``p_r``::

    T[r, p_r] ~ Normal(prior_mean[r], prior_sd)
    T[r, k] - T[r, k-1] ~ Normal(0, sigma_r sqrt_dt[k])        (k >= 1)
    sigma_r = sigma_q exp(0.5 eta_r),  eta_r ~ Normal(0, 1),  sigma_q ~ LogNormal(log 1.0, 0.6)

(``sigma_q`` and ``eta`` exist only when ``K > 1``.) It is parametrised
non-centred, with ``z[R, K] ~ Normal(0, 1)``::

    inc[r, k] = sigma_r sqrt_dt[k] z[r, k]  (k >= 1),  inc[r, 0] = 0,  cs = cumsum_k inc
    T[r, k] = prior_mean[r] + prior_sd z[r, 0] + cs[r, k] - cs[r, p_r]

so ``z[r, 0]`` is the standardised level at the pivot and ``z[r, k >= 1]`` the
standardised steps; this is exactly the walk above, run outwards from the
pivot. (The library centres series that the data pin; the peers are
non-centred everywhere: a different parametrisation of the same density.)

Sources: log bias ``delta_s = tau zb_s``, ``zb_s ~ Normal(0, 1)``, ``tau ~
LogNormal(log 0.3, 0.6)``; log reliability ``log kappa_s = softplus(mu_k +
0.5 w_s)``, ``w_s ~ Normal(0, 1)``, ``mu_k ~ Normal(-1.5, 0.5)``. The reported
consensus is ``log_count[r, k] = T[r, k] - mean_s(delta_s)``.

A claim ``n`` on cell ``(r, k)`` by source ``s`` targets ``y = log_count[r, k] +
delta_s`` with scale ``sd = spread_n kappa_s``; its log-likelihood by shape:

- normal: ``log N(a | y, sd)``;
- box: ``log([Phi((y-a)/sd) - Phi((y-b)/sd)] / (b-a))`` (a uniform interval
  blurred by the normal), computed stably in both tails;
- lower (at least ``a``): ``log Phi((y-a)/sd)``; upper (at most ``b``):
  ``log Phi((b-y)/sd)``.

Implementations
---------------
- :func:`run_stan`: the program in ``peer_model.stan`` (same directory), via
  pystan 3 / httpstan. ``compile_s`` is the ``stan.build`` time (C++ compile
  the first time; httpstan caches the binary by program text, and
  ``compile_cached`` says whether it was a cache hit). httpstan runs chains in
  parallel worker processes, at most ``os.cpu_count()`` at a time.
  ``sample_s`` is the wall time of ``posterior.sample``, which includes
  pystan's transfer and JSON parsing of every draw (warm-up draws are saved,
  to count their leapfrog steps); ``sample_s_stan`` is the longest chain's
  warm-up + sampling time as Stan itself reports it. httpstan caches seeded
  fits on disk and would return a repeated run from there: the peer deletes
  them before and after sampling.
- :func:`run_numpyro`: the model in :func:`numpyro_model`, in float64.
  Importing this module asks XLA for ``os.cpu_count()`` host devices (before
  JAX initialises; if JAX was initialised earlier, with one device, chains
  run sequentially). Chains are ``pmap``-ed over the devices, in batches of
  the device count when there are more chains than devices (like PyMC's
  ``cores=min(chains, cpu_count)`` and httpstan's worker pool); the method
  used is reported as ``chain_method``. ``compile_s`` is the JAX trace,
  lowering and XLA compile time during the run, read from JAX's monitoring
  events (warm-up and sampling are compiled separately, both counted);
  ``sample_s`` is the rest of the wall time.

Both return a dict: ``compile_s, sample_s, n_grad`` (leapfrog steps over all
chains, warm-up included), ``divergences`` (post-warm-up), ``ess_bulk_min``
and ``r_hat_max`` (arviz, over log_count, delta, log_kappa, sigma_q, tau,
mu_k), and ``log_count`` draws of shape ``(chains, draws, R, K)``.

:func:`logp_check` shows the two peers compute the same log density (and
gradient) at the same unconstrained points. ``python peers.py [problem]``
runs it and a small smoke run of both peers.

pystan runs its HTTP client with ``asyncio.run``, which fails inside an
already running event loop (Jupyter): there, ``import nest_asyncio;
nest_asyncio.apply()`` first.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

# Ask XLA for one host device per core *before* JAX initialises its backend.
import numpyro

numpyro.set_host_device_count(os.cpu_count() or 1)
numpyro.enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.scipy.special import log_ndtr  # noqa: E402

STAN_FILE = Path(__file__).with_name("peer_model.stan")

#: NUTS settings shared with the library (its default target acceptance, ``SamplerOptions().target_accept``).
TARGET_ACCEPT = 0.8
MAX_TREE_DEPTH = 10

#: Variables whose ESS and R-hat are summarised.
SUMMARY_VARS = ("log_count", "delta", "log_kappa", "sigma_q", "tau", "mu_k")

# --------------------------------------------------------------------------- JAX compile time

# Seconds JAX spent tracing, lowering and compiling, accumulated from its
# monitoring events (each recorded once per top-level compilation).
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]


def _on_duration(event: str, duration: float, **_: object) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_duration)


# --------------------------------------------------------------------------- shared helpers


def _shape_index(arrays: dict) -> dict[str, np.ndarray]:
    """0-based claim indices of each likelihood shape."""
    shape = np.asarray(arrays["shape"])
    return {name: np.flatnonzero(shape == code) for code, name in enumerate(("normal", "box", "lower", "upper"))}


def _diagnostics(posterior: dict[str, np.ndarray]) -> tuple[float, float]:
    """Minimum bulk ESS and maximum R-hat over the summary variables (arrays are chain, draw, ...)."""
    import arviz as az

    data = az.from_dict(posterior={k: v for k, v in posterior.items() if k in SUMMARY_VARS and v.size})
    ess = az.ess(data, method="bulk")
    rhat = az.rhat(data)
    ess_min = min(float(np.nanmin(ess[v].values)) for v in ess.data_vars)
    rhat_max = max(float(np.nanmax(rhat[v].values)) for v in rhat.data_vars)
    return ess_min, rhat_max


# --------------------------------------------------------------------------- Stan


def stan_data(arrays: dict) -> dict:
    """The Stan program's data: 1-based indices, claims grouped by shape."""
    R, K = int(arrays["R"]), int(arrays["K"])
    idx = _shape_index(arrays)
    data = {
        "R": R,
        "K": K,
        "S": int(arrays["S"]),
        "N": int(arrays["N"]),
        "sqrt_dt": np.asarray(arrays["sqrt_dt"], float).tolist(),
        "pivot": (np.asarray(arrays["pivot"]) + 1).tolist(),
        "prior_mean": np.asarray(arrays["prior_mean"], float).tolist(),
        "prior_sd": float(arrays["prior_sd"]),
        # column-major index of (r, k) in the R x K matrix T
        "cell": (np.asarray(arrays["cell_period"]) * R + np.asarray(arrays["cell_region"]) + 1).tolist(),
        "source": (np.asarray(arrays["source"]) + 1).tolist(),
        "a": np.asarray(arrays["a"], float).tolist(),
        "b": np.asarray(arrays["b"], float).tolist(),
        "spread": np.asarray(arrays["spread"], float).tolist(),
    }
    for name, sel in idx.items():
        data[f"n_{name}"] = len(sel)
        data[f"i_{name}"] = (sel + 1).tolist()
    return data


def build_stan(arrays: dict, seed: int = 1):  # noqa: ANN201 - returns (stan.model.Model, float, bool)
    """Compile (or fetch from httpstan's cache) the Stan program for these data.

    Returns ``(posterior, seconds, cached)``; ``cached`` says whether httpstan
    already had the compiled program.
    """
    import httpstan.cache
    import httpstan.models
    import stan

    code = STAN_FILE.read_text()
    cached = httpstan.models.calculate_model_name(code) in httpstan.cache.list_model_names()
    t0 = time.perf_counter()
    posterior = stan.build(code, data=stan_data(arrays), random_seed=seed)
    return posterior, time.perf_counter() - t0, cached


def _clear_stan_fits(posterior) -> None:  # noqa: ANN001
    """Delete httpstan's stored fits of this program.

    httpstan keeps every seeded fit on disk and hands it back instantly when
    asked for the same data, settings and seed again: a repeated benchmark
    run would time a file read, not a sampler.
    """
    import httpstan.cache

    for path in (httpstan.cache.model_directory(posterior.model_name) / "fits").glob("*.jsonlines.gz"):
        path.unlink(missing_ok=True)


def run_stan(arrays: dict, *, draws: int, tune: int, chains: int, seed: int) -> dict:
    """Fit the model with Stan's NUTS (diag_e, delta 0.95, max depth 10) through pystan 3."""
    posterior, compile_s, cached = build_stan(arrays, seed)
    _clear_stan_fits(posterior)
    t0 = time.perf_counter()
    fit = posterior.sample(
        num_chains=chains,
        num_samples=draws,
        num_warmup=tune,
        delta=TARGET_ACCEPT,
        max_depth=MAX_TREE_DEPTH,
        save_warmup=True,  # to count warm-up gradient evaluations
    )
    sample_s = time.perf_counter() - t0
    _clear_stan_fits(posterior)

    def by_chain(name: str) -> np.ndarray:
        """Draws of one variable as (chain, draw incl. warm-up, *dims)."""
        x = np.asarray(fit[name])  # (*dims, draw + n_saved * chain), Fortran order
        dims = x.shape[:-1]
        x = x.reshape(*dims, chains, tune + draws)
        return np.moveaxis(x, (-2, -1), (0, 1))

    n_leapfrog = by_chain("n_leapfrog__")[..., 0]
    divergent = by_chain("divergent__")[..., 0]
    post = {name: by_chain(name)[:, tune:] for name in ("log_count", "delta", "log_kappa", "tau", "mu_k")}
    if int(arrays["K"]) > 1:
        post["sigma_q"] = by_chain("sigma_q")[:, tune:, 0]
    post["tau"] = post["tau"][..., 0]
    post["mu_k"] = post["mu_k"][..., 0]
    ess_min, rhat_max = _diagnostics(post)
    return {
        "compile_s": compile_s,
        "compile_cached": cached,
        "sample_s": sample_s,
        "sample_s_stan": _stan_elapsed(fit),
        "n_grad": int(n_leapfrog.sum()),
        "n_grad_warmup_included": True,
        "divergences": int(divergent[:, tune:].sum()),
        "ess_bulk_min": ess_min,
        "r_hat_max": rhat_max,
        "log_count": post["log_count"],
    }


def _stan_elapsed(fit) -> float | None:  # noqa: ANN001
    """Longest chain's warm-up + sampling time as Stan itself reports it (no pystan I/O), or None."""
    import json

    totals = []
    for out in fit.stan_outputs:
        for line in out.splitlines():
            msg = json.loads(line)
            if msg.get("topic") != "logger":
                continue
            for text in msg.get("values", []):
                # "info: Elapsed Time: 0.1 seconds (Warm-up)", "... (Sampling)", "info:   0.6 seconds (Total)"
                text = str(text)
                if text.endswith("seconds (Total)"):
                    totals.append(float(text.split()[-3]))
    return max(totals) if totals else None


# --------------------------------------------------------------------------- numpyro


def _log_phi_diff(u, w):  # noqa: ANN001, ANN202
    """``log(Phi(u) - Phi(u - w))`` for ``w > 0``, stable, with finite gradients everywhere.

    With ``v = u - w``: both in the lower tail (``u <= 0``), both in the upper
    tail (``v >= 0``), or straddling zero. Each branch is evaluated on inputs
    clipped to its own region (keeping ``u - v = w``), so the branches
    ``where`` discards never produce inf/NaN, whose gradient would leak
    through it.
    """
    v = u - w
    # lower tail: log Phi(u) + log(1 - Phi(v) / Phi(u))
    u1 = jnp.minimum(u, 0.0)
    l1 = log_ndtr(u1)
    lower = l1 + jnp.log(-jnp.expm1(log_ndtr(u1 - w) - l1))
    # upper tail: Phi(u) - Phi(v) = Phi(-v) - Phi(-u)
    v2 = jnp.maximum(v, 0.0)
    l2 = log_ndtr(-v2)
    upper = l2 + jnp.log(-jnp.expm1(log_ndtr(-(v2 + w)) - l2))
    # straddling: 1 - Phi(-u) - Phi(v), each term at most 1/2
    u3 = jnp.maximum(u, 0.0)
    v3 = jnp.minimum(v, 0.0)
    mid = jnp.log1p(-(jnp.exp(log_ndtr(-u3)) + jnp.exp(log_ndtr(v3))))
    return jnp.where(u <= 0.0, lower, jnp.where(v >= 0.0, upper, mid))


def numpyro_data(arrays: dict) -> dict:
    """Arrays for :func:`numpyro_model`: sizes as Python ints, claims split by shape."""
    d = {k: int(arrays[k]) for k in ("R", "K", "S")}
    d["sqrt_dt"] = jnp.asarray(arrays["sqrt_dt"], jnp.float64)
    d["pivot"] = jnp.asarray(arrays["pivot"])
    d["prior_mean"] = jnp.asarray(arrays["prior_mean"], jnp.float64)
    d["prior_sd"] = float(arrays["prior_sd"])
    for name, sel in _shape_index(arrays).items():
        d[name] = {
            "region": jnp.asarray(np.asarray(arrays["cell_region"])[sel]),
            "period": jnp.asarray(np.asarray(arrays["cell_period"])[sel]),
            "source": jnp.asarray(np.asarray(arrays["source"])[sel]),
            "a": jnp.asarray(np.asarray(arrays["a"], float)[sel]),
            "b": jnp.asarray(np.asarray(arrays["b"], float)[sel]),
            "spread": jnp.asarray(np.asarray(arrays["spread"], float)[sel]),
        }
    return d


def numpyro_model(d: dict) -> None:
    """The model of the module docstring, on the data of :func:`numpyro_data`."""
    R, K, S = d["R"], d["K"], d["S"]
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([R, K]).to_event(2))
    if K > 1:
        sigma_q = numpyro.sample("sigma_q", dist.LogNormal(math.log(1.0), 0.6))
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0).expand([R]).to_event(1))
        sigma_r = sigma_q * jnp.exp(0.5 * eta)
        inc = (sigma_r[:, None] * d["sqrt_dt"][None, :] * z).at[:, 0].set(0.0)
        cs = jnp.cumsum(inc, axis=1)
        cs_pivot = jnp.take_along_axis(cs, d["pivot"][:, None], axis=1)
        T = (d["prior_mean"] + d["prior_sd"] * z[:, 0])[:, None] + cs - cs_pivot
    else:
        T = (d["prior_mean"] + d["prior_sd"] * z[:, 0])[:, None]

    tau = numpyro.sample("tau", dist.LogNormal(math.log(0.3), 0.6))
    zb = numpyro.sample("zb", dist.Normal(0.0, 1.0).expand([S]).to_event(1))
    delta = numpyro.deterministic("delta", tau * zb)
    mu_k = numpyro.sample("mu_k", dist.Normal(-1.5, 0.5))
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([S]).to_event(1))
    log_kappa = numpyro.deterministic("log_kappa", jax.nn.softplus(mu_k + 0.5 * w))
    log_count = numpyro.deterministic("log_count", T - jnp.mean(delta))

    def target(c: dict):  # noqa: ANN202 - claim targets and scales of one shape
        y = log_count[c["region"], c["period"]] + delta[c["source"]]
        return y, c["spread"] * jnp.exp(log_kappa[c["source"]])

    ll = 0.0
    c = d["normal"]
    if c["a"].size:
        y, sd = target(c)
        ll += jnp.sum(dist.Normal(y, sd).log_prob(c["a"]))
    c = d["box"]
    if c["a"].size:
        y, sd = target(c)
        ll += jnp.sum(_log_phi_diff((y - c["a"]) / sd, (c["b"] - c["a"]) / sd) - jnp.log(c["b"] - c["a"]))
    c = d["lower"]
    if c["a"].size:
        y, sd = target(c)
        ll += jnp.sum(log_ndtr((y - c["a"]) / sd))
    c = d["upper"]
    if c["a"].size:
        y, sd = target(c)
        ll += jnp.sum(log_ndtr((c["b"] - y) / sd))
    numpyro.factor("claims", ll)


def _chain_method(chains: int):  # noqa: ANN202 - numpyro chain_method: a string or a callable
    """Run chains on all host devices, in batches of the device count; name of the method."""
    n_dev = jax.local_device_count()
    if chains == 1 or n_dev == 1:
        return "sequential", "sequential"
    if chains <= n_dev:
        return "parallel", f"parallel ({chains} devices)"

    def batched(f):  # noqa: ANN001, ANN202
        pf = jax.pmap(f)

        def run(xs):  # noqa: ANN001, ANN202
            # Batches and results pass through the host: the previous phase's state arrives
            # sharded over the devices, and cross-device slicing or concatenation can make
            # XLA's CPU collectives deadlock.
            xs = jax.device_get(xs)
            outs = [
                jax.device_get(pf(jax.tree.map(lambda x, i=i: x[i : i + n_dev], xs))) for i in range(0, chains, n_dev)
            ]
            return jax.tree.map(lambda *parts: np.concatenate(parts), *outs)

        return run

    return batched, f"parallel in batches of {n_dev} devices"


def run_numpyro(arrays: dict, *, draws: int, tune: int, chains: int, seed: int) -> dict:
    """Fit the model with numpyro's NUTS (diagonal mass, target accept 0.95, max depth 10)."""
    from numpyro.infer import MCMC, NUTS

    d = numpyro_data(arrays)
    method, method_name = _chain_method(chains)
    kernel = NUTS(numpyro_model, target_accept_prob=TARGET_ACCEPT, dense_mass=False, max_tree_depth=MAX_TREE_DEPTH)
    mcmc = MCMC(kernel, num_warmup=tune, num_samples=draws, num_chains=chains, chain_method=method, progress_bar=False)
    fields = ("num_steps", "diverging")
    # warm-up draws are collected only for their step counts: drop the big sites
    light = ("~z.z", "~z.log_count")
    key_warm, key_sample = jax.random.split(jax.random.PRNGKey(seed))

    c0 = _compile_seconds[0]
    t0 = time.perf_counter()
    mcmc.warmup(key_warm, d, extra_fields=fields + light, collect_warmup=True)
    warm_steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])
    mcmc.run(key_sample, d, extra_fields=fields)
    samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    wall = time.perf_counter() - t0
    compile_s = _compile_seconds[0] - c0

    extra = mcmc.get_extra_fields(group_by_chain=True)
    post = {k: np.asarray(v) for k, v in samples.items() if k in SUMMARY_VARS}
    ess_min, rhat_max = _diagnostics(post)
    return {
        "compile_s": compile_s,
        "compile_included": False,
        "sample_s": wall - compile_s,
        "n_grad": int(warm_steps.sum() + np.asarray(extra["num_steps"]).sum()),
        "n_grad_warmup_included": True,
        "divergences": int(np.asarray(extra["diverging"]).sum()),
        "ess_bulk_min": ess_min,
        "r_hat_max": rhat_max,
        "log_count": post["log_count"],
        "chain_method": method_name,
    }


# --------------------------------------------------------------------------- agreement check


def _random_point(arrays: dict, rng: np.random.Generator, scale: float) -> dict[str, np.ndarray]:
    """A random unconstrained point (numpyro's site names; positive scales on the log scale)."""
    R, K, S = int(arrays["R"]), int(arrays["K"]), int(arrays["S"])
    p = {
        "z": rng.normal(0.0, scale, (R, K)),
        "tau": rng.normal(math.log(0.3), scale),
        "zb": rng.normal(0.0, 1.0, S),
        "mu_k": rng.normal(-1.5, 0.5),
        "w": rng.normal(0.0, 1.0, S),
    }
    if K > 1:
        p["sigma_q"] = rng.normal(math.log(0.3), scale)
        p["eta"] = rng.normal(0.0, 1.0, R)
    return p


def _to_stan_vector(arrays: dict, p: dict[str, np.ndarray]) -> list[float]:
    """numpyro's unconstrained point as Stan's unconstrained vector (declaration order, matrices column-major)."""
    parts = []
    if int(arrays["K"]) > 1:
        parts += [np.atleast_1d(p["sigma_q"]), np.atleast_1d(p["eta"])]
    parts += [
        np.asarray(p["z"]).ravel(order="F"),
        np.atleast_1d(p["tau"]),
        np.atleast_1d(p["zb"]),
        np.atleast_1d(p["mu_k"]),
        np.atleast_1d(p["w"]),
    ]
    return np.concatenate(parts).astype(float).tolist()


def logp_check(arrays: dict, *, n_points: int = 4, scale: float = 0.3, seed: int = 0) -> dict:
    """Do the two peers compute the same log density? Compare at the same unconstrained points.

    Draws ``n_points`` random unconstrained points (walk steps and levels
    within ``scale`` of the prior centre, so claims sit in both tails and in
    between), evaluates Stan's ``log_prob`` (Jacobian included) and minus
    numpyro's potential energy at each, and compares the *differences* from
    the first point (additive constants cancel). Also compares the gradients.
    Returns the largest relative discrepancies; raises if they exceed 1e-8
    (log density) or 1e-4 (gradient). The gradients differ by about 1e-6 to 1e-5
    relative because Stan differentiates ``std_normal_lcdf`` with an
    approximation (Abramowitz and Stegun 7.1.26, see Stan Math's
    ``std_normal_lcdf.hpp``); numpyro's gradient agrees with finite
    differences of the log density to about 1e-10. HMC stays exact either
    way (the accept step uses the exact density).
    """
    from numpyro.infer.util import potential_energy

    posterior, _, _ = build_stan(arrays)
    d = numpyro_data(arrays)
    rng = np.random.default_rng(seed)

    def np_logp(p):  # noqa: ANN001, ANN202
        return -potential_energy(numpyro_model, (d,), {}, p)

    np_grad = jax.grad(lambda p: np_logp(p))
    lp_stan, lp_np, grad_err = [], [], 0.0
    for _ in range(n_points):
        p = {k: jnp.asarray(v) for k, v in _random_point(arrays, rng, scale).items()}
        x = _to_stan_vector(arrays, p)
        lp_stan.append(posterior.log_prob(x, adjust_transform=True))
        lp_np.append(float(np_logp(p)))
        g_stan = np.asarray(posterior.grad_log_prob(x))
        g_np = np.asarray(_to_stan_vector(arrays, {k: np.asarray(v) for k, v in np_grad(p).items()}))
        grad_err = max(grad_err, float(np.max(np.abs(g_stan - g_np)) / np.max(np.abs(g_stan))))
    diff_stan = np.asarray(lp_stan[1:]) - lp_stan[0]
    diff_np = np.asarray(lp_np[1:]) - lp_np[0]
    rel = float(np.max(np.abs(diff_stan - diff_np) / np.maximum(np.abs(diff_stan), 1.0)))
    out = {
        "logp_stan": lp_stan,
        "logp_numpyro": lp_np,
        "diff_rel_err": rel,
        "grad_rel_err": grad_err,
    }
    if rel > 1e-8 or grad_err > 1e-4:
        raise AssertionError(f"peers disagree: {out}")
    return out


if __name__ == "__main__":
    import sys

    import problems

    name = sys.argv[1] if len(sys.argv) > 1 else "medium"
    arr = problems.export_arrays(problems.get(name))
    print("logp check:", logp_check(arr))
    for label, run in (("stan", run_stan), ("numpyro", run_numpyro)):
        res = run(arr, draws=200, tune=200, chains=2, seed=1)
        lc = res.pop("log_count")
        med = np.median(lc.reshape(-1, *lc.shape[2:]), axis=0)[0, :3]
        print(label, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}, "median[0,:3]", med)
