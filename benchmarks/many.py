"""Many groups: serial in one process vs a local Dask cluster, with compile counts per worker.

    python benchmarks/many.py                      # both cases, 2 Dask workers
    python benchmarks/many.py --cases ucdp-prio --groups 40 --workers 2

Cases:
- ``simulated``: N worlds of one design (``estimates.simulate``, one layout of
  claims), one group each;
- ``ucdp-prio``: the first N location-years coded by both UCDP v17.1 and PRIO
  v3.1 (``../shared/data``), each a group of two range claims (every group has
  the same layout).

For each case and executor: wall time from the call to the last result
(worker start-up is timed apart), groups per minute, how many groups compiled
a model (the rest reused the one their worker had), how many converged. Writes
``benchmarks/results/many.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import ucdp_prio  # noqa: E402

import estimates as est  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OPTIONS = {"draws": 1000, "tune": 1000, "refits": 0}


def simulated(n: int) -> tuple[pd.DataFrame, dict]:
    tables, hierarchy = [], None
    for i in range(n):
        world = est.simulate(regions=3, periods=4, sources=4, seed=1000 + i, design_seed=11)
        tables.append(world.claims.assign(group=f"world {i:03d}"))
        hierarchy = world.hierarchy
    return pd.concat(tables, ignore_index=True), hierarchy


def ucdp_prio_groups(n: int) -> tuple[pd.DataFrame, None]:
    claims = ucdp_prio().claims
    keys = claims[["region", "time"]].drop_duplicates().head(n)
    sub = claims.merge(keys, on=["region", "time"])
    return sub.assign(group=sub["region"] + " " + sub["time"].astype(str)), None


def run(claims: pd.DataFrame, hierarchy: dict | None, executor) -> tuple[est.ManyReconciliations, float]:  # noqa: ANN001
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # counted from the groups table instead
        runs = est.reconcile_many(claims, by="group", executor=executor, hierarchy=hierarchy, progress=True, **OPTIONS)
    return runs, time.perf_counter() - t0


def row(case: str, how: str, runs: est.ManyReconciliations, wall: float, startup: float) -> dict:
    g = runs.groups
    ok = g["status"] == "ok"
    per_worker = g[ok].groupby("worker")["compiled"].sum()
    return {
        "case": case,
        "executor": how,
        "groups": len(g),
        "ok": int(ok.sum()),
        "converged": int(g.loc[ok, "converged"].astype(bool).sum()),
        "wall s": round(wall, 1),
        "worker start s": round(startup, 1) if startup else "",
        "groups/min": round(60 * len(g) / wall, 1),
        "median group s": round(float(g.loc[ok, "seconds"].median()), 2),
        "worker processes": int(g.loc[ok, "worker"].nunique()),
        "compiles": int(g.loc[ok, "compiled"].sum()),
        "compiles per worker": ", ".join(str(int(v)) for v in per_worker),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=["simulated", "ucdp-prio"], choices=["simulated", "ucdp-prio"])
    ap.add_argument("--groups", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "many.md"))
    args = ap.parse_args(argv)
    from distributed import Client, LocalCluster

    rows = []
    for case in args.cases:
        claims, hierarchy = simulated(args.groups) if case == "simulated" else ucdp_prio_groups(args.groups)
        runs, wall = run(claims, hierarchy, None)
        rows.append(row(case, "serial (this process)", runs, wall, 0.0))
        print(pd.DataFrame(rows).tail(1).to_string(index=False), flush=True)
        t0 = time.perf_counter()
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
            ) as cluster,
            Client(cluster) as client,
        ):
            startup = time.perf_counter() - t0
            dask_runs, wall = run(claims, hierarchy, client)
        rows.append(row(case, f"Dask LocalCluster, {args.workers} worker processes", dask_runs, wall, startup))
        print(pd.DataFrame(rows).tail(1).to_string(index=False), flush=True)
        same = dask_runs.intervals.sort_values(["group", "region", "time"]).reset_index(drop=True)
        ref = runs.intervals.sort_values(["group", "region", "time"]).reset_index(drop=True)
        diff = (same["median"] / ref["median"] - 1).abs().max()
        print(f"{case}: largest relative difference of a median, Dask vs serial: {diff:.2e}", flush=True)
    table = pd.DataFrame(rows)
    head = (
        f"`python benchmarks/many.py {' '.join(argv if argv is not None else sys.argv[1:])}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; "
        f"each group {OPTIONS['draws']} draws + {OPTIONS['tune']} tuning x 4 chains, refits=0.\n\n"
    )
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    text = "# Many groups: serial vs Dask\n\n" + head + "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
