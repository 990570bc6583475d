"""Calibration study: are the intervals right, and better than what analysts do?

    python benchmarks/calibration.py [--problems 300] [--workers N] [--out docs]

Simulates worlds with known truth (``estimates.simulate``) in five scenarios
(model-true, outliers, overconfident sources, a biased majority, sparse
claims), reconciles each, and scores the 50% and 90% intervals of leaves,
aggregates and source biases: empirical coverage with its binomial standard
error, the interval score (Gneiting and Raftery 2007) and the CRPS (both
from ``scoringrules``, on the log scale, where errors are multiplicative),
against the baselines of ``estimates.baselines``. For the model-true
scenario it also ranks each true leaf value among 99 posterior draws
(simulation-based calibration, Talts et al. 2018): a flat histogram is
calibrated.

Each scenario uses a few fixed designs (who says what about which cell);
the problems of one design differ only in their numbers, so they share one
compiled model. Designs run in parallel over ``--workers`` processes
(default: cores / 2, since each fit runs its chains on two threads).

Writes ``<out>/calibration.md`` (tables) and ``<out>/figures/calibration-*.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

#: Scenario -> options of ``estimates.simulate`` (common ones in ``WORLD``).
SCENARIOS = {
    "model-true": {},
    "outliers": {"outliers": 0.1},
    "overconfident": {"overconfident": 0.5},
    "biased-majority": {"biased_majority": math.log(1.5)},
    "sparse": {"claims_per_cell": 1.0},
}
#: Scenarios run with ``reconcile(reference="S1")`` (not in the default set): the remedy for a biased majority.
EXTRA = {"biased-majority+reference": {"biased_majority": math.log(1.5), "reference": True}}
WORLD = {"regions": 3, "periods": 4, "sources": 4, "claims_per_cell": 2.0}
LEVELS = (0.5, 0.9)
SBC_DRAWS = 99


@dataclass
class Setup:
    scenario: str
    design: int
    seeds: list[int]
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    robust: bool = False  # fit with robust=True; scored as method "model (robust)"


def _quantile_interval(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(x, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def score_problem(world, result, seed: int, label: str = "model", with_baselines: bool = True) -> list[dict]:  # noqa: ANN001
    """Rows (one per method, target and level) scoring one reconciled world (``label`` names the model)."""
    import scoringrules as sr

    from estimates import baselines

    rows: list[dict] = []
    iv = result.intervals.astype({"time": str})
    truth = world.truth.astype({"time": str})
    m = iv.reset_index().merge(truth, on=["region", "time"], how="left")
    post = result.idata.posterior["log_count"].values
    draws = post.reshape(-1, post.shape[-1])[:, m["index"].to_numpy()]
    x = m["log_count"].to_numpy()
    target = np.where(m["is_aggregate"], "aggregate", "leaf")
    has_claim = _cells_with_claims(world.claims, m)
    rng = np.random.default_rng(seed)
    thin = draws[rng.choice(len(draws), size=min(1000, len(draws)), replace=False)]
    crps = sr.crps_ensemble(x, thin.T)
    for level in LEVELS:
        lo, hi = _quantile_interval(draws, level)
        score = sr.interval_score(x, lo, hi, 1 - level)
        for t in ("leaf", "aggregate"):
            sel = target == t
            rows += _rows(label, t, level, x[sel], lo[sel], hi[sel], score[sel], crps[sel], has_claim[sel])
    ranks = (thin[:SBC_DRAWS] < x).sum(axis=0)  # rank of the truth among 99 draws: 0..99
    for t, r in zip(target, ranks, strict=True):
        if t == "leaf":
            rows.append({"method": label, "target": "leaf", "level": None, "rank": int(r)})
    # source biases (relative to the truth)
    lb = result.idata.posterior["log_bias"].values
    lb = lb.reshape(-1, lb.shape[-1])  # columns in result.sources order
    tb = world.sources.set_index("source").loc[result.sources["source"], "log_bias"].to_numpy()
    crps_b = sr.crps_ensemble(tb, lb.T)
    for level in LEVELS:
        lo, hi = _quantile_interval(lb, level)
        score = sr.interval_score(tb, lo, hi, 1 - level)
        rows += _rows(label, "bias", level, tb, lo, hi, score, crps_b, np.ones(len(tb), bool))
    # baselines on the cells with claims
    for name, fn in baselines.BASELINES.items() if with_baselines else ():
        for level in LEVELS:
            b = fn(world.claims, prob=level, hierarchy=world.hierarchy).astype({"time": str})
            bm = b.merge(truth, on=["region", "time"], how="inner")
            if not len(bm):
                continue
            xb = bm["log_count"].to_numpy()
            with np.errstate(divide="ignore"):  # an envelope open below has lower 0
                lo, hi = np.log(bm["lower"].to_numpy()), np.log(bm["upper"].to_numpy())
            med = np.log(bm["median"].to_numpy())
            # an envelope with only "more than" claims is open above: its
            # score is infinite, counted apart ("open") rather than averaged
            finite = np.isfinite(lo) & np.isfinite(hi)
            score = np.full(len(xb), np.inf)
            if finite.any():
                score[finite] = sr.interval_score(xb[finite], lo[finite], hi[finite], 1 - level)
            # CRPS of each baseline's own predictive: a normal for the pooled
            # ones, the interval as a uniform for the envelope, a point otherwise
            crps_b = _baseline_crps(sr, name, xb, med, lo, hi, level)
            tgt = np.where(bm["is_aggregate"], "aggregate", "leaf")
            for t in ("leaf", "aggregate"):
                sel = tgt == t
                every = np.ones(sel.sum(), bool)
                rows += _rows(name, t, level, xb[sel], lo[sel], hi[sel], score[sel], crps_b[sel], every)
    return rows


def _baseline_crps(sr, name: str, x, med, lo, hi, level: float) -> np.ndarray:  # noqa: ANN001
    if name in ("inverse-variance", "dersimonian-laird"):
        z = float(__import__("scipy").stats.norm.ppf(0.5 + level / 2))
        sd = np.maximum((hi - lo) / (2 * z), 1e-12)
        return np.asarray(sr.crps_normal(x, med, sd))
    if name == "envelope":
        finite = np.isfinite(lo) & np.isfinite(hi) & (hi > lo)
        out = np.abs(x - med)
        if finite.any():
            out[finite] = sr.crps_uniform(x[finite], lo[finite], hi[finite])
        return np.where(np.isfinite(hi), out, np.inf)
    return np.abs(x - med)  # a point forecast: CRPS is the absolute error


def _rows(method, target, level, x, lo, hi, score, crps, has_claim) -> list[dict]:  # noqa: ANN001
    inside = (lo <= x) & (x <= hi)
    return [
        {
            "method": method,
            "target": target,
            "level": level,
            "covered": bool(c),
            "score": float(s),
            "crps": float(r),
            "width": float(h - lo_),
            "has_claim": bool(hc),
        }
        for c, s, r, lo_, h, hc in zip(inside, score, crps, lo, hi, has_claim, strict=True)
    ]


def _cells_with_claims(claims: pd.DataFrame, cells: pd.DataFrame) -> np.ndarray:
    own = claims[claims["since"].isna()] if "since" in claims else claims
    keys = set(zip(own["region"], own["time"].astype(str), strict=True))
    return np.array([(r, t) in keys for r, t in zip(cells["region"], cells["time"], strict=True)])


def run_setup(setup: Setup) -> tuple[list[dict], dict]:
    """Every problem of one design (one compiled model), in this process."""
    import estimates as est

    rows: list[dict] = []
    info = {"scenario": setup.scenario, "fits": 0, "unconverged": 0, "seconds": 0.0, "compiles": 0}
    opts = {**WORLD, **{**SCENARIOS, **EXTRA}[setup.scenario]}
    reference = "S1" if opts.get("reference") else None
    for seed in setup.seeds:
        world = est.simulate(**opts, seed=seed, design_seed=setup.design)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = est.reconcile(
                world.claims,
                hierarchy=world.hierarchy,
                random_seed=seed,
                refits=0,
                robust=setup.robust,
                reference=reference,
                draws=setup.draws,
                tune=setup.tune,
                chains=setup.chains,
            )
        info["seconds"] += time.perf_counter() - t0
        info["fits"] += 1
        info["compiles"] += int(not res.diagnostics.get("cached", False))
        info["unconverged"] += int(not res.diagnostics["converged"])
        del caught
        label = "model (robust)" if setup.robust else "model"
        for r in score_problem(world, res, seed, label, with_baselines=not setup.robust):
            r.update(scenario=setup.scenario, problem=seed)
            rows.append(r)
    return rows, info


def setups(n_problems: int, designs_per_scenario: int, scenarios: list[str], offset: int = 0, **fit) -> list[Setup]:
    """Problems split evenly over scenarios and designs; ``offset`` shifts every seed (another sample of worlds)."""
    per = max(1, n_problems // len(scenarios))
    out = []
    for sc in scenarios:
        si = list({**SCENARIOS, **EXTRA}).index(sc)
        seeds = list(range(1 + si * 10_000 + offset, 1 + si * 10_000 + offset + per))
        for d in range(designs_per_scenario):
            out.append(Setup(sc, 1000 * (si + 1) + d + offset, seeds[d::designs_per_scenario], **fit))
    return out


def run(setups_: list[Setup], workers: int = 1, progress: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Run the setups (in ``workers`` processes), return all scoring rows and per-setup info."""
    rows, infos = [], []
    total = sum(len(s.seeds) for s in setups_)
    bar = _bar(total, progress)
    if workers <= 1:
        for s in setups_:
            r, i = run_setup(s)
            rows += r
            infos.append(i)
            bar.update(i["fits"])
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futures = [ex.submit(run_setup, s) for s in setups_]
            for f in as_completed(futures):
                r, i = f.result()
                rows += r
                infos.append(i)
                bar.update(i["fits"])
    bar.close()
    return pd.DataFrame(rows), infos


def _bar(total: int, on: bool):  # noqa: ANN202
    try:
        from tqdm import tqdm
    except ImportError:  # progress is optional
        on = False
    if not on:
        return type("NoBar", (), {"update": lambda self, n: None, "close": lambda self: None})()
    return tqdm(total=total, desc="problems", unit="fit", file=sys.stderr)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Coverage (with binomial standard error), mean interval score and CRPS per scenario, target, method."""
    d = df[df["level"].notna()]
    out = []
    for (sc, tgt, meth), g in d.groupby(["scenario", "target", "method"], sort=False):
        row = {"scenario": sc, "target": tgt, "method": meth}
        for level in LEVELS:
            gl = g[g["level"] == level]
            n = len(gl)
            p = gl["covered"].mean() if n else float("nan")
            row["n"] = n
            row[f"cov{int(level * 100)}"] = p
            row[f"se{int(level * 100)}"] = math.sqrt(p * (1 - p) / n) if n else float("nan")
            if level == 0.9:
                fin = np.isfinite(gl["score"])
                row["interval_score"] = gl.loc[fin, "score"].mean()
                row["crps"] = gl.loc[fin, "crps"].mean()
                row["width90"] = gl.loc[fin, "width"].mean()
                row["open"] = int((~fin).sum())
        out.append(row)
    return pd.DataFrame(out)


def comparison(df: pd.DataFrame) -> pd.DataFrame:
    """Mean 90% interval score and CRPS on the cells every method estimates (leaves and aggregates with claims)."""
    d = df[(df["level"] == 0.9) & df["target"].isin(["leaf", "aggregate"])].copy()
    d = d[~d["method"].str.startswith("model") | d["has_claim"]]
    out = []
    for sc, g in d.groupby("scenario", sort=False):
        row = {"scenario": sc}
        for meth, gm in g.groupby("method", sort=False):
            fin = np.isfinite(gm["score"])
            row[f"{meth} IS"] = gm.loc[fin, "score"].mean()  # open envelopes left out (see "open")
            row[f"{meth} CRPS"] = gm.loc[fin, "crps"].mean()
        out.append(row)
    return pd.DataFrame(out)


def markdown(summary: pd.DataFrame, comp: pd.DataFrame, infos: list[dict], header: str) -> str:
    lines = ["# Calibration results", "", header, "", "## Coverage, interval score and CRPS (log scale)", ""]
    lines.append(
        "| scenario | target | method | n | 50% coverage | 90% coverage | mean 90% interval score | mean CRPS "
        "| mean 90% width | open |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in summary.itertuples():
        lines.append(
            f"| {r.scenario} | {r.target} | {r.method} | {r.n} | {r.cov50:.3f} ± {r.se50:.3f} | "
            f"{r.cov90:.3f} ± {r.se90:.3f} | {r.interval_score:.3f} | {r.crps:.3f} | {r.width90:.3f} | {r.open} |"
        )
    lines += ["", "## Interval score and CRPS on the cells every method estimates", ""]
    cols = [c for c in comp.columns if c != "scenario"]
    lines.append("| scenario | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for r in comp.itertuples(index=False):
        lines.append(f"| {r[0]} | " + " | ".join(f"{v:.3f}" for v in r[1:]) + " |")
    fits = sum(i["fits"] for i in infos)
    unconv = sum(i["unconverged"] for i in infos)
    comps = sum(i["compiles"] for i in infos)
    secs = sum(i["seconds"] for i in infos)
    lines += [
        "",
        f"{fits} fits, {comps} compiles, {unconv} flagged as not converged (the warning's thresholds), "
        f"{secs:.0f} s of reconcile() in total.",
    ]
    return "\n".join(lines) + "\n"


def figures(df: pd.DataFrame, summary: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    # coverage of the 90% intervals by scenario, model vs baselines (leaves)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    leaf = summary[summary["target"] == "leaf"]
    methods = list(dict.fromkeys(leaf["method"]))
    scen = list(dict.fromkeys(leaf["scenario"]))
    w = 0.8 / len(methods)
    for i, meth in enumerate(methods):
        g = leaf[leaf["method"] == meth].set_index("scenario").reindex(scen)
        xs = np.arange(len(scen)) + (i - (len(methods) - 1) / 2) * w
        ax.bar(xs, g["cov90"], width=w, yerr=1.96 * g["se90"], label=meth, capsize=2)
    ax.axhline(0.9, color="black", lw=1, ls="--")
    ax.set_xticks(np.arange(len(scen)), scen)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of true leaf values inside\nthe 90% interval")
    ax.set_title(
        "Coverage of 90% intervals, leaves (dashed: nominal 0.9;\n"
        "error bars: binomial 95% CI, too narrow for clustered cells)"
    )
    ax.legend(ncols=len(methods), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    fig.tight_layout()
    p = out / "calibration-coverage.png"
    fig.savefig(p, dpi=110)
    paths.append(p)
    plt.close(fig)
    # rank histogram (SBC), model-true leaves
    ranks = df[(df["scenario"] == "model-true") & (df["method"] == "model") & df["rank"].notna()]["rank"].to_numpy()
    if len(ranks):
        fig, ax = plt.subplots(figsize=(6, 3.4))
        bins = np.linspace(0, SBC_DRAWS + 1, 21)
        expect = len(ranks) / 20
        band = 1.96 * math.sqrt(expect * (1 - 1 / 20))
        ax.axhspan(expect - band, expect + band, color="grey", alpha=0.3, lw=0, zorder=0)
        ax.hist(ranks, bins=bins, color="#4c72b0", edgecolor="white", zorder=2)
        ax.axhline(expect, color="black", lw=1, zorder=3)
        ax.set_xlabel(f"rank of the true leaf value among {SBC_DRAWS} posterior draws")
        ax.set_ylabel("leaf cells")
        ax.set_title("Simulation-based calibration, model-true (flat = calibrated;\ngrey: 95% band for 20 bins)")
        fig.tight_layout()
        p = out / "calibration-ranks.png"
        fig.savefig(p, dpi=110)
        paths.append(p)
        plt.close(fig)
    return paths


def rows_name(scenarios: list[str], offset: int = 0, robust: bool = False) -> str:
    """File name of a run's rows in ``benchmarks/results``: the full study is ``calibration-rows.csv.gz``.

    Any other run (some scenarios, other seeds, robust fits too) is named by
    what it ran, so it never overwrites the full study's rows.
    """
    parts = [] if sorted(scenarios) == sorted(SCENARIOS) else sorted(scenarios)
    parts += ["robust"] if robust else []
    parts += [f"offset{offset}"] if offset else []
    return "-".join(["calibration-rows", *parts]) + ".csv.gz"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=300, help="problems in all (split over scenarios)")
    ap.add_argument("--designs", type=int, default=3, help="designs per scenario (one compile each)")
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=[*SCENARIOS, *EXTRA])
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs")
    ap.add_argument("--robust", action="store_true", help="also fit every problem with robust=True")
    ap.add_argument("--replot", action="store_true", help="only redraw the figures from the saved rows")
    ap.add_argument("--offset", type=int, default=0, help="shift every seed: another sample of worlds")
    args = ap.parse_args(argv)
    if args.replot:
        df = pd.read_csv(HERE / "results" / "calibration-rows.csv.gz")
        for p in figures(df, summarise(df), args.out / "figures"):
            print(p)
        return 0
    t0 = time.perf_counter()
    fit = {"draws": args.draws, "tune": args.tune}
    todo = setups(args.problems, args.designs, args.scenarios, args.offset, **fit)
    if args.robust:
        todo += setups(args.problems, args.designs, args.scenarios, args.offset, **fit, robust=True)
    df, infos = run(todo, workers=args.workers)
    summary, comp = summarise(df), comparison(df)
    header = (
        f"`python benchmarks/calibration.py {' '.join(sys.argv[1:] if argv is None else argv)}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}: {df[['scenario', 'problem']].drop_duplicates().shape[0]} problems, "
        f"{time.perf_counter() - t0:.0f} s wall. Worlds: {json.dumps(WORLD)}; scenarios: "
        + ", ".join(f"{k} {json.dumps(v)}" for k, v in {**SCENARIOS, **EXTRA}.items() if k in args.scenarios)
        + "."
    )
    md = markdown(summary, comp, infos, header)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration-results.md").write_text(md)
    figures(df, summary, args.out / "figures")
    (HERE / "results").mkdir(exist_ok=True)
    df.to_csv(HERE / "results" / rows_name(args.scenarios, args.offset, args.robust), index=False)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
