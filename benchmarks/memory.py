"""Where a fit's memory goes: resident memory per stage of ``reconcile()``.

    python benchmarks/memory.py large --draws 600 --tune 100     # about 8 minutes
    python benchmarks/memory.py medium

Runs ``reconcile(refits=0)`` on one problem (``benchmarks/problems.py``)
with 2 chains and prints, per stage (sampling, converting the trace,
diagnostics, leave-one-out checks, summaries), its time and the process's
resident memory before it, at its peak and after it. The peak is Linux's
``VmHWM``, reset before each stage by writing 5 to ``/proc/self/clear_refs``,
so it is the stage's own peak, not the process's so far. Linux only.
``benchmarks/run.py`` reports the peak of a whole run; this says which
stage sets it.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _memory() -> dict[str, float]:
    """Resident memory now (``VmRSS``) and at its peak (``VmHWM``), in GiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) / 2**20  # kB (KiB) to GiB
    return out


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _timed(module: object, name: str, rows: list[dict]) -> None:
    """Wrap ``module.name`` so that each call appends its time and memory to ``rows``."""
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        before = _memory()["VmRSS"]
        _reset_peak()
        t = time.perf_counter()
        out = inner(*args, **kwargs)
        now = _memory()
        rows.append(
            {
                "stage": f"{module.__name__.removeprefix('estimates.')}.{name}",
                "seconds": time.perf_counter() - t,
                "before": before,
                "peak": now["VmHWM"],
                "after": now["VmRSS"],
            }
        )
        return out

    setattr(module, name, wrapper)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problem", nargs="?", default="medium")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import nutpie
    import problems

    import estimates as est
    from estimates import _nutpie, api

    rows: list[dict] = []
    _timed(nutpie, "sample", rows)
    _timed(_nutpie, "to_inference_data", rows)
    for name in ("diagnostics", "_checks", "summarise_intervals", "summarise_sources", "summarise_claims"):
        _timed(api, name, rows)
    problem = problems.get(args.problem)
    start = _memory()["VmRSS"]
    est.reconcile(
        problem.claims,
        hierarchy=problem.hierarchy,
        draws=args.draws,
        tune=args.tune,
        chains=2,
        refits=0,
        random_seed=0,
    )
    run = f"{args.problem}, 2 chains x ({args.tune} + {args.draws}), refits=0"
    print(f"{run}; resident after the imports: {start:.2f} GiB")
    print("| stage | seconds | resident before GiB | peak GiB | after GiB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['seconds']:.1f} | {r['before']:.2f} | {r['peak']:.2f} | {r['after']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
