"""nutpie's two C callbacks around the model's kernel (:mod:`estimates._kernel`), compiled once per machine.

nutpie calls a log-density callback ``(dim, x, grad, logp, user_data) ->
code`` and an expand callback ``(dim, expanded, x, out, user_data) ->
code``. Here ``user_data`` points at six ``uint64``: address and length of
the model's numbers (:func:`estimates.model.pack_numbers`), of the layout's
whole numbers and of its reals (:func:`estimates._kernel.pack`). The
callbacks read everything else from those arrays, so the same two compiled
functions serve every model; Numba caches them on disk next to this module
(:func:`cache_dir`), so only the first process on a machine compiles them.

The expand callback copies the draw: nutpie's trace holds the free
variables, and the model's other variables are computed from the draws in
numpy afterwards (:func:`estimates.model.expand_draws`).

Importing this module imports Numba and nutpie.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numba
import numpy as np
from nutpie.compile_pymc import address_as_void_pointer as _as_pointer

from ._kernel import _H_META, M_N_DIM, model_logp

_N_DIM_AT = _H_META + M_N_DIM

#: sha256 of ``_kernel.py``, whose functions Numba compiles into these
#: callbacks. Numba's cache checks the stamp of this file only, so an edit of
#: the kernel alone would load the old machine code; ``tests/test_cache.py``
#: fails until this is updated, and updating it changes this file.
KERNEL_SOURCE = "54757d138d4943807ea082e883a830d7a801fb19e6404d2a1d081dc0f39b5dc6"


def _logp(dim, x_, out_, logp_, user_data_):  # noqa: ANN001, ANN202 - compiled by Numba as a C callback
    where = numba.carray(user_data_, (6,), np.uint64)
    numbers = numba.carray(_as_pointer(where[0]), (where[1],), np.float64)
    ints = numba.carray(_as_pointer(where[2]), (where[3],), np.int64)
    floats = numba.carray(_as_pointer(where[4]), (where[5],), np.float64)
    if dim != ints[_N_DIM_AT]:
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, ())
    value, grad = model_logp(x, numbers, ints, floats)
    logp[()] = value
    finite = True
    for i in range(dim):
        out[i] = grad[i]
        finite = finite and np.isfinite(grad[i])
    if not finite:
        return 3
    if not np.isfinite(value):
        return 4
    return 0


def _expand(dim, expanded, x_, out_, user_data_):  # noqa: ANN001, ANN202 - compiled by Numba as a C callback
    if expanded != dim:
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    for i in range(dim):
        out[i] = x[i]
    return 0


@functools.cache
def callbacks() -> tuple[Any, Any]:
    """The log-density and expand ``numba.cfunc`` (loaded from Numba's cache, or compiled and cached).

    Strict IEEE arithmetic (no fast-math flags), so the code compiled in one
    process and the code loaded in the next compute the same bits.
    """
    logp_sig, expand_sig = signatures()
    options = dict(cache=True, fastmath=False, error_model="numpy")
    return numba.cfunc(logp_sig, **options)(_logp), numba.cfunc(expand_sig, **options)(_expand)


def signatures() -> tuple[Any, Any]:
    """nutpie's C signatures of the log-density and the expand callbacks."""
    t = numba.types
    double_p = t.CPointer(t.double)
    return (
        t.int64(t.uint64, double_p, double_p, double_p, t.voidptr),
        t.int64(t.uint64, t.uint64, double_p, double_p, t.voidptr),
    )


def user_data(numbers: np.ndarray, ints: np.ndarray, floats: np.ndarray) -> np.ndarray:
    """What the callbacks' ``user_data`` points at: the three arrays' addresses and lengths.

    The arrays must stay alive as long as this is used (the compiled model
    holds them).
    """
    return np.array(
        [numbers.ctypes.data, numbers.size, ints.ctypes.data, ints.size, floats.ctypes.data, floats.size],
        dtype=np.uint64,
    )


def cache_files() -> list[Path]:
    """Numba's cache of the two callbacks: its index and code files, named after this module (none before
    the first compile). Found without compiling anything."""
    from numba.core.caching import FunctionCache

    where = Path(FunctionCache(_logp)._cache_path)
    return sorted(where.glob(f"{__name__.rpartition('.')[2]}._*.nb[ic]"))
