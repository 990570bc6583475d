"""nutpie's Numba backend with C callbacks that Numba can cache on disk.

``nutpie.compile_pymc_model`` wraps PyTensor's compiled log-density (and the
function that expands draws) in two ``numba.cfunc`` callbacks. Those close
over the model's data arrays, so Numba cannot cache them, and every new
process spent 8-9 s (most of the article example's warm compile) on their
type inference and code generation, although the log-density inside comes
from PyTensor's on-disk cache in a fraction of a second.

:func:`compile_model` builds the same two callbacks, with the same C
signatures and return codes, from source that refers to nothing but the
PyTensor function and two integers. The data reach them through nutpie's
``user_data`` pointer: a two-element ``uint64`` array holding the address
and length of the one data vector (``estimates.model.pack_numbers``). The
callbacks are registered with PyTensor's Numba cache under a key made of
PyTensor's own key for the inner function, the model's dimensions and this
module's source, so a later process loads them from ``compiledir/numba``
(``estimates cache`` shows where; ``estimates cache --clear`` deletes it).

It uses two private parts of nutpie 0.16 (``_make_functions`` and the
``CompiledPyMCModel`` fields), pinned in ``pyproject.toml``. Where a model
does not fit (data containers other than ``numbers``, or PyTensor gave the
inner function no cache key), :func:`compile_model` falls back to
``nutpie.compile_pymc_model``; ``tests/test_cache.py`` checks both that the
callbacks agree with PyTensor's log-density and that the fast path is taken.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from typing import Any

import numpy as np

from ._deps import quiet_import

#: The data container every estimates model has (``estimates.model.pack_numbers``).
DATA = "numbers"

_LOGP_SRC = """
def logp_callback(dim, x_, out_, logp_, user_data_):
    if dim != N_DIM:
        return -1
    try:
        x = numba.carray(x_, (N_DIM,))
        out = numba.carray(out_, (N_DIM,))
        logp = numba.carray(logp_, ())
        where = numba.carray(user_data_, (2,), np.uint64)
        numbers = numba.carray(as_pointer(where[0]), (where[1],), np.float64)
        value, grad = INNER(x{data})
        logp[()] = value
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(value):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND_SRC = """
def expand_callback(dim, expanded, x_, out_, user_data_):
    if dim != N_DIM or expanded != N_EXPANDED:
        return -1
    try:
        x = numba.carray(x_, (N_DIM,))
        out = numba.carray(out_, (N_EXPANDED,))
        where = numba.carray(user_data_, (2,), np.uint64)
        numbers = numba.carray(as_pointer(where[0]), (where[1],), np.float64)
        (values,) = INNER(x{data})
        out[...] = values
    except Exception:
        return -2
    return 0
"""


class _NotCacheable(Exception):
    """The model does not fit the cached callbacks; nutpie compiles it its own way."""


def _check_data(model: Any) -> None:
    """Raise :class:`_NotCacheable` unless ``model``'s only data container is ``numbers``."""
    names = sorted(v.name for v in model.data_vars)
    if names not in ([], [DATA]):
        raise _NotCacheable(f"data containers {names}; the cached callbacks read only {DATA!r}")


def _user_data(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A read-only float64 copy of ``numbers`` and the ``[address, length]`` the callbacks read."""
    numbers = np.array(numbers, dtype=np.float64, order="C", copy=True)
    numbers.flags.writeable = False
    return numbers, np.array([numbers.ctypes.data, numbers.size], dtype=np.uint64)


def _callback(src: str, name: str, fn: Any, n_dim: int, n_expanded: int, signature: Any) -> Any:
    """One ``numba.cfunc`` around PyTensor's compiled ``fn``, cached on disk when PyTensor caches."""
    numba = quiet_import("numba")
    pytensor = quiet_import("pytensor")
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    shared = [v.name for v in fn.get_shared()]
    if shared not in ([], [DATA]):
        raise _NotCacheable(f"data containers {shared}")
    inner = fn.vm.jit_fn
    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", None))
    if inner_key is None:
        raise _NotCacheable("PyTensor did not cache the inner function")
    text = src.format(data=", numbers" if shared else "")
    key = hashlib.sha256(
        "|".join([text, inner_key, str(n_dim), str(n_expanded), numba.__version__]).encode()
    ).hexdigest()
    env = {
        "__name__": __name__,  # Numba re-imports it when it loads the cached code
        "numba": numba,
        "np": np,
        "INNER": inner,
        "N_DIM": n_dim,
        "N_EXPANDED": n_expanded,
        "as_pointer": address_as_void_pointer,
    }
    py_func = compile_numba_function_src(text, name, env, cache_key=key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=numba.NumbaWarning)
        return numba.cfunc(signature, cache=bool(pytensor.config.numba__cache))(py_func)


def compile_model(model: Any) -> Any:
    """``nutpie.compile_pymc_model(model)`` (Numba backend) with callbacks cached on disk.

    Returns a ``nutpie.compile_pymc.CompiledPyMCModel``; pass new data with
    :func:`with_numbers`, not its ``with_data``.
    """
    nutpie = quiet_import("nutpie")
    numba = quiet_import("numba")
    import nutpie.compile_pymc as cp
    from pymc.initial_point import make_initial_point_fn

    try:
        _check_data(model)
    except _NotCacheable:
        return nutpie.compile_pymc_model(model)
    # what nutpie.compile_pymc_model does before its Numba step, with its defaults
    initial_point = make_initial_point_fn(
        model=model,
        overrides=None,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    n_dim, n_expanded, logp_fn, expand_fn, initial_point_fn, shape_info = cp._make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=cp._wrap_with_lock(initial_point),
        var_names=None,
    )
    t = numba.types
    double_p = t.CPointer(t.double)
    try:
        logp_cb = _callback(
            _LOGP_SRC,
            "logp_callback",
            logp_fn,
            n_dim,
            n_expanded,
            t.int64(t.uint64, double_p, double_p, double_p, t.voidptr),
        )
        expand_cb = _callback(
            _EXPAND_SRC,
            "expand_callback",
            expand_fn,
            n_dim,
            n_expanded,
            t.int64(t.uint64, t.uint64, double_p, double_p, t.voidptr),
        )
    except _NotCacheable:
        return nutpie.compile_pymc_model(model)
    shared = {v.name: v for f in (logp_fn, expand_fn) for v in f.get_shared()}
    numbers, user_data = _user_data(shared[DATA].get_value() if DATA in shared else np.zeros(0))
    dims, coords = cp._prepare_dims_and_coords(model, shape_info)
    return cp.CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_cb,
        compiled_expand_func=expand_cb,
        initial_point_func=initial_point_fn,
        shared_data={DATA: numbers},
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_fn,
        expand_func=expand_fn,
    )


def is_cached_layout(compiled: Any) -> bool:
    """Whether ``compiled`` came from :func:`compile_model`'s own callbacks."""
    ud = getattr(compiled, "user_data", None)
    return isinstance(ud, np.ndarray) and ud.dtype == np.uint64 and ud.shape == (2,)


def with_numbers(compiled: Any, numbers: np.ndarray) -> Any:
    """A copy of ``compiled`` that samples with ``numbers`` as the model's data vector."""
    if not is_cached_layout(compiled):
        return compiled.with_data(**{DATA: numbers})
    old = compiled.shared_data[DATA]
    numbers, user_data = _user_data(numbers)
    if numbers.ndim != old.ndim:
        raise ValueError(f"the data vector must have rank {old.ndim}, not {numbers.ndim}")
    return dataclasses.replace(compiled, shared_data={DATA: numbers}, user_data=user_data)
