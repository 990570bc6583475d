"""nutpie's compiled models: on the hand-written kernel (the default), or on PyTensor's graph.

:func:`kernel_model` is what ``reconcile()`` samples: nutpie's compiled
model on :mod:`estimates._kernel`'s log-density, whose two C callbacks
(:mod:`estimates._callbacks`) serve every layout and are compiled once per
machine; no PyMC model is built. The rest of this module is the way the
library sampled before, kept (``SamplerOptions(kernel=False)``) to measure
one against the other (``benchmarks/gradient.py --graph``): nutpie's Numba
backend on the PyMC model's graph, with C callbacks that Numba can cache on
disk, as follows.

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

The expand callback here is the identity: nutpie's trace holds the free
variables only, and the model's other variables (``log_count``,
``log_bias`` ...) are computed from the draws afterwards, in numpy
(:func:`estimates.model.expand_draws`, through :func:`to_inference_data`).
nutpie's way compiled a second graph for them (10.4 of the article's 67.9 s
cold compile) and stored them for every warm-up draw too (on the large
benchmark, half of its in-memory trace).

What is left of a warm compile is PyTensor's: building the log-density's
graph, its gradient and rewriting them, 2.4-2.5 s on the article example
in every process. :func:`compile_model` therefore also writes a *record*
of the layout (``base_compiledir/estimates``): the two callbacks' cache
keys, the variables' names and shapes, the model's initial point and a
check value. :func:`load_compiled` rebuilds the compiled model from it and
the two cached callbacks alone, without PyMC's model, PyTensor's graph or
its rewrites. The record's key (:func:`record_key`) is the layout's
:func:`estimates.model.signature` plus everything else that shapes the
graph: the source of :mod:`estimates.model`, :mod:`estimates._fused` and
of this module, the
priors, the versions of PyMC, PyTensor, Numba, nutpie and numpy, and
PyTensor's compile flags. A loaded model must reproduce the log-density
and gradient recorded at compile time before it is used; anything missing
or different and the layout is compiled again.

Everything is compiled with IEEE arithmetic (Numba without fast-math
flags, whatever PyTensor's ``numba__fastmath`` says elsewhere). With
PyTensor's fast-math flags (reassociation, contraction) the code Numba
generated in the process that compiled a graph and the code it later loaded
from its cache for that same graph differed in the last bit of a gradient
now and then (2 of 2,000 points on a small model), which was enough for a
fit on a machine with an empty cache to give other draws, from the same
seed, than every later fit of the same claims. Measured cost of the strict
arithmetic (``benchmarks/gradient.py``): none on the article example, about
3% per gradient on the medium problem.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import platform
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import quiet_import

#: The data container every estimates model has (``estimates.model.pack_numbers``).
DATA = "numbers"

#: Folder of the layout records, under PyTensor's ``base_compiledir``.
RECORDS = "estimates"
#: Bumped whenever a record's contents change meaning.
RECORD_FORMAT = 3

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


def _callback_key(text: str, fn: Any, n_dim: int, n_expanded: int) -> str:
    """The callback's key in PyTensor's Numba cache: PyTensor's key of the inner function, and more."""
    numba = quiet_import("numba")
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(fn.vm.jit_fn, "py_func", None))
    if inner_key is None:
        raise _NotCacheable("PyTensor did not cache the inner function")
    return hashlib.sha256(
        "|".join([text, inner_key, str(n_dim), str(n_expanded), numba.__version__]).encode()
    ).hexdigest()


def _cfunc(text: str, name: str, key: str, inner: Any, n_dim: int, n_expanded: int, signature: Any) -> Any:
    """The ``numba.cfunc`` of ``text`` under ``key`` in PyTensor's Numba cache.

    With ``inner=None`` it only loads: Numba finds the compiled callback
    under ``key`` or, failing that, cannot type the missing inner function
    and raises (:func:`load_compiled` then compiles the layout).
    """
    numba = quiet_import("numba")
    pytensor = quiet_import("pytensor")
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import compile_numba_function_src

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


def _callback(src: str, name: str, fn: Any, n_dim: int, n_expanded: int, signature: Any) -> tuple[Any, str]:
    """One ``numba.cfunc`` around PyTensor's compiled ``fn`` (cached on disk when PyTensor caches), and its key."""
    shared = [v.name for v in fn.get_shared()]
    if shared not in ([], [DATA]):
        raise _NotCacheable(f"data containers {shared}")
    text = src.format(data=", numbers" if shared else "")
    key = _callback_key(text, fn, n_dim, n_expanded)
    return _cfunc(text, name, key, fn.vm.jit_fn, n_dim, n_expanded, signature), key


def expands_in_numpy(compiled: Any) -> bool:
    """Whether ``compiled``'s trace holds only the free variables (:func:`compile_model`'s and
    :func:`kernel_model`'s models).

    Their draws are then expanded by :func:`estimates.model.expand_draws`,
    through :func:`to_inference_data`'s ``expand``.
    """
    return is_cached_layout(compiled) and compiled.n_expanded == compiled.n_dim


@dataclasses.dataclass(frozen=True)
class InitialPoint:
    """Where nutpie starts a chain: the model's initial point plus U(-1, 1) jitter on every coordinate.

    What PyMC's initial-point function gives with jitter on every free
    variable (its default for nutpie), in numpy: a loaded model has no PyMC
    model to compile one from. ``base`` is PyMC's initial point without
    jitter (the priors' support points, on the sampler's scale).
    """

    base: np.ndarray

    def __call__(self, seed: Any = None) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return self.base + rng.uniform(-1.0, 1.0, self.base.size)


#: At most this many L-BFGS iterations in :func:`mode` (medium took 210, UCDP/PRIO 1,710 to converge fully;
#: by 300 it was within 6 of 73,000 in log-density, which is all a starting point needs).
MODE_ITERATIONS = 300


def mode(compiled: Any, start: np.ndarray | None = None) -> tuple[np.ndarray | None, int]:
    """A mode of ``compiled``'s log-density in the sampler's coordinates, and the gradients it took.

    L-BFGS from ``start`` (default: the compiled model's initial point,
    the priors' support points), at most :data:`MODE_ITERATIONS`
    iterations. In the sampler's coordinates (whitened cells, scaled
    biases, partially non-centred scales; :func:`estimates.model.build`)
    the density has no funnel to collapse into, so the mode is a point in
    the posterior's bulk, not at a boundary. Starting chains there rather
    than at the prior saved most of the first warm-up iterations, which
    at the prior's point ran trees of 1,023 steps while the step size
    found its scale (medium: 25-31k of 153k gradients; with the mode, 6-9k).
    The point is None if the search found none better than where it
    started.
    """
    from scipy.optimize import minimize

    x0 = np.asarray(compiled.initial_point_func.base if start is None else start, dtype=np.float64)

    calls = [0]

    def neg(x: np.ndarray) -> tuple[float, np.ndarray]:
        calls[0] += 1
        code, logp, grad = _evaluate(compiled, x)
        if code != 0 or not np.isfinite(logp):
            return np.inf, np.zeros_like(x)
        return -logp, -grad

    f0, _ = neg(x0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        found = minimize(neg, x0, jac=True, method="L-BFGS-B", options={"maxiter": MODE_ITERATIONS})
    if not (np.all(np.isfinite(found.x)) and np.isfinite(found.fun) and found.fun < f0):
        return None, calls[0]
    return found.x, calls[0]


def start_at(compiled: Any, base: np.ndarray) -> Any:
    """A copy of ``compiled`` whose chains start at ``base`` plus :class:`InitialPoint`'s jitter."""
    base = np.asarray(base, dtype=np.float64)
    if base.shape != (compiled.n_dim,):
        raise ValueError(f"a starting point needs {compiled.n_dim} coordinates, not shape {base.shape}")
    return dataclasses.replace(compiled, initial_point_func=InitialPoint(base))


def compile_model(model: Any, key: str | None = None) -> Any:
    """``nutpie.compile_pymc_model(model)`` (Numba backend) with callbacks cached on disk.

    Returns a ``nutpie.compile_pymc.CompiledPyMCModel``; pass new data with
    :func:`with_numbers`, not its ``with_data``. With a ``key``
    (:func:`record_key`) it also writes the layout's record, so that
    :func:`load_compiled` can load the model in a later process; only a
    model built with ``fused=True`` (what ``reconcile()`` compiles) gets one,
    since the key names the layout, not which of its two models it was:
    the symbolic model's draws differ in their last bits. Numba compiles it
    without fast-math flags (see the module's notes).
    """
    pytensor = quiet_import("pytensor")
    with pytensor.config.change_flags(numba__fastmath=False):
        return _compile_model(model, key)


def _compile_model(model: Any, key: str | None) -> Any:
    nutpie = quiet_import("nutpie")
    import nutpie.compile_pymc as cp
    from pymc.initial_point import make_initial_point_fn

    try:
        _check_data(model)
    except _NotCacheable:
        return nutpie.compile_pymc_model(model)
    # what nutpie.compile_pymc_model does before its Numba step, with its
    # defaults, except that the jitter is added by InitialPoint
    initial_point = make_initial_point_fn(
        model=model,
        overrides=None,
        default_strategy="support_point",
        jitter_rvs=set(),
        return_transformed=True,
    )
    n_dim, _, logp_fn, expand_fn, initial_point_fn, shape_info = cp._make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=initial_point,
        var_names=[],  # the trace holds the free variables only (the expand callback is the identity)
    )
    from ._callbacks import signatures

    logp_sig, _ = signatures()
    try:
        logp_cb, logp_key = _callback(_LOGP_SRC, "logp_callback", logp_fn, n_dim, n_dim, logp_sig)
    except _NotCacheable:
        return nutpie.compile_pymc_model(model)
    from ._callbacks import callbacks

    expand_cb = callbacks()[1]  # the identity, the kernel's own
    shared = {v.name: v for f in (logp_fn, expand_fn) for v in f.get_shared()}
    dims, coords = cp._prepare_dims_and_coords(model, shape_info)
    compiled = _assemble(
        (n_dim, n_dim, shape_info, dims, coords),
        (logp_cb, expand_cb),
        np.asarray(initial_point_fn(0), dtype=np.float64),
        shared[DATA].get_value() if DATA in shared else np.zeros(0),
        (logp_fn, expand_fn),
    )
    if key is not None and DATA in shared and _is_fused(logp_fn):
        _write_record(key, compiled, logp_key)
    return compiled


def _is_fused(fn: Any) -> bool:
    """Whether a compiled log-density has the claims' term as one Op (:mod:`estimates._fused`)."""
    from ._fused import ClaimsLogp

    return any(isinstance(node.op, ClaimsLogp) for node in fn.maker.fgraph.apply_nodes)


def _assemble(layout: tuple, callbacks: tuple, base: np.ndarray, numbers: np.ndarray, functions: tuple) -> Any:
    """nutpie's ``CompiledPyMCModel`` from its parts.

    ``layout`` is ``(n_dim, n_expanded, shape_info, dims, coords)``,
    ``callbacks`` the log-density and expand ``cfunc``s, ``base`` the
    initial point, ``functions`` PyTensor's two compiled functions (``None``
    for a model loaded from its record).
    """
    import nutpie.compile_pymc as cp

    n_dim, n_expanded, shape_info, dims, coords = layout
    numbers, user_data = _user_data(numbers)
    return cp.CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=callbacks[0],
        compiled_expand_func=callbacks[1],
        initial_point_func=InitialPoint(base),
        shared_data={DATA: numbers},
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=functions[0],
        expand_func=functions[1],
    )


def _evaluate(compiled: Any, x: np.ndarray) -> tuple[int, float, np.ndarray]:
    """Call the compiled log-density callback at ``x``: ``(return code, log-density, gradient)``."""
    import ctypes

    dbl = ctypes.POINTER(ctypes.c_double)
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad, logp = np.zeros(compiled.n_dim), np.zeros(())
    code = compiled.compiled_logp_func.ctypes(
        compiled.n_dim,
        x.ctypes.data_as(dbl),
        grad.ctypes.data_as(dbl),
        logp.ctypes.data_as(dbl),
        ctypes.c_void_p(compiled.user_data.ctypes.data),
    )
    return int(code), float(logp), grad


def records_dir() -> Path:
    """Where the layout records live: ``base_compiledir/estimates``."""
    return Path(quiet_import("pytensor").config.base_compiledir) / RECORDS


def record_key(signature: tuple) -> str:
    """The record's name for a layout: its signature and everything else that shapes its compiled graph."""
    pytensor = quiet_import("pytensor")
    from . import model as model_module

    cfg = pytensor.config
    parts = [
        f"format {RECORD_FORMAT}",
        repr(signature),
        repr(sorted(model_module.PRIORS.items())),
        *_code_and_versions(),
        *(f"{k}={getattr(cfg, k)}" for k in _CONFIG),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


#: The modules whose source shapes a compiled graph (read, not imported: ``_fused`` imports PyTensor).
_SOURCES = ("model.py", "_fused.py", "_whiten.py", "_kernel.py", "_nutpie.py")


@functools.cache
def _code_and_versions() -> tuple[str, ...]:
    """The part of :func:`record_key` that is fixed for a process: the code and the versions."""
    here = Path(__file__).parent
    return (
        *(hashlib.sha256((here / f).read_bytes()).hexdigest() for f in _SOURCES),
        *(f"{d} {metadata.version(d)}" for d in ("pymc", "pytensor", "numba", "llvmlite", "nutpie", "numpy")),
        platform.python_version(),
        platform.machine(),
    )


#: PyTensor flags that change what a compiled graph computes (not
#: ``numba__fastmath``: :func:`compile_model` always turns it off).
_CONFIG = (
    "floatX",
    "optimizer",
    "optimizer_excluding",
    "optimizer_including",
    "optimizer_requiring",
)


def _write_record(key: str, compiled: Any, logp_key: str) -> None:
    """Save what :func:`load_compiled` needs; a failure to write only costs the next process a compile."""
    if not quiet_import("pytensor").config.numba__cache:
        return
    x = compiled.initial_point_func.base + 0.1
    code, logp, grad = _evaluate(compiled, x)
    if code != 0:
        return
    record = {
        "format": RECORD_FORMAT,
        "logp_key": logp_key,
        "n_dim": compiled.n_dim,
        "n_expanded": compiled.n_expanded,
        "shape_info": compiled.shape_info,
        "dims": compiled.dims,
        "coords": compiled._coords,
        "initial_point": compiled.initial_point_func.base,
        "check": (np.array(compiled.shared_data[DATA]), x, logp, grad),
    }
    folder = records_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{key}.{os.getpid()}.tmp"
        tmp.write_bytes(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, folder / f"{key}.pkl")  # atomic: a reader sees the old record or the new
    except OSError:
        pass


def load_compiled(key: str) -> Any | None:
    """The compiled model of the layout ``key`` from its record and the cached callbacks, or ``None``.

    ``None`` when there is no record, when Numba's cache lacks either
    callback, or when the loaded callbacks do not reproduce the
    log-density and gradient recorded at compile time (the record is then
    deleted); the caller compiles the layout instead.
    """
    pytensor = quiet_import("pytensor")
    if not pytensor.config.numba__cache:
        return None
    path = records_dir() / f"{key}.pkl"
    try:
        record = pickle.loads(path.read_bytes())
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    numba = quiet_import("numba")

    n_dim, n_expanded = record["n_dim"], record["n_expanded"]
    from ._callbacks import signatures

    logp_sig, _ = signatures()
    try:
        logp_cb = _cfunc(
            _LOGP_SRC.format(data=", numbers"), "logp_callback", record["logp_key"], None, n_dim, n_expanded, logp_sig
        )
    except numba.core.errors.NumbaError:  # not in Numba's cache: it tried to compile without the inner function
        return None
    from ._callbacks import callbacks

    expand_cb = callbacks()[1]
    numbers0, x, logp, grad = record["check"]
    layout = (n_dim, n_expanded, record["shape_info"], record["dims"], record["coords"])
    compiled = _assemble(layout, (logp_cb, expand_cb), record["initial_point"], numbers0, (None, None))
    code, got_logp, got_grad = _evaluate(compiled, x)
    if code != 0 or got_logp != logp or not np.array_equal(got_grad, grad):
        path.unlink(missing_ok=True)
        return None
    return compiled


def is_cached_layout(compiled: Any) -> bool:
    """Whether ``compiled`` came from :func:`compile_model` or :func:`kernel_model` (the library's callbacks)."""
    ud = getattr(compiled, "user_data", None)
    return isinstance(ud, np.ndarray) and ud.dtype == np.uint64 and ud.shape in ((2,), (6,))


def is_kernel(compiled: Any) -> bool:
    """Whether ``compiled`` samples the hand-written kernel (:func:`kernel_model`)."""
    return is_cached_layout(compiled) and "ints" in compiled.shared_data


def kernel_model(st: Any, data: dict[str, np.ndarray]) -> Any:
    """nutpie's compiled model of the structure ``st`` on the hand-written kernel (:mod:`estimates._kernel`).

    No PyMC model is built and nothing is compiled for the layout: the two
    callbacks (:mod:`estimates._callbacks`) are the same for every model
    and read the layout from arrays made here. ``data`` is
    :func:`estimates.model.model_data` of ``st``. The trace holds the free
    variables; :func:`estimates.model.expand_draws` gives the others.
    """
    import nutpie.compile_pymc as cp

    from . import _callbacks, _kernel
    from .model import model_coords, pack_numbers

    free = _kernel.free_variables(st)
    ints, floats = _kernel.pack(st, data, free)
    numbers, _ = _user_data(pack_numbers(data))
    for a in (ints, floats):
        a.flags.writeable = False
    names = [name for name, _ in free]
    ends = np.cumsum([0] + [size for _, size in free])
    slices = [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True)]
    shapes = [(size,) for _, size in free]
    logp_cb, expand_cb = _callbacks.callbacks()
    n_dim = int(ends[-1])
    return cp.CompiledPyMCModel(
        _n_dim=n_dim,
        dims=_kernel.variable_dims(st, free),
        _coords=model_coords(st),
        _shapes=dict(zip(names, shapes, strict=True)),
        compiled_logp_func=logp_cb,
        compiled_expand_func=expand_cb,
        initial_point_func=InitialPoint(kernel_start(st, data)),
        shared_data={DATA: numbers, "ints": ints, "floats": floats},
        user_data=_callbacks.user_data(numbers, ints, floats),
        n_expanded=n_dim,
        shape_info=(names, slices, shapes),
        logp_func=None,
        expand_func=None,
    )


def kernel_start(st: Any, data: dict[str, np.ndarray]) -> np.ndarray:
    """The priors' support points of :func:`kernel_model`'s model for ``data`` (``_kernel.initial_point``)."""
    from . import _kernel

    return _kernel.initial_point(st, _kernel.free_variables(st), data)


def with_numbers(compiled: Any, numbers: np.ndarray) -> Any:
    """A copy of ``compiled`` that samples with ``numbers`` as the model's data vector."""
    if not is_cached_layout(compiled):
        return compiled.with_data(**{DATA: numbers})
    old = compiled.shared_data[DATA]
    numbers, user_data = _user_data(numbers)
    if numbers.ndim != old.ndim:
        raise ValueError(f"the data vector must have rank {old.ndim}, not {numbers.ndim}")
    if is_kernel(compiled):
        if numbers.size != old.size:
            raise ValueError(f"the data vector must have {old.size} numbers, not {numbers.size}")
        from . import _callbacks

        shared = {**compiled.shared_data, DATA: numbers}
        return dataclasses.replace(
            compiled, shared_data=shared, user_data=_callbacks.user_data(numbers, shared["ints"], shared["floats"])
        )
    return dataclasses.replace(compiled, shared_data={DATA: numbers}, user_data=user_data)


#: nutpie's statistics that hold nothing unless a ``store_*`` setting asked for them.
_UNSTORED = (
    "gradient",
    "unconstrained_draw",
    "mass_matrix_inv",
    "mass_matrix_eigvals",
    "mass_matrix_stds",
    "divergence_start",
    "divergence_end",
    "divergence_momentum",
    "divergence_start_gradient",
)


def to_inference_data(
    results: Any,
    coords: dict[str, Any],
    dims: dict[str, Any] | None = None,
    expand: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
) -> tuple[Any, int]:
    """The draws of a finished ``nutpie.sample(..., return_raw_trace=True)`` as ArviZ data, and its gradients.

    ``expand`` (with a model from :func:`kernel_model` or
    :func:`compile_model`, whose trace holds the free variables only) maps free variables, draws first, to the
    others (:func:`estimates.model.expand_draws`); it is called on blocks of
    draws and its variables join the posterior after the free ones, with
    their ``dims`` (the compiled model's).

    nutpie's own conversion also builds the warm-up draws and statistics
    into two more groups, which the library only counted gradients in and
    dropped. Here the warm-up contributes its gradient count (``n_steps``)
    and nothing else; the ``posterior`` and ``sample_stats`` groups are
    what nutpie's conversion gives (``tests/test_cache.py`` compares them).
    Each chain's part of nutpie's trace is let go as soon as it is copied,
    so the peak is the trace plus one chain's draws, not plus all of them
    (on benchmarks' large problem, 2 x 1,000 draws are 0.77 GB).
    """
    az = quiet_import("arviz")
    draw_batches, stat_batches = results.get_arrow_trace()
    gradients, kept, draw, stat = 0, [], None, None
    for draw, stat in zip(draw_batches, stat_batches, strict=True):
        n_tune = int(np.asarray(stat.column("tuning")).sum())
        gradients += int(np.asarray(stat.column("n_steps")).sum())
        kept.append([draw.slice(n_tune), stat.slice(n_tune)])
    del draw_batches, stat_batches, draw, stat
    n_chains = len(kept)
    rows = [d.num_rows for d, _ in kept]
    n_draws = max(rows, default=0)
    posterior: dict[str, np.ndarray] = {}
    stats: dict[str, np.ndarray] = {}
    var_dims: dict[str, list[str]] = {}
    for chain in range(n_chains):
        draw, stat = kept[chain]
        kept[chain] = None  # the last reference to this chain's part of the trace, once copied
        _fill(posterior, draw, chain, n_chains, n_draws, var_dims, ())
        _fill(stats, stat, chain, n_chains, n_draws, var_dims, _UNSTORED)
        del draw, stat
    for chain, n in enumerate(rows):  # a chain that stopped early: NaN (or 0) after its last draw
        for arr in (*posterior.values(), *stats.values()):
            arr[chain, n:] = np.nan if arr.dtype.kind == "f" else 0
    if expand is not None:
        for name, values in _expanded(posterior, expand, n_chains, n_draws).items():
            posterior[name] = values
            if dims and name in dims:
                var_dims[name] = list(dims[name])
    coords = {name: list(values) for name, values in coords.items()}
    return az.from_dict(posterior, sample_stats=stats, dims=var_dims, coords=coords), gradients


#: Draws per block of :func:`_expanded`: about this many values of the free variables at a time.
EXPAND_BLOCK_VALUES = 1 << 21


def _expanded(posterior: dict, expand: Callable, n_chains: int, n_draws: int) -> dict[str, np.ndarray]:
    """``expand`` of every draw of ``posterior`` (chains x draws x ...), a block of draws at a time."""
    rows = n_chains * n_draws
    flat = {name: v.reshape(rows, *v.shape[2:]) for name, v in posterior.items()}
    width = sum(int(np.prod(v.shape[1:])) for v in flat.values())
    step = max(1, EXPAND_BLOCK_VALUES // max(width, 1))
    out: dict[str, np.ndarray] = {}
    for lo in range(0, rows, step):
        for name, v in expand({k: f[lo : lo + step] for k, f in flat.items()}).items():
            if name not in out:
                out[name] = np.empty((rows, *v.shape[1:]))
            out[name][lo : lo + step] = v
    return {name: v.reshape(n_chains, n_draws, *v.shape[1:]) for name, v in out.items()}


def _fill(out: dict, batch: Any, chain: int, n_chains: int, n_draws: int, dims: dict, skip: tuple) -> None:
    """Copy one chain's arrow columns into ``out[name][chain]``.

    Arrays are created empty (their pages are touched only when a chain is
    copied in), so a chain's rows cost memory only once that chain is here.
    """
    pa = quiet_import("pyarrow")
    for name in batch.column_names:
        if name in skip:
            continue
        col = batch.column(name)
        meta = col.field.metadata or {}
        shape = [int(x) for x in meta[b"shape"].decode().split(",")] if meta.get(b"shape") else []
        if meta.get(b"dims"):
            dims[name] = meta[b"dims"].decode().split(",")
        arr = pa.array(col)  # from nutpie's arro3 array, without a copy
        valid = ~np.asarray(arr.is_null())
        flat = arr.flatten() if hasattr(arr, "flatten") else arr
        values = flat.to_numpy(zero_copy_only=False)
        if name not in out:
            out[name] = np.empty([n_chains, n_draws, *shape], dtype=values.dtype)
        rows = out[name][chain, : batch.num_rows]
        if valid.all():
            rows[...] = values.reshape(rows.shape)
        else:
            rows[...] = np.nan if rows.dtype.kind == "f" else 0
            rows[valid] = values.reshape((int(valid.sum()), *shape))
