"""Many independent reconciliations: one claims table split into groups, each reconciled on its own.

:func:`reconcile_many` splits the table by the values of some columns (every
armed group, every conflict-year, every scenario), reconciles each group with
:func:`estimates.reconcile`, and gathers the results into one
:class:`ManyReconciliations` whose tables carry the grouping columns.

The groups run wherever an executor sends them: in this process (the
default), in a local process pool, or on a Dask cluster (a
``distributed.Client``). Each worker process keeps its own cache of compiled
models, so groups with the same layout of claims compile once per worker, not
once per group. A group whose input is bad, whose sampler fails, or whose
worker dies is reported with its error and its rows; it never takes the other
groups down with it and never goes missing.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .claims import ClaimsLike, is_missing, read_claims
from .errors import ApproximationWarning, ConvergenceWarning, OptionError
from .results import Reconciliation, format_number

__all__ = ["GROUP_COLUMNS", "ManyReconciliations", "reconcile_many"]

#: Columns of ``ManyReconciliations.groups`` after the grouping columns.
GROUP_COLUMNS = [
    "status",
    "n_claims",
    "error_type",
    "error",
    "r_hat_max",
    "ess_bulk_min",
    "divergences",
    "converged",
    "flagged",
    "seconds",
    "compiled",
    "worker",
    "warnings",
]

# reconcile() options that are not per-group (handled here) or not allowed
_OWN = {"claims", "by", "executor", "progress", "on_result"}


@dataclass
class _Outcome:
    """What one group's run sends back (pickled from the worker)."""

    key: tuple
    result: Reconciliation | None
    error_type: str | None = None
    error: str | None = None
    warnings: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = float("nan")
    worker: str = ""


def group_seed(random_seed: int | None, key: tuple) -> int | None:
    """The seed of one group: fixed by ``random_seed`` and the group's key alone.

    So a group gets the same draws whichever worker runs it and in whatever
    order, and two groups never share a stream of random numbers.

    Parameters
    ----------
    random_seed : int or None
        The seed of the whole run; None gives None (fresh entropy per group).
    key : tuple
        The group's values of the grouping columns.

    Returns
    -------
    int or None
        A seed for :func:`estimates.reconcile`.

    Examples
    --------
    >>> from estimates.many import group_seed
    >>> group_seed(0, ("Syria", 2014)) == group_seed(0, ("Syria", 2014))
    True
    >>> group_seed(0, ("Syria", 2014)) != group_seed(0, ("Iraq", 2014))
    True
    """
    if random_seed is None:
        return None
    tag = zlib.crc32(json.dumps([str(_plain(v)) for v in key]).encode())
    return int(np.random.SeedSequence([int(random_seed), tag]).generate_state(1)[0])


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value it holds (``np.int64(5)`` -> ``5``)."""
    return v.item() if isinstance(v, np.generic) else v


def _run_group(key: tuple, table: pd.DataFrame, options: dict[str, Any]) -> _Outcome:
    """Reconcile one group; any failure is caught and returned, never raised."""
    from .api import reconcile

    worker = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = reconcile(table, **options)
            error_type = error = None
        except Exception as exc:  # noqa: BLE001 - isolation: one group's failure is its own, reported
            result, error_type, error = None, type(exc).__name__, str(exc)
    seen = [(type(w.message).__name__, str(w.message)) for w in caught]
    return _Outcome(key, result, error_type, error, seen, time.perf_counter() - t0, worker)


@dataclass
class ManyReconciliations:
    """The results of :func:`reconcile_many`: one table per kind, with the grouping columns in front.

    Every group's tables are stacked, so a pipeline reads one ``intervals``
    table for all groups; a group that failed is a row of ``groups`` with
    its error, and its claims keep their place in ``claims``.

    Parameters
    ----------
    by : list of str
        The grouping columns.
    intervals, sources : DataFrame
        The tables of :class:`estimates.Reconciliation` of every group that
        succeeded, stacked, with the grouping columns first.
    claims : DataFrame
        Every input row, in input order, with the grouping columns: the rows
        of a group that succeeded as its ``result.claims`` has them, the rows
        of a group that failed with ``status = "failed: <error type>: <message>"``.
    groups : DataFrame
        One row per group: the grouping columns, then
        :data:`estimates.many.GROUP_COLUMNS`
        (``status`` is ``ok`` or ``failed``; ``compiled`` says whether that
        group compiled a model rather than reusing one; ``worker`` is
        ``host:pid``; ``warnings`` lists what the group warned).
    results : dict
        The :class:`estimates.Reconciliation` of each group that succeeded,
        by its key (a tuple of the grouping values).
    seconds : float
        Wall time of the whole run.

    Examples
    --------
    >>> import estimates as est
    >>> runs = est.reconcile_many(claims, by="group", draws=300, tune=300, refits=0)  # doctest: +SKIP
    >>> runs.groups[["group", "status", "converged"]]  # doctest: +SKIP
    >>> runs[("B",)].intervals  # doctest: +SKIP

    A result without groups is an empty table of each kind:

    >>> import pandas as pd
    >>> empty = est.ManyReconciliations.from_outcomes([], by=["group"], claims=pd.DataFrame({"group": []}))
    >>> len(empty), list(empty.groups.columns[:3])
    (0, ['group', 'status', 'n_claims'])
    """

    by: list[str]
    intervals: pd.DataFrame
    sources: pd.DataFrame
    claims: pd.DataFrame
    groups: pd.DataFrame
    results: dict[tuple, Reconciliation]
    seconds: float = float("nan")

    def __len__(self) -> int:
        """Number of groups.

        Returns
        -------
        int
            Groups that succeeded and groups that failed.

        Examples
        --------
        >>> import pandas as pd
        >>> import estimates as est
        >>> len(est.ManyReconciliations.from_outcomes([], by=["g"], claims=pd.DataFrame({"g": []})))
        0
        """
        return len(self.groups)

    def __getitem__(self, key: Any) -> Reconciliation:
        """The :class:`estimates.Reconciliation` of one group.

        Parameters
        ----------
        key : tuple or scalar
            The group's values of the grouping columns (a scalar for one column).

        Returns
        -------
        Reconciliation
            That group's result.

        Raises
        ------
        KeyError
            No such group, or the group failed (the message gives its error).

        Examples
        --------
        >>> import pandas as pd
        >>> import estimates as est
        >>> runs = est.ManyReconciliations.from_outcomes([], by=["g"], claims=pd.DataFrame({"g": []}))
        >>> runs["A"]
        Traceback (most recent call last):
            ...
        KeyError: "no group ('A',); the groups are: "
        """
        k = key if isinstance(key, tuple) else (key,)
        k = tuple(_plain(v) for v in k)
        if k in self.results:
            return self.results[k]
        row = self.groups[[tuple(_plain(v) for v in r) == k for r in self.groups[self.by].itertuples(index=False)]]
        if len(row):
            r = row.iloc[0]
            raise KeyError(f"group {k!r} failed: {r['error_type']}: {r['error']}")
        known = ", ".join(repr(tuple(_plain(v) for v in r)) for r in self.groups[self.by].itertuples(index=False))
        raise KeyError(f"no group {k!r}; the groups are: {known}")

    @property
    def failed(self) -> pd.DataFrame:
        """The rows of ``groups`` whose status is not ``ok``.

        A failed group did not produce a result: its input was bad, its
        sampler raised, or its worker was lost. ``error`` says which.

        Returns
        -------
        DataFrame
            The grouping columns, ``error_type``, ``error`` and the rest of ``groups``.

        Examples
        --------
        >>> import pandas as pd
        >>> import estimates as est
        >>> est.ManyReconciliations.from_outcomes([], by=["g"], claims=pd.DataFrame({"g": []})).failed.empty
        True
        """
        return self.groups[self.groups["status"] != "ok"]

    def summary(self) -> str:
        """A few lines: how many groups succeeded, failed, converged, and where they ran.

        Groups that did not converge and groups that failed are named, with
        their errors.

        Returns
        -------
        str
            Plain text.

        Examples
        --------
        >>> import pandas as pd
        >>> import estimates as est
        >>> print(est.ManyReconciliations.from_outcomes([], by=["g"], claims=pd.DataFrame({"g": []})).summary())
        0 groups by g: 0 reconciled, 0 failed.
        """
        g = self.groups
        ok = g["status"] == "ok"
        lines = [f"{len(g)} groups by {', '.join(self.by)}: {int(ok.sum())} reconciled, {int((~ok).sum())} failed."]
        if ok.any():
            conv = g.loc[ok, "converged"].astype(bool)
            workers = g.loc[ok, "worker"].nunique()
            lines.append(
                f"Converged: {int(conv.sum())} of {int(ok.sum())}; "
                f"{int(g.loc[ok, 'compiled'].sum())} compiled a model, "
                f"the rest reused one; {workers} worker process{'es' if workers != 1 else ''}; "
                f"{format_number(self.seconds)} s wall."
            )
            if (~conv).any():
                bad = ", ".join(
                    repr(tuple(r)) for r in g.loc[ok & ~g["converged"].astype(bool), self.by].itertuples(index=False)
                )
                lines.append(f"Not converged: {bad}.")
        for _, r in g[~ok].iterrows():
            lines.append(f"Failed {tuple(r[c] for c in self.by)!r}: {r['error_type']}: {r['error']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    @classmethod
    def from_outcomes(
        cls,
        outcomes: Iterable[_Outcome],
        *,
        by: list[str],
        claims: pd.DataFrame,
        rows: Mapping[tuple, np.ndarray] | None = None,
        seconds: float = float("nan"),
    ) -> ManyReconciliations:
        """Gather the groups' outcomes (internal; :func:`reconcile_many` calls it).

        Outcomes arrive in the order the groups finished; the tables come out
        in input order.

        Parameters
        ----------
        outcomes : iterable
            One outcome per group, in any order.
        by : list of str
            The grouping columns.
        claims : DataFrame
            The whole input table (positions are its rows).
        rows : mapping, optional
            Each group's row positions in ``claims``.
        seconds : float, optional
            Wall time of the run.

        Returns
        -------
        ManyReconciliations
            The gathered tables.

        Examples
        --------
        >>> import pandas as pd
        >>> import estimates as est
        >>> est.ManyReconciliations.from_outcomes([], by=["g"], claims=pd.DataFrame({"g": []})).claims.empty
        True
        """
        rows = dict(rows or {})
        outs = sorted(outcomes, key=lambda o: min(rows.get(o.key, [0]), default=0))
        iv, src, cl, grp, results = [], [], [], [], {}
        for o in outs:
            pos = np.asarray(rows.get(o.key, []), dtype=np.int64)
            keyed = dict(zip(by, o.key, strict=True))
            row = {**keyed, "n_claims": len(pos), "seconds": o.seconds, "worker": o.worker}
            row["warnings"] = [f"{c}: {m}" for c, m in o.warnings]
            if o.result is not None:
                r = o.result
                d = r.diagnostics
                results[o.key] = r
                flagged = r.claims["flagged"] if "flagged" in r.claims else pd.Series(dtype=bool)
                row.update(
                    status="ok",
                    error_type=None,
                    error=None,
                    r_hat_max=d.get("r_hat_max"),
                    ess_bulk_min=d.get("ess_bulk_min"),
                    divergences=d.get("divergences"),
                    converged=bool(d.get("converged")),
                    flagged=int(flagged.fillna(False).astype(bool).sum()),
                    compiled=not bool(d.get("cached", False)),
                )
                iv.append(_with_keys(r.intervals, keyed))
                src.append(_with_keys(r.sources, keyed))
                c = _with_keys(r.claims, keyed)
                c.index = pos if len(pos) == len(c) else c.index
                cl.append(c)
            else:
                row.update(status="failed", error_type=o.error_type, error=o.error, converged=False, compiled=False)
                c = claims.iloc[pos].copy()
                c.index = pos
                c["status"] = f"failed: {o.error_type}: {o.error}"
                cl.append(c)
            grp.append(row)
        groups = pd.DataFrame(grp, columns=[*by, *GROUP_COLUMNS])
        all_claims = pd.concat(cl).sort_index() if cl else claims.iloc[:0].assign(status=pd.Series(dtype=object))
        all_claims.index = pd.RangeIndex(len(all_claims)) if len(all_claims) == len(claims) else all_claims.index
        empty = pd.DataFrame(columns=by)
        return cls(
            by=list(by),
            intervals=pd.concat(iv, ignore_index=True) if iv else empty.copy(),
            sources=pd.concat(src, ignore_index=True) if src else empty.copy(),
            claims=all_claims,
            groups=groups,
            results=results,
            seconds=seconds,
        )


def _with_keys(table: pd.DataFrame, keyed: dict[str, Any]) -> pd.DataFrame:
    """``table`` with the grouping columns first (those it lacks are added; it is never changed)."""
    out = table.copy()
    for col in reversed(list(keyed)):
        if col in out.columns:
            out.insert(0, col, out.pop(col))
        else:
            out.insert(0, col, keyed[col])
    return out


def _split(claims: pd.DataFrame, by: list[str]) -> tuple[dict[tuple, np.ndarray], list[_Outcome]]:
    """Row positions of each group, in first-appearance order; rows with an empty grouping value fail."""
    missing = [c for c in by if c not in claims.columns]
    if missing:
        raise OptionError(
            f"by= names {missing} which the claims table does not have; "
            f"its columns are: {', '.join(map(str, claims.columns))}"
        )
    values = claims[by].to_numpy(object)
    empty = np.array([any(is_missing(v) for v in row) for row in values], dtype=bool)
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(values):
        if not empty[i]:
            groups.setdefault(tuple(_plain(v) for v in row), []).append(i)
    rows = {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}
    failed = []
    if empty.any():
        key = tuple(None for _ in by)
        rows[key] = np.flatnonzero(empty)
        failed.append(
            _Outcome(
                key,
                None,
                "OptionError",
                f"rows {', '.join(map(str, np.flatnonzero(empty)[:10]))}{' ...' if empty.sum() > 10 else ''} "
                "have no value "
                f"in the grouping column(s) {', '.join(by)}: fill them in (or drop them) to reconcile them",
            )
        )
    return rows, failed


def _progress(total: int, enabled: bool | None) -> Callable[[], None]:
    """A tick function: a tqdm bar when tqdm is installed, else one line per group on stderr."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled or total == 0:
        return lambda: None
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="group", desc="reconcile_many")

        def tick() -> None:
            bar.update(1)
            if bar.n >= total:
                bar.close()

        return tick
    except ImportError:  # pragma: no cover - tqdm is in the dev and dask extras
        done = [0]

        def tick() -> None:
            done[0] += 1
            print(f"reconcile_many: {done[0]}/{total} groups done", file=sys.stderr)

        return tick


def reconcile_many(
    claims: ClaimsLike,
    by: str | list[str],
    *,
    executor: Any = None,
    progress: bool | None = None,
    on_result: Callable[[tuple, Reconciliation | None, str | None], None] | None = None,
    random_seed: int | None = 0,
    **options: Any,
) -> ManyReconciliations:
    """Reconcile each group of a claims table on its own, serially or on an executor.

    The claims are split by the values of the ``by`` columns into independent
    problems (every armed group, every conflict-year, every scenario), each
    reconciled by :func:`estimates.reconcile` with the same ``options``.

    Parameters
    ----------
    claims : DataFrame, list of dict, or path to a CSV file
        The claims table, with the ``by`` columns. Never modified.
    by : str or list of str
        The grouping columns. They may be model columns (``by=["region",
        "time"]`` makes each cell its own problem) or any other column.
    executor : Executor, distributed.Client, or None, optional
        Where the groups run. None (the default) runs them one after another
        in this process. Anything with ``submit(fn, *args)`` returning a
        ``concurrent.futures.Future`` works: a
        ``concurrent.futures.ProcessPoolExecutor`` (create it with the
        ``"spawn"`` or ``"forkserver"`` start method: samplers start threads),
        or a Dask ``distributed.Client`` (its ``get_executor()`` is used). Each
        worker process keeps its compiled models, so groups with the same
        layout compile once per worker.
    progress : bool or None, optional
        Show a progress bar (tqdm if installed, else a line per group on
        stderr); None shows one when stderr is a terminal.
    on_result : callable, optional
        Called as ``on_result(key, result, error)`` in this process as each
        group finishes, in the order they finish (``result`` is None and
        ``error`` the message when the group failed).
    random_seed : int or None, optional
        Each group's seed is derived from this and the group's key
        (:func:`estimates.many.group_seed`), so the same call gives the same
        numbers whatever the executor, worker or order.
    **options
        Any other argument of :func:`estimates.reconcile` (``hierarchy``,
        ``reference``, ``draws``, ``refits``, ``errors``, ...), used for every
        group.

    Returns
    -------
    ManyReconciliations
        The tables of every group with the grouping columns first, the groups'
        diagnostics in ``groups``, and each group's result by key.

    Raises
    ------
    OptionError
        ``by`` names a column the table does not have, or ``options`` holds
        an argument :func:`estimates.reconcile` does not take.
    EmptyClaimsError
        No claims at all.

    Warns
    -----
    ConvergenceWarning, ApproximationWarning
        Once per kind, naming every group that warned (each group's own
        messages are in ``groups["warnings"]``).

    Notes
    -----
    A group whose input is bad, whose sampler raises, or whose worker is lost
    (a killed process; Dask first reschedules the task on another worker) has
    ``status = "failed"`` in ``groups`` with its error, and its rows appear in
    ``claims`` with ``status = "failed: <error>"``; the other groups are
    unaffected.

    Examples
    --------
    >>> import pandas as pd
    >>> import estimates as est
    >>> world = est.simulate(regions=2, periods=2, sources=3, seed=1)
    >>> claims = pd.concat([world.claims.assign(scenario=s) for s in ("low", "high")])  # doctest: +SKIP
    >>> runs = est.reconcile_many(claims, by="scenario", hierarchy=world.hierarchy)  # doctest: +SKIP

    On a Dask cluster (``pip install 'estimates[dask]'``):

    >>> from distributed import Client  # doctest: +SKIP
    >>> with Client(n_workers=2, threads_per_worker=1) as client:  # doctest: +SKIP
    ...     runs = est.reconcile_many(claims, by="scenario", executor=client, hierarchy=world.hierarchy)

    Bad arguments fail before anything runs:

    >>> est.reconcile_many(world.claims, by="scenario")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.OptionError: by= names ['scenario'] which the claims table does not have; its columns are: ...
    """
    from .api import reconcile

    t0 = time.perf_counter()
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise OptionError("by= needs at least one column to split the claims by")
    known = set(reconcile.__kwdefaults__ or {}) - _OWN
    unknown = sorted(set(options) - known)
    if unknown:
        raise OptionError(
            f"reconcile_many() got options reconcile() does not take: {unknown}; it takes {sorted(known)}"
        )
    table = read_claims(claims)
    rows, outcomes = _split(table, by)
    if "hierarchy" not in options and table.attrs.get("hierarchy"):
        options["hierarchy"] = table.attrs["hierarchy"]
    failed = {o.key for o in outcomes}
    tasks = [(k, table.iloc[pos].reset_index(drop=True)) for k, pos in rows.items() if k not in failed]
    tick = _progress(len(tasks), progress)

    def finished(o: _Outcome) -> None:
        outcomes.append(o)
        tick()
        if on_result is not None:
            on_result(o.key, o.result, None if o.result is not None else f"{o.error_type}: {o.error}")

    def opts(key: tuple) -> dict[str, Any]:
        return {**options, "random_seed": group_seed(random_seed, key)}

    if executor is None:
        for key, sub in tasks:
            finished(_run_group(key, sub, opts(key)))
    else:
        pool = executor.get_executor() if hasattr(executor, "get_executor") else executor
        futures: dict[Future, tuple] = {pool.submit(_run_group, key, sub, opts(key)): key for key, sub in tasks}
        for fut in as_completed(futures):
            key = futures[fut]
            try:
                o = fut.result()
            except BaseException as exc:  # noqa: BLE001 - a lost worker or a broken pool: report the group
                o = _Outcome(key, None, type(exc).__name__, f"the group was lost, not reconciled: {exc}")
            finished(o)
    out = ManyReconciliations.from_outcomes(outcomes, by=by, claims=table, rows=rows, seconds=time.perf_counter() - t0)
    _rewarn(out)
    return out


def _rewarn(out: ManyReconciliations) -> None:
    """One warning per kind naming the groups that raised it in their worker."""
    kinds = {"ConvergenceWarning": ConvergenceWarning, "ApproximationWarning": ApproximationWarning}
    for name, category in kinds.items():
        hit = [
            (tuple(r[c] for c in out.by), next(w for w in r["warnings"] if w.startswith(name + ":")))
            for _, r in out.groups.iterrows()
            if any(w.startswith(name + ":") for w in r["warnings"])
        ]
        if hit:
            first = "; ".join(f"{k!r}: {w.split(': ', 1)[1]}" for k, w in hit[:3])
            more = f" (and {len(hit) - 3} more)" if len(hit) > 3 else ""
            warnings.warn(
                f"{len(hit)} of {len(out)} groups: {first}{more}; groups['warnings'] has each group's messages",
                category,
                stacklevel=3,
            )
