"""nutpie's two mass-matrix adaptations, over seeds, on every benchmark problem.

nutpie adapts its diagonal mass matrix from draws and gradients
(``gradient``, its default) or, like Stan, from draw variances only
(``stan``). One seed suggested each wins somewhere; this measures it.

    python benchmarks/adaptation.py [--problems article medium ucdp-prio] [--seeds 1 2 3]

One process, one compiled model per problem (the data never change, so the
sampler's work is all that differs). Writes ``results/adaptation.md`` and
``results/adaptation.json``; prints the table.
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


def run(problem: str, seeds: list[int], modes: list[str]) -> list[dict]:
    sys.path.insert(0, str(HERE))
    import problems

    from estimates.api import prepare
    from estimates.claims import Hierarchy, read_claims
    from estimates.inference import SamplerOptions, diagnostics, sample
    from estimates.interpret import Interpretation

    prob = problems.get(problem)
    _, st = prepare(read_claims(prob.claims), Hierarchy.from_mapping(prob.hierarchy), Interpretation())
    rows = []
    for seed in seeds:
        for mode in modes:
            opts = SamplerOptions(sampler="nutpie", adaptation=mode)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                idata, timing = sample(st, opts, seed)
            d = diagnostics(idata, ["log_count", "log_bias", "log_reliability"], "nutpie", 0.0)
            rows.append(
                {
                    "problem": problem,
                    "mode": mode,
                    "seed": seed,
                    "sample_s": timing["sample_seconds"],
                    "wall_s": time.perf_counter() - t0,
                    "ess": d["ess_bulk_min"],
                    "r_hat": d["r_hat_max"],
                    "divergences": d["divergences"],
                    "grads_per_ess": timing["gradients"] / max(d["ess_bulk_min"], 1.0),
                    "ess_per_s": d["ess_bulk_min"] / timing["sample_seconds"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    head = (
        "| problem | adaptation | runs | converged | min bulk ESS | ESS/s | grads/ESS "
        "| max R-hat | divergences | sample s |"
    )
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    key = sorted({(r["problem"], r["mode"]) for r in rows}, key=lambda k: (problems.index(k[0]), k[1]))
    for p, m in key:
        rs = [r for r in rows if r["problem"] == p and r["mode"] == m]

        def f(name: str, dig: int = 0, rs: list[dict] = rs) -> str:
            v = np.array([r[name] for r in rs], float)
            return f"{v.mean():.{dig}f} ± {v.std(ddof=1) if len(v) > 1 else 0:.{dig}f}"

        conv = sum(r["r_hat"] < 1.01 and r["ess"] >= 400 for r in rs)
        out.append(
            f"| {p} | {m} | {len(rs)} | {conv} of {len(rs)} | {f('ess')} | {f('ess_per_s', 1)} | {f('grads_per_ess')} "
            f"| {f('r_hat', 3)} | {f('divergences', 1)} | {f('sample_s', 1)} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["article", "medium", "ucdp-prio"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--modes", nargs="+", default=["gradient", "stan"])
    args = ap.parse_args(argv)
    rows = []
    for p in args.problems:
        rows += run(p, args.seeds, args.modes)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "adaptation.json").write_text(json.dumps(rows, indent=1))
    md = (
        "nutpie mass-matrix adaptation, 4 chains x (1000 + 1000), mean ± sd over seeds "
        f"{', '.join(map(str, args.seeds))}: `python benchmarks/adaptation.py`\n\n" + table(rows) + "\n"
    )
    (RESULTS / "adaptation.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
