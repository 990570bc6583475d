"""Speed benchmark: the library's engines and hand-written peers on the same problems.

    python benchmarks/run.py                        # article, medium, ucdp-prio; 3 repeats; peers
    python benchmarks/run.py --sizes large --repeats 1 --engines nutpie advi --peers
    python benchmarks/run.py --quick                # article only, 1 repeat, no peers (a smoke run)

Every measurement runs in a fresh Python process, so import and compile
times are what a user sees. For the library's engines the first repeat of a
problem starts from empty compile caches (``cold``: PyTensor's and Numba's,
where nutpie's kernel is kept) and later repeats reuse them (``warm``, a new
process with warm on-disk caches); each
process then calls ``reconcile`` a second time on the same structure with
other numbers (``again``: the in-process cache). Peers (Stan through
pystan, numpyro) fit the same model to the same interpreted claims
(``problems.export_arrays``), with the same draws, chains and target
acceptance.

Writes ``benchmarks/results/speed.md`` (the table) and ``speed.json`` (every
run) and prints the table. Figures are mean +- sd over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: The library's defaults (``estimates.inference.SamplerOptions``; not imported here, so that a worker's
#: import time is the library's own): what ``reconcile()`` runs unless told otherwise.
DRAWS, TUNE, CHAINS, TARGET_ACCEPT = 1000, 500, 4, 0.8


# --------------------------------------------------------------------------- worker (one process per run)


def _peak_mb() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def _worker_library(spec: dict) -> dict:
    t0 = time.perf_counter()
    import estimates as est

    if spec["engine"] in ("nutpie", "advi"):
        import nutpie  # noqa: F401 - part of the import cost a user pays
    t_import = time.perf_counter() - t0
    sys.path.insert(0, str(HERE))
    import problems

    prob = problems.get(spec["problem"])
    kw = dict(
        # the peers fit only: no exact leave-one-out refits here (their cost
        # is measured in docs/diagnostics.md); PSIS checks still run
        refits=0,
        hierarchy=prob.hierarchy,
        random_seed=spec["seed"],
        draws=spec.get("draws", DRAWS),
        tune=spec.get("tune", TUNE),
        chains=spec.get("chains", CHAINS),
    )
    if spec["engine"] == "advi":
        kw["method"] = "advi"
    else:  # "pymc-numpyro" is the library's numpyro engine ("numpyro" alone is the hand-written peer)
        kw["sampler"] = {"pymc-numpyro": "numpyro"}.get(spec["engine"], spec["engine"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is reported in the table, not as warnings
        t1 = time.perf_counter()
        res = est.reconcile(prob.claims, **kw)
        wall = time.perf_counter() - t1
        # the same structure, other numbers: every number 5% higher
        again_wall, again_cached = None, None
        if spec.get("again"):
            again_claims = prob.claims.drop(columns=["claim"], errors="ignore")  # the numbers, not the texts
            for col in ("low", "high", "value"):
                if col in again_claims:
                    again_claims[col] = again_claims[col] * 1.05
            t2 = time.perf_counter()
            again = est.reconcile(again_claims, **kw)
            again_wall = time.perf_counter() - t2
            again_cached = bool(again.diagnostics.get("cached"))
    d, tm = res.diagnostics, res.meta["timings"]
    out = {
        "import": t_import,
        "prepare": tm["prepare"],
        "build": tm["build"],
        "compile": tm["compile"],
        "sample": tm["sample"],
        "summarise": tm["summarise"] + tm.get("checks", 0.0),
        "wall": wall,
        "again": again_wall,
        "again_cached": again_cached,
        "ess_bulk_min": d["ess_bulk_min"],
        "r_hat_max": d["r_hat_max"],
        "divergences": d["divergences"],
        "gradients": d["gradients"],
        "pareto_k": d.get("pareto_k"),
        "n_claims": int((res.claims["status"] == "used").sum()),
        "n_params": _n_params(res),
        "peak_mb": _peak_mb(),
    }
    iv = res.intervals
    logs = [np.log(iv[c].to_numpy()) for c in ("median", "lower", "upper")]
    _save_intervals(spec, *logs)
    if prob.truth is not None:
        m = iv.merge(prob.truth, on=["region", "time"])
        inside = (np.log(m["lower"]) <= m["log_count"]) & (m["log_count"] <= np.log(m["upper"]))
        out["coverage90"] = float(inside.mean())
    return out


def _n_params(res) -> int:  # noqa: ANN001
    post = res.idata.posterior
    skip = {"log_count", "log_bias", "log_reliability"}
    return int(sum(post[v].isel(chain=0, draw=0).size for v in post.data_vars if v not in skip and "__" not in v))


def _worker_peer(spec: dict) -> dict:
    t0 = time.perf_counter()
    sys.path.insert(0, str(HERE))
    import peers
    import problems

    t_import = time.perf_counter() - t0
    arrays = problems.export_arrays(problems.get(spec["problem"]))
    run = peers.run_stan if spec["engine"] == "stan" else peers.run_numpyro
    r = run(
        arrays,
        draws=spec.get("draws", DRAWS),
        tune=spec.get("tune", TUNE),
        chains=spec.get("chains", CHAINS),
        seed=spec["seed"],
    )
    lc = np.asarray(r.pop("log_count"))  # chains, draws, R, K
    flat = lc.reshape(-1, lc.shape[2] * lc.shape[3])
    q = np.quantile(flat, [0.05, 0.5, 0.95], axis=0)
    _save_intervals(spec, q[1], q[0], q[2])
    out = {"import": t_import, "peak_mb": _peak_mb(), "n_claims": int(arrays["N"])}
    out.update({k: v for k, v in r.items() if np.isscalar(v) or v is None})
    out["wall"] = out.get("compile_s", 0.0) + out.get("sample_s", 0.0)
    out["compile"] = out.pop("compile_s", float("nan"))
    out["sample"] = out.pop("sample_s", float("nan"))
    out["gradients"] = out.pop("n_grad", float("nan"))
    return out


def _save_intervals(spec: dict, med: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    path = Path(spec["intervals_dir"]) / f"{spec['problem']}.{spec['engine']}.{spec['repeat']}.npz"
    np.savez(path, median=med, lower=lo, upper=hi)


# --------------------------------------------------------------------------- driver


def _run(spec: dict, env: dict | None = None, timeout: float | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"stopped after {timeout:.0f} s"}
    total = time.perf_counter() - t0
    if p.returncode != 0:
        return {**spec, "error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return {**spec, **out, "process": total}


def _fmt(vals: list[float], digits: int = 1) -> str:
    v = np.array([x for x in vals if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def table(runs: list[dict]) -> str:
    """The Markdown table: one row per problem and engine."""
    head = (
        "| problem | engine | claims | params | import s | prepare s | build s | compile s (cold / warm) | "
        "sample s | summarise s | end to end s | again s | min bulk ESS | ESS/s | grads/ESS | max R-hat | "
        "divergences | peak MB | n |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = list(dict.fromkeys((r["problem"], r["engine"]) for r in runs))
    for prob, eng in keys:
        rs = [r for r in runs if (r["problem"], r["engine"]) == (prob, eng) and "error" not in r]
        if not rs:
            err = next(r["error"] for r in runs if (r["problem"], r["engine"]) == (prob, eng))
            lines.append(f"| {prob} | {eng} | failed: {err[:80]} |" + " |" * 17)
            continue
        cold = [r["compile"] for r in rs if r.get("cache") == "cold"]
        warm = [r["compile"] for r in rs if r.get("cache") != "cold"]
        ess = [r.get("ess_bulk_min") for r in rs]
        ess_s = [r["ess_bulk_min"] / r["sample"] for r in rs if r.get("ess_bulk_min") and r.get("sample")]
        gpe = [r["gradients"] / r["ess_bulk_min"] for r in rs if r.get("ess_bulk_min") and r.get("gradients")]
        e2e = [r.get("import", 0) + r.get("wall", 0) for r in rs]
        lines.append(
            f"| {prob} | {eng} | {rs[0].get('n_claims', '-')} | {rs[0].get('n_params', '-')} | "
            f"{_fmt([r.get('import') for r in rs])} | {_fmt([r.get('prepare') for r in rs], 2)} | "
            f"{_fmt([r.get('build') for r in rs], 2)} | {_fmt(cold)} / {_fmt(warm)} | "
            f"{_fmt([r['sample'] for r in rs])} | "
            f"{_fmt([r.get('summarise') for r in rs], 2)} | {_fmt(e2e)} | {_fmt([r.get('again') for r in rs], 2)} | "
            f"{_fmt(ess, 0)} | {_fmt(ess_s, 1)} | {_fmt(gpe, 0)} | {_fmt([r.get('r_hat_max') for r in rs], 3)} | "
            f"{_fmt([r.get('divergences') for r in rs], 0)} | {_fmt([r.get('peak_mb') for r in rs], 0)} | {len(rs)} |"
        )
    return "\n".join(lines)


def comparison(runs: list[dict], intervals_dir: Path, fresh: set | None = None) -> str:
    """Peers and the approximation against the library's NUTS (nutpie): ESS/s ratio and 90% intervals.

    ``fresh``: the (problem, engine) pairs run by this command; the others
    come from ``speed.json`` (an earlier run, perhaps of other code) and say so.
    """
    lines = [
        "| problem | engine | nutpie ESS/s ÷ engine ESS/s | median 90% width ÷ NUTS | "
        "max abs median difference ÷ NUTS sd | 90% coverage of truth |",
        "|---|---|---|---|---|---|",
    ]
    for prob in dict.fromkeys(r["problem"] for r in runs):
        ref = [r for r in runs if r["problem"] == prob and r["engine"] == "nutpie" and "error" not in r]
        ref_file = intervals_dir / f"{prob}.nutpie.0.npz"
        if not ref or not ref_file.exists():
            continue
        ref_rate = np.mean([r["ess_bulk_min"] / r["sample"] for r in ref])
        base = np.load(ref_file)
        base_w = base["upper"] - base["lower"]
        for eng in dict.fromkeys(r["engine"] for r in runs if r["problem"] == prob):
            rs = [r for r in runs if r["problem"] == prob and r["engine"] == eng and "error" not in r]
            f = intervals_dir / f"{prob}.{eng}.0.npz"
            if not rs or not f.exists():
                continue
            other = np.load(f)
            if other["median"].shape != base["median"].shape:
                continue
            rates = [r["ess_bulk_min"] / r["sample"] for r in rs if r.get("ess_bulk_min") and r.get("sample")]
            ratio = f"{ref_rate / np.mean(rates):.2f}" if rates and eng not in ("nutpie", "advi") else "-"
            w = np.median((other["upper"] - other["lower"]) / base_w)
            dmax = np.max(np.abs(other["median"] - base["median"]) / (base_w / (2 * 1.645)))
            cov = _fmt([r.get("coverage90") for r in rs], 3)
            label = eng if fresh is None or (prob, eng) in fresh else f"{eng} (stored, earlier run)"
            lines.append(f"| {prob} | {label} | {ratio} | {w:.2f} | {dmax:.2f} | {cov} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["article", "medium", "ucdp-prio"])
    ap.add_argument(
        "--engines",
        nargs="+",
        default=["nutpie", "pymc", "advi"],
        help="nutpie, pymc, pymc-numpyro, nutpie-jax, advi",
    )
    ap.add_argument("--peers", nargs="*", default=["stan", "numpyro"], help="hand-written peers (none: --peers)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-repeats", type=int, default=None, help="repeats for peers (default: --repeats)")
    ap.add_argument("--quick", action="store_true", help="article, nutpie, 1 repeat, no peers")
    ap.add_argument(
        "--again", action="store_true", help="time a second in-process call on every problem (default: article)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--draws", type=int, default=DRAWS, help=f"draws per chain (default {DRAWS})")
    ap.add_argument("--tune", type=int, default=TUNE, help=f"tuning steps per chain (default {TUNE})")
    ap.add_argument("--chains", type=int, default=CHAINS, help=f"chains (default {CHAINS})")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before one run is stopped (reported)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        spec = json.loads(a.worker)
        fn = _worker_peer if spec["engine"] in ("stan", "numpyro") else _worker_library
        print(json.dumps(fn(spec), default=float))
        return 0
    if a.quick:
        a.sizes, a.engines, a.peers, a.repeats = ["article"], ["nutpie"], [], 1
    a.out.mkdir(parents=True, exist_ok=True)
    idir = a.out / "intervals"
    idir.mkdir(exist_ok=True)
    runs: list[dict] = []
    budget = dict(draws=a.draws, tune=a.tune, chains=a.chains)
    peer_repeats = a.peer_repeats if a.peer_repeats is not None else a.repeats
    for prob in a.sizes:
        for eng in a.engines:
            cdir = tempfile.mkdtemp(prefix=f"bench-{prob}-{eng}-")
            # cold: PyTensor's cache and Numba's (where the kernel nutpie samples is cached) both empty
            env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cdir}", NUMBA_CACHE_DIR=f"{cdir}/numba-cache")
            for rep in range(a.repeats):
                spec = dict(problem=prob, engine=eng, repeat=rep, seed=rep, intervals_dir=str(idir), **budget)
                spec["again"] = prob == "article" or a.again
                r = _run(spec, env, a.timeout)
                r["cache"] = "cold" if rep == 0 else "warm"
                runs.append(r)
                print(json.dumps({k: r.get(k) for k in ("problem", "engine", "repeat", "wall", "error")}), flush=True)
        if prob == "article":
            continue  # peers take flat problems only
        for eng in a.peers:
            for rep in range(peer_repeats):
                spec = dict(problem=prob, engine=eng, repeat=rep, seed=rep, intervals_dir=str(idir), **budget)
                r = _run(spec, timeout=a.timeout)
                runs.append(r)
                print(json.dumps({k: r.get(k) for k in ("problem", "engine", "repeat", "wall", "error")}), flush=True)
    prev = json.loads((a.out / "speed.json").read_text()) if (a.out / "speed.json").exists() else []
    keep = [r for r in prev if (r["problem"], r["engine"]) not in {(x["problem"], x["engine"]) for x in runs}]
    (a.out / "speed.json").write_text(json.dumps(keep + runs, indent=1, default=float))
    both = keep + runs
    fresh = {(r["problem"], r["engine"]) for r in runs}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    md = (
        f"# Speed benchmark\n\n`python {' '.join(['benchmarks/run.py', *(argv or sys.argv[1:])])}` on {machine}, "
        f"{time.strftime('%Y-%m-%d')}. NUTS: {a.chains} chains x ({a.tune} tune + {a.draws} draws), "
        f"target accept {TARGET_ACCEPT} (the library's default; the peers the same).\n\n"
        f"{table(runs)}\n\n## Against NUTS (nutpie)\n\n{comparison(both, idir, fresh)}\n"
    )
    (a.out / f"speed-{'-'.join(a.sizes)}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
