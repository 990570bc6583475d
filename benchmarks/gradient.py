"""What one log-density and gradient costs: the compiled function nutpie calls, on one thread.

    python benchmarks/gradient.py                       # article and medium, the kernel nutpie samples
    python benchmarks/gradient.py article medium large --calls 500
    python benchmarks/gradient.py --graph                # PyTensor's graph of the PyMC model instead
    python benchmarks/gradient.py --graph --symbolic     # ... with the claims' term as nodes, not one Op
    python benchmarks/gradient.py --graph --fast-math    # ... compiled with PyTensor's fast-math flags
    python benchmarks/gradient.py --c                    # the PyMC model in PyMC's C backend (its NUTS, ADVI)
    python benchmarks/gradient.py --sample               # also per gradient while nutpie samples

Per problem (``benchmarks/problems.py``): by default the hand-written
kernel that ``reconcile()`` hands nutpie (``estimates._kernel``, Numba,
compiled once for every layout); with ``--graph``, the PyMC model compiled
by PyTensor's Numba backend (``estimates._nutpie.compile_model``, once per
layout), the way the library sampled before the kernel; with ``--c``, the same model
compiled by PyTensor's C backend, which PyMC's own NUTS and ADVI run. The function is
called in a loop at one point near the initial point. Prints a table:
parameters, nodes of the compiled graph (1 for the kernel), microseconds
per call (the fastest of five loops, so other work on the machine shows
less) and the log-density (the same value before and after a change says
the model did not change; the kernel's differs from the graph's by a
constant, see ``tests/test_model.py``). Sampling costs about this per
gradient per thread, times the gradients it needs (``benchmarks/run.py``).

The library compiles with IEEE arithmetic (``estimates._nutpie``'s notes);
``--fast-math`` compiles the graph with PyTensor's fast-math flags
instead, to measure what that choice costs. ``--symbolic`` compiles the
graph without the claims' term as one Op (``estimates._fused``).
``--sample`` also runs nutpie on the compiled model (one chain, 500 + 500
iterations, seed 1, one thread, the library's settings) and divides its
wall time by the gradients it took: the cost per gradient inside the
sampler, its own work included.
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
    name: str,
    calls: int,
    fast_math: bool = False,
    symbolic: bool = False,
    sample: bool = False,
    graph: bool = False,
    c_backend: bool = False,
) -> dict[str, float | int | str]:
    import problems

    from estimates import _nutpie
    from estimates.claims import Hierarchy, normalise, read_claims
    from estimates.interpret import Interpretation, shapes_table
    from estimates.model import build, describe, model_data

    problem = problems.get(name)
    interp = Interpretation()
    cs = normalise(
        read_claims(problem.claims), hierarchy=Hierarchy.from_mapping(problem.hierarchy), interpretation=interp
    )
    st = describe(shapes_table(cs.used, interp), cs.hierarchy)
    if c_backend:
        import pytensor
        import pytensor.tensor as pt
        from pymc.pytensorf import join_nonshared_inputs

        model = build(st)
        point = model.initial_point()
        logp = model.logp()
        out = pt.concatenate([logp[None], *(g.ravel() for g in pt.grad(logp, model.value_vars))])
        [out], flat = join_nonshared_inputs(point, [out], model.value_vars)
        fn = pytensor.function([flat], out, mode="FAST_RUN")  # PyTensor's default linker: C
        fn.trust_input = True
        x0 = np.concatenate([point[v.name].ravel() for v in model.value_vars])
        nodes = len(fn.maker.fgraph.apply_nodes)
        logp = float(fn(x0)[0])
        best = np.inf
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(calls):
                fn(x0)
            best = min(best, (time.perf_counter() - t) / calls)
        return {
            "problem": name,
            "params": x0.size,
            "nodes": nodes,
            "us": best * 1e6,
            "sampling_us": float("nan"),
            "logp": logp,
        }
    if graph:
        model = build(st, fused=not symbolic)
        if fast_math:
            import pytensor

            with pytensor.config.change_flags(numba__fastmath=True):
                compiled = _nutpie._compile_model(model, None)
        else:
            compiled = _nutpie.compile_model(model)
        fn = compiled.logp_func
        nodes = len(fn.maker.fgraph.apply_nodes)
        inner = fn.vm.jit_fn
        args = (compiled.shared_data[_nutpie.DATA],)
    else:
        import numba

        from estimates import _kernel

        compiled = _nutpie.kernel_model(st, model_data(st))
        nodes = 1
        inner = numba.njit(fastmath=False, error_model="numpy")(_kernel.model_logp)
        args = tuple(compiled.shared_data[k] for k in (_nutpie.DATA, "ints", "floats"))
    x = compiled.initial_point_func(0)
    logp = float(inner(x, *args)[0])  # the first call also compiles or loads from Numba's cache
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(calls):
            inner(x, *args)
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
        "nodes": nodes,
        "us": best * 1e6,
        "sampling_us": in_sampler,
        "logp": logp,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problems", nargs="*", default=["article", "medium"])
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed loop (default 2000)")
    parser.add_argument("--graph", action="store_true", help="PyTensor's graph of the PyMC model, not the kernel")
    parser.add_argument("--fast-math", action="store_true", help="with --graph: PyTensor's fast-math flags")
    parser.add_argument("--symbolic", action="store_true", help="with --graph: the claims' term as nodes, not one Op")
    parser.add_argument("--sample", action="store_true", help="also us per gradient while nutpie samples (1 chain)")
    parser.add_argument("--c", action="store_true", help="the PyMC model in PyTensor's C backend (PyMC's NUTS, ADVI)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if (args.fast_math or args.symbolic) and not args.graph:
        parser.error("--fast-math and --symbolic describe the graph: add --graph")
    if args.c and (args.graph or args.sample):
        parser.error("--c times the C backend's function alone: no --graph, no --sample")
    rows = [
        measure(p, args.calls, args.fast_math, args.symbolic, args.sample, args.graph, args.c) for p in args.problems
    ]
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
