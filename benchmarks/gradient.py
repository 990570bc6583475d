"""What one log-density and gradient costs: the compiled function nutpie calls, on one thread.

    python benchmarks/gradient.py                       # article and medium
    python benchmarks/gradient.py article medium large --calls 500
    python benchmarks/gradient.py --fast-math            # as PyTensor compiles by default
    python benchmarks/gradient.py --symbolic             # the claims' term as PyTensor nodes, not one Op
    python benchmarks/gradient.py --sample               # also per gradient while nutpie samples

Per problem (``benchmarks/problems.py``): the library builds and compiles
the model as ``reconcile()`` does (``estimates._nutpie.compile_model``),
then PyTensor's compiled Numba function (the inner function of nutpie's C
callback) is called in a loop at one point near the initial point. Prints
a table: parameters, nodes of the compiled graph, microseconds per call
(the fastest of five loops, so other work on the machine shows less) and
the log-density (the same value before and after a change of
coordinates says the model did not change). Sampling costs about this per
gradient per thread, times the gradients it needs (``benchmarks/run.py``).

The library compiles with IEEE arithmetic (``estimates._nutpie``'s notes);
``--fast-math`` compiles the same graph with PyTensor's fast-math flags
instead, to measure what that choice costs. For Numba the library builds the
claims' term as one Op (``estimates._fused``); ``--symbolic`` compiles the
symbolic term that PyMC's C backend and JAX use instead, to measure what
the Op saves. ``--sample`` also runs nutpie on the compiled model (one
chain, 500 + 500 iterations, seed 1, one thread, the library's settings)
and divides its wall time by the gradients it took: the cost per gradient
inside the sampler, its own work included.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure(
    name: str, calls: int, fast_math: bool = False, symbolic: bool = False, sample: bool = False
) -> dict[str, float | int | str]:
    import problems

    from estimates import _nutpie
    from estimates.claims import Hierarchy, normalise, read_claims
    from estimates.interpret import Interpretation, shapes_table
    from estimates.model import build, describe

    problem = problems.get(name)
    interp = Interpretation()
    cs = normalise(
        read_claims(problem.claims), hierarchy=Hierarchy.from_mapping(problem.hierarchy), interpretation=interp
    )
    st = describe(shapes_table(cs.used, interp), cs.hierarchy)
    model = build(st, fused=not symbolic)
    if fast_math:
        import pytensor

        with pytensor.config.change_flags(numba__fastmath=True):
            compiled = _nutpie._compile_model(model, None)
    else:
        compiled = _nutpie.compile_model(model)
    fn = compiled.logp_func
    inner = fn.vm.jit_fn
    numbers = compiled.shared_data[_nutpie.DATA]
    x = compiled.initial_point_func(0)
    logp = float(inner(x, numbers)[0])  # the first call also compiles or loads from Numba's cache
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(calls):
            inner(x, numbers)
        best = min(best, (time.perf_counter() - t) / calls)
    in_sampler = float("nan")
    if sample:
        import nutpie

        t = time.perf_counter()
        raw = nutpie.sample(
            compiled,
            draws=500,
            tune=500,
            chains=1,
            cores=1,
            seed=1,
            target_accept=0.95,
            use_grad_based_mass_matrix=False,
            progress_bar=False,
            return_raw_trace=True,
        )
        wall = time.perf_counter() - t
        _, gradients = _nutpie.to_inference_data(raw, compiled.coords)
        in_sampler = wall / gradients * 1e6
    return {
        "problem": name,
        "params": compiled.n_dim,
        "nodes": len(fn.maker.fgraph.apply_nodes),
        "us": best * 1e6,
        "sampling_us": in_sampler,
        "logp": logp,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problems", nargs="*", default=["article", "medium"])
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed loop (default 2000)")
    parser.add_argument("--fast-math", action="store_true", help="PyTensor's fast-math flags, not the library's IEEE")
    parser.add_argument("--symbolic", action="store_true", help="the claims' term as PyTensor nodes, not one Op")
    parser.add_argument("--sample", action="store_true", help="also us per gradient while nutpie samples (1 chain)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rows = [measure(p, args.calls, args.fast_math, args.symbolic, args.sample) for p in args.problems]
    print(
        "| problem | parameters | graph nodes | us per log-density and gradient | us per gradient in sampling "
        "| log-density at the start |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['problem']} | {r['params']} | {r['nodes']} | {r['us']:.1f} | {r['sampling_us']:.1f} "
            f"| {r['logp']:.6f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
