"""Where a warm compile goes: PyTensor's part and Numba's part, nutpie's way and the library's.

    python benchmarks/compile_split.py            # the article example, 3 fresh processes per way
    python benchmarks/compile_split.py --runs 5

Each run is a new Python process (so nothing is cached in memory; the
on-disk PyTensor and Numba caches are whatever earlier runs left, so run it
twice and read the second). The two ways alternate: ``nutpie`` is
``nutpie.compile_pymc_model``, whose C callbacks Numba compiles anew in
every process; ``estimates`` is ``estimates._nutpie.compile_model``, whose
callbacks load from PyTensor's Numba cache. Timers wrap nutpie's
``_make_functions`` (PyTensor: rewrites, gradient, shape and initial-point
functions) and Numba's ``CFunc.compile`` (the C callbacks for the
log-density and for expanding draws). Prints one line per run, in seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, time, warnings
warnings.simplefilter("ignore")
import numba.core.ccallback as ccallback
import nutpie
import nutpie.compile_pymc as cp
import sys
import estimates as est
from estimates import _nutpie, api, model
from estimates.claims import Hierarchy
from estimates.interpret import Interpretation

spent = {"pytensor": 0.0, "numba_callbacks": 0.0}


def timed(key, f):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - t
    return wrapper


cp._make_functions = timed("pytensor", cp._make_functions)
ccallback.CFunc.compile = timed("numba_callbacks", ccallback.CFunc.compile)
claims = est.load_example()
_, st = api.prepare(claims, Hierarchy.from_mapping(claims.attrs["hierarchy"]), Interpretation())
m = model.build(st)
t = time.perf_counter()
compile = nutpie.compile_pymc_model if sys.argv[1] == "nutpie" else _nutpie.compile_model
compile(m)
spent["total"] = time.perf_counter() - t
print(json.dumps(spent))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    print("run | way | compile s | PyTensor s | Numba callbacks s")
    for i in range(args.runs):
        for way in ("nutpie", "estimates"):
            cmd = [sys.executable, "-c", CHILD, way]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{i + 1} | {way} | {r['total']:.1f} | {r['pytensor']:.1f} | {r['numba_callbacks']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
