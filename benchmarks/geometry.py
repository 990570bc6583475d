"""Gradients per effective sample under variants of the sampler's settings and coordinates, over seeds.

    python benchmarks/geometry.py                                  # medium, every variant, seeds 0-2
    python benchmarks/geometry.py --problems article ucdp-prio --variants default accept-0.95 --seeds 0 1 2 3

One process per problem, one compiled kernel (the data never change, so
only the sampler's work differs). Each variant changes one thing against
the library's defaults (``SamplerOptions()``: target acceptance 0.8, 500
tuning steps, chains started at a mode of the density):

- ``default``;
- ``prior-start``: chains start at the priors' support points (``init="prior"``);
- ``accept-0.95``: target acceptance 0.95 (the default before);
- ``tune-1000``: 1,000 tuning steps (the default before);
- ``before``: all three of the above, the sampler settings of the last release on today's coordinates;
- ``gradient-adaptation``: nutpie's mass matrix from draws and gradients;
- ``omega-0``, ``omega-0.4``, ``omega-1``: every region's walk scale centred
  (``omega = 0``), partially non-centred at 0.4, or non-centred (``omega =
  1``), in place of ``estimates.model.scale_offsets``' rule.

Gradients count warm-up and the search for the chains' start. Prints and
writes ``results/geometry.md`` and ``results/geometry.json`` (mean ± sd over
seeds; the worst-mixing variable is the one with the smallest bulk ESS, as
named in the posterior).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

VARIANTS = {
    "default": {},
    "prior-start": {"init": "prior"},
    "accept-0.95": {"target_accept": 0.95},
    "tune-1000": {"tune": 1000},
    "before": {"init": "prior", "target_accept": 0.95, "tune": 1000},
    "gradient-adaptation": {"adaptation": "gradient"},
    "omega-0": {"omega": 0.0},
    "omega-0.4": {"omega": 0.4},
    "omega-1": {"omega": 1.0},
}


def run(problem: str, variants: list[str], seeds: list[int]) -> list[dict]:
    sys.path.insert(0, str(HERE))
    import problems

    from estimates import _convergence
    from estimates import model as model_module
    from estimates.api import DIAGNOSED, prepare
    from estimates.claims import Hierarchy, read_claims
    from estimates.inference import SamplerOptions, clear_cache, diagnostics, sample
    from estimates.interpret import Interpretation

    prob = problems.get(problem)
    _, st = prepare(read_claims(prob.claims), Hierarchy.from_mapping(prob.hierarchy), Interpretation())
    rule = model_module.scale_offsets
    rows = []
    for name in variants:
        settings = dict(VARIANTS[name])
        omega = settings.pop("omega", None)
        if omega is not None:  # every region scale shifted by the same omega (a number: no recompile)
            model_module.scale_offsets = lambda st, data, sigma=None, w=omega: np.full(len(st.walk_root_quantity), w)
        try:
            for seed in seeds:
                opts = SamplerOptions(sampler="nutpie", **settings)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    idata, timing = sample(st, opts, seed)
                    wall = time.perf_counter() - t0
                d = diagnostics(idata, DIAGNOSED, "nutpie", 0.0)
                worst, low = "", np.inf
                for v in DIAGNOSED:
                    if v not in idata.posterior:
                        continue
                    x = idata.posterior[v].transpose("chain", "draw", ...).to_numpy()
                    x = x.reshape(x.shape[:2] + (-1,))
                    x = x[:, :, x.std(axis=(0, 1)) > 1e-12]
                    if x.shape[2]:
                        e = float(np.nanmin(_convergence.ess_bulk(x)))
                        worst, low = (v, e) if e < low else (worst, low)
                rows.append(
                    {
                        "problem": problem,
                        "variant": name,
                        "seed": seed,
                        "gradients": timing["gradients"],
                        "ess": d["ess_bulk_min"],
                        "worst": worst,
                        "grads_per_ess": timing["gradients"] / max(d["ess_bulk_min"], 1.0),
                        "r_hat": d["r_hat_max"],
                        "divergences": d["divergences"],
                        "depth": float(idata.sample_stats["depth"].mean()),
                        "sample_s": timing["sample_seconds"],
                        "wall_s": wall,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
        finally:
            model_module.scale_offsets = rule
            clear_cache()
    return rows


def table(rows: list[dict]) -> str:
    head = (
        "| problem | variant | runs | grads/ESS | min bulk ESS | worst variable | gradients | mean tree depth "
        "| max R-hat | divergences | sample s |"
    )
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = list(dict.fromkeys((r["problem"], r["variant"]) for r in rows))
    for p, v in keys:
        rs = [r for r in rows if r["problem"] == p and r["variant"] == v]

        def f(name: str, dig: int = 0, rs: list[dict] = rs) -> str:
            x = np.array([r[name] for r in rs], float)
            return f"{x.mean():,.{dig}f} ± {x.std(ddof=1) if len(x) > 1 else 0:,.{dig}f}"

        worst = ", ".join(dict.fromkeys(r["worst"] for r in rs))
        divs = "/".join(str(r["divergences"]) for r in rs)
        out.append(
            f"| {p} | {v} | {len(rs)} | {f('grads_per_ess', 1)} | {f('ess')} | {worst} | {f('gradients')} "
            f"| {f('depth', 2)} | {f('r_hat', 4)} | {divs} | {f('sample_s', 1)} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["medium"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", default="geometry", help="name of the results files (default: geometry)")
    args = ap.parse_args(argv)
    rows = []
    for p in args.problems:
        rows += run(p, args.variants, args.seeds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(rows, indent=1))
    cmd = " ".join(["python benchmarks/geometry.py", *(argv if argv is not None else sys.argv[1:])])
    md = (
        f"`{cmd}`, {time.strftime('%Y-%m-%d')}: 4 chains x 1,000 draws, mean ± sd over seeds "
        f"{', '.join(map(str, args.seeds))}; divergences per run.\n\n" + table(rows) + "\n"
    )
    (RESULTS / f"{args.out}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
