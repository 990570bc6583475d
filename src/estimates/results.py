"""The result of a reconciliation: plain tables, the InferenceData, save and load.

Summaries are vectorised over draws (no Python loop over cells or draws).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._deps import quiet_import
from .interpret import simulate_statement
from .model import Structure, targets_numpy

INTERVAL_COLUMNS = ["quantity", "region", "time", "mean", "median", "sd", "lower", "upper"]
SOURCE_COLUMNS = [
    "quantity",
    "source",
    "n_claims",
    "bias",
    "bias_lower",
    "bias_upper",
    "reliability",
    "reliability_lower",
    "reliability_upper",
]
#: A claim whose leave-one-out ``tension`` is below this is ``flagged``: under
#: the model, about one claim in a hundred falls this far out by chance.
TENSION_THRESHOLD = 0.01

DIAGNOSTIC_KEYS = ["r_hat_max", "ess_bulk_min", "divergences", "converged", "sampler", "seconds"]


def format_number(x: float) -> str:
    """A number for reading in tables: thousands separated above 100, 1-2 decimals below; NaN blank."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


#: Memory for one draws x columns float64 array while a fit is diagnosed,
#: its claims checked and its results summarised
#: (:func:`estimates.inference.diagnostics`, :func:`estimates.loo.claim_checks`,
#: :func:`summarise_claims`, :func:`summarise_intervals`, the influence of
#: sources): columns go through in blocks of about this size, so 44,000
#: claims or 24,000 cells x 2,000 draws never hold the several whole arrays
#: a step needs at once (docs/performance.md, "Large").
BLOCK_BYTES = 32 * 2**20


def column_blocks(n_draws: int, n_columns: int, block_bytes: int | None = None) -> list[np.ndarray]:
    """Consecutive blocks of column positions, each about ``block_bytes`` (:data:`BLOCK_BYTES`) as draws x block.

    Columns are claims (leave-one-out checks, predictions), cells
    (intervals, influence) or a variable's elements (convergence diagnostics).
    """
    per = max(1, int((BLOCK_BYTES if block_bytes is None else block_bytes) // (8 * max(n_draws, 1))))
    return [np.arange(i, min(i + per, n_columns)) for i in range(0, n_columns, per)]


def posterior_draws(idata: Any, name: str) -> np.ndarray:
    """Posterior draws of ``name`` as (n_draws, ...) with chains stacked."""
    a = np.asarray(idata.posterior[name].values)
    return a.reshape((-1,) + a.shape[2:])


def _quantiles(x: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, med, hi = np.quantile(x, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=0)
    return lo, med, hi


def summarise_intervals(st: Structure, idata: Any, prob: float) -> pd.DataFrame:
    """One row per (quantity, region, time); aggregates are sums of leaves draw by draw."""
    log_count = posterior_draws(idata, "log_count")
    stats = np.empty((5, log_count.shape[1]))  # mean, median, sd, lower, upper
    for cells in column_blocks(*log_count.shape):  # bounded memory, however many cells
        counts = np.exp(log_count[:, cells])
        lo, med, hi = _quantiles(counts, prob)
        sd = counts.std(axis=0, ddof=1) if counts.shape[0] > 1 else 0.0
        stats[:, cells] = counts.mean(axis=0), med, sd, lo, hi
    out = st.cells[["quantity", "region", "time"]].copy()
    out["time"] = out["time"].astype(object)
    out["mean"], out["median"], out["sd"], out["lower"], out["upper"] = stats
    return out[INTERVAL_COLUMNS].reset_index(drop=True)


def summarise_sources(st: Structure, idata: Any, prob: float) -> pd.DataFrame:
    """One row per (quantity, source): bias factor and reliability with intervals."""
    bias = np.exp(posterior_draws(idata, "log_bias"))
    rel = np.exp(posterior_draws(idata, "log_reliability"))
    blo, bmed, bhi = _quantiles(bias, prob)
    rlo, rmed, rhi = _quantiles(rel, prob)
    out = st.sources[["quantity", "source", "n_claims"]].copy()
    out["bias"], out["bias_lower"], out["bias_upper"] = bmed, blo, bhi
    out["reliability"], out["reliability_lower"], out["reliability_upper"] = rmed, rlo, rhi
    return out[SOURCE_COLUMNS].reset_index(drop=True)


#: Columns ``summarise_claims`` adds to the input table.
CLAIM_CHECK_COLUMNS = [
    "predicted_lower",
    "predicted_upper",
    "tension",
    "tension_in_sample",
    "pareto_k",
    "loo",
    "flagged",
    "p_wild",
]


def summarise_claims(
    st: Structure,
    idata: Any,
    table: pd.DataFrame,
    prob: float,
    rng: np.random.Generator,
    checks: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Add the predictive interval and tension columns to the claims table.

    ``predicted_lower`` and ``predicted_upper`` bound the posterior
    predictive interval of the number the claim's source would state (a
    range's centre, a bound's bound, a point's value; a ratio for relative
    claims). ``tension`` is the leave-one-out two-sided tail probability of
    the stated number (for a censored bound, twice the probability that the
    bound is violated, capped at 1): small means the claim does not fit the
    rest. ``checks`` holds per used claim ``tension``, ``tension_in_sample``,
    ``pareto_k``, ``loo`` (how it was left out) and ``p_wild``
    (``estimates.loo``); ``flagged`` is ``tension < estimates.results.TENSION_THRESHOLD`` (0.01).
    """
    out = table.copy()
    for c in CLAIM_CHECK_COLUMNS:
        out[c] = np.nan
    out["loo"] = pd.Series([""] * len(out), index=out.index, dtype=object)
    out["flagged"] = False
    if len(st.claim_row) == 0:
        return out
    draws = [posterior_draws(idata, v) for v in ("log_count", "log_bias", "log_reliability")]
    lo, hi = np.empty(len(st.claim_row)), np.empty(len(st.claim_row))
    for cols in column_blocks(len(draws[0]), len(st.claim_row)):  # bounded memory, however many claims
        y, s = targets_numpy(st, *draws, cols=cols)
        statement = (st.claim_shape[cols], st.claim_kind[cols], st.claim_a[cols], st.claim_b[cols])
        rep = simulate_statement(*statement, s, y, rng)
        lo[cols], _, hi[cols] = _quantiles(rep, prob)
    rows = st.claim_row
    out.loc[rows, "predicted_lower"] = np.exp(lo)
    out.loc[rows, "predicted_upper"] = np.exp(hi)
    if checks is not None:
        for c in ("tension", "tension_in_sample", "pareto_k", "p_wild"):
            out.loc[rows, c] = np.asarray(checks[c], dtype=float)
        out.loc[rows, "loo"] = list(checks["loo"])
        out.loc[rows, "flagged"] = np.asarray(checks["tension"]) < TENSION_THRESHOLD
    out["flagged"] = out["flagged"].astype(bool)
    return out


@dataclass
class Reconciliation:
    """The result of :func:`estimates.reconcile`: plain tables, diagnostics and the posterior.

    Made by :func:`estimates.reconcile` (or read back by :meth:`load`), not
    usually by hand. Each parameter is kept as the attribute of the same
    name; the tables are ordinary pandas DataFrames. Intervals are
    equal-tailed with the probability ``meta["options"]["prob"]``.

    Parameters
    ----------
    intervals : DataFrame
        One row per quantity, region and time: ``quantity, region, time,
        mean, median, sd, lower, upper`` (counts). Aggregates are sums of
        their members draw by draw. Counts are skewed (log-normal-like), so
        report the median and the interval: in a cell no claim speaks to
        (a period between or beyond the claims), a few draws far in the
        tail can make ``mean`` and ``sd`` many times the median.
    sources : DataFrame
        One row per quantity and source: ``quantity, source, n_claims, bias,
        bias_lower, bias_upper, reliability, reliability_lower,
        reliability_upper``, and from :func:`estimates.reconcile` also
        ``influence`` (the largest relative move of any median when the
        source is left out) and ``influence_method``. A bias of 1 is none.
    claims : DataFrame
        Every input row in input order with its interpretation (``kind``,
        ``low``, ``high``, ``value``, ``coverage``), ``status`` (``used`` or
        ``rejected: <reason>``), ``predicted_lower`` and ``predicted_upper``
        (the posterior predictive interval of what the claim states),
        ``tension`` (leave-one-out), ``flagged`` (tension below
        ``estimates.results.TENSION_THRESHOLD``, 0.01) and the columns of how it was checked.
    diagnostics : dict
        ``r_hat_max, ess_bulk_min, divergences, converged, sampler, seconds``,
        the timings and ``loo`` (the leave-one-out checks).
    idata : arviz.InferenceData
        Posterior and sample stats.
    meta : dict, optional
        Provenance: library version, options, input hash, notes.
    influence_table : DataFrame or None, optional
        The rows :meth:`influence` returns (set by :func:`estimates.reconcile`).

    See Also
    --------
    estimates.reconcile : Makes it.

    Examples
    --------
    The fit of the article example, at default settings:

    >>> import estimates as est
    >>> result = est.reconcile(est.load_example("isis-2022"))  # doctest: +SKIP

    (the test suite supplies this same fit as ``result``, so the examples of
    the methods run on it without sampling again)

    >>> result  # doctest: +ELLIPSIS
    <Reconciliation: 10 claims, 27 intervals, 6 sources; sampler ..., converged=True>
    >>> list(result.intervals.columns)
    ['quantity', 'region', 'time', 'mean', 'median', 'sd', 'lower', 'upper']
    >>> row = result.intervals.query("region == 'Iraq and Syria' and time == '2022-02'").iloc[0]
    >>> bool(row["lower"] < row["median"] < row["upper"])
    True
    >>> result.meta["options"]["prob"]
    0.9
    """

    intervals: pd.DataFrame
    sources: pd.DataFrame
    claims: pd.DataFrame
    diagnostics: dict[str, Any]
    idata: Any
    meta: dict[str, Any] = field(default_factory=dict)
    #: Rows of :meth:`influence` (set by :func:`estimates.reconcile`).
    influence_table: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def influence(self) -> pd.DataFrame:
        """How each interval moves when each source is left out.

        One row per (quantity, source, region, time): the interval with all
        sources (``median``, ``lower``, ``upper``), without that source
        (``*_without``), ``shift`` (relative move of the median), ``width_ratio``,
        and ``method``: ``psis`` (the posterior draws reweighted), ``refit``
        (sampled again without the source's claims) or a note that the
        weights were unreliable (Pareto ``k`` above 0.7) and no refit was left.
        ``result.sources["influence"]`` is each source's largest ``|shift|``.

        Returns
        -------
        DataFrame
            ``quantity, source, region, time, median, lower, upper,
            median_without, lower_without, upper_without, shift,
            width_ratio, method, pareto_k``; a copy, free to modify.

        Raises
        ------
        AttributeError
            The result was not made by :func:`estimates.reconcile` (made by
            hand, it carries no influence table).

        Examples
        --------
        >>> inf = result.influence()
        >>> inf.columns[:8].tolist()
        ['quantity', 'source', 'region', 'time', 'median', 'lower', 'upper', 'median_without']

        One row for each interval of the source's quantity (11 regions at 2
        times):

        >>> un = inf[inf["source"] == "UN member-state intelligence"]
        >>> len(un), un["region"].nunique()
        (22, 11)
        >>> influence = result.sources.set_index("source").loc["UN member-state intelligence", "influence"]
        >>> bool(un["shift"].abs().max() == influence)
        True
        """
        if self.influence_table is None:
            raise AttributeError("this result carries no influence table (it was not made by estimates.reconcile)")
        return self.influence_table.copy()

    def __repr__(self) -> str:
        d = self.diagnostics
        return (
            f"<Reconciliation: {len(self.claims)} claims, {len(self.intervals)} intervals, "
            f"{len(self.sources)} sources; sampler {d.get('sampler')}, "
            f"converged={d.get('converged')}>"
        )

    def __str__(self) -> str:
        return self.summary()

    def summary(self, max_rows: int = 12) -> str:
        """Summarise the result in a few lines: estimates, sources, claims in tension, convergence.

        ``print(result)`` shows the same. At most ``max_rows`` rows of each
        table (the estimates with the most claims first); the tables hold all.

        Parameters
        ----------
        max_rows : int, default 12
            Rows shown of each table.

        Returns
        -------
        str
            The summary, lines separated by newlines.

        Examples
        --------
        >>> text = result.summary(max_rows=3)
        >>> print(text.splitlines()[0])
        Reconciled 10 of 10 claims from 5 sources into 27 estimates (5 quantities).
        >>> "  ... 24 more in result.intervals" in text.splitlines()
        True
        >>> str(result) == result.summary()
        True
        """
        prob = float(self.meta.get("options", {}).get("prob", 0.9))
        cl, iv, src, d = self.claims, self.intervals, self.sources, self.diagnostics
        used = (cl["status"] == "used") if "status" in cl else pd.Series(True, index=cl.index)
        lines = [
            f"Reconciled {int(used.sum())} of {len(cl)} claims from {src['source'].nunique()} sources "
            f"into {len(iv)} estimates ({_plural(iv['quantity'].nunique(), 'quantity', 'quantities')}).",
            _convergence_line(d),
            "",
            f"Estimates: median and {prob:.0%} interval",
        ]
        key = ["quantity", "region", "time"]
        n_claims = cl[used].astype({"time": str}).groupby(key, dropna=False).size() if len(cl) else pd.Series()
        cells = zip(iv["quantity"], iv["region"], iv["time"], strict=True)
        order = iv.assign(_n=[n_claims.get((q, r, str(t)), 0) for q, r, t in cells])
        order = order.sort_values("_n", ascending=False, kind="stable")
        rows = [
            (str(r.quantity), str(r.region), str(r.time), f"{r.median:,.0f}", f"({r.lower:,.0f} to {r.upper:,.0f})")
            for r in order.head(max_rows).itertuples()
        ]
        lines += _columns(rows)
        if len(iv) > max_rows:
            lines.append(f"  ... {len(iv) - max_rows} more in result.intervals")
        lines += ["", f"Sources: bias factor (1 = none) and {prob:.0%} interval"]
        rows = []
        for r in src.head(max_rows).itertuples():
            extra = f"influence {r.influence:.0%}" if "influence" in src and pd.notna(r.influence) else ""
            rows.append(
                (str(r.quantity), str(r.source), f"{r.bias:.2f}", f"({r.bias_lower:.2f} to {r.bias_upper:.2f})", extra)
            )
        lines += _columns(rows)
        if len(src) > max_rows:
            lines.append(f"  ... {len(src) - max_rows} more in result.sources")
        flagged = cl["flagged"].astype(bool) if "flagged" in cl else cl["tension"] < TENSION_THRESHOLD
        lines += ["", f"Claims in tension with the rest (leave-one-out tension below {TENSION_THRESHOLD:g}):"]
        if not flagged.any():
            lines.append("  none")
        rows = []
        for i, r in cl[flagged].sort_values("tension").head(max_rows).iterrows():
            text = r["claim"] if "claim" in cl and isinstance(r["claim"], str) else _numbers_text(r)
            where = (f"row {i}", str(r["region"]), str(r["time"]), str(r["source"]))
            rows.append((*where, text, f"tension {r['tension']:.2g}"))
        lines += _columns(rows)
        rejected = int((~used).sum())
        if rejected:
            lines += ["", f"{rejected} claim(s) rejected: see result.claims['status']."]
        return "\n".join(lines)

    # ------------------------------------------------------------------ figures and report
    def plot_claims(self, region: str | None = None, time: Any = None, *, quantity: str | None = None, ax: Any = None):  # noqa: ANN201
        """Draw each claim beside the posterior interval of its region and time.

        The same as :func:`estimates.plot_claims` with this result.

        Parameters
        ----------
        region : str, optional
            The region; left as None, the one with the most claims.
        time : str or number, optional
            The period, as in ``result.intervals["time"]``; chosen the same
            way when None.
        quantity : str, optional
            What is counted; chosen the same way when None.
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new pyplot figure is made when None.

        Returns
        -------
        matplotlib.axes.Axes
            Each claim's artist has the gid ``claim:<row in result.claims>``.

        Raises
        ------
        OptionError
            An unknown quantity, region or time (the message lists the valid ones).

        See Also
        --------
        estimates.plot_claims : The function this calls.

        Examples
        --------
        Drawn here on a figure made without pyplot (nothing is shown):

        >>> from matplotlib.figure import Figure
        >>> ax = result.plot_claims("Iraq and Syria", "2022-02", ax=Figure().subplots())
        >>> ax.get_title(loc="left")
        'fighters in Iraq and Syria, 2022-02'
        >>> sorted(a.get_gid() for a in ax.get_children() if str(a.get_gid()).startswith("claim:"))
        ['claim:0', 'claim:1']
        """
        from .plots import plot_claims

        return plot_claims(self, region=region, time=time, quantity=quantity, ax=ax)

    def plot_timeline(self, region: str | None = None, *, quantity: str | None = None, ax: Any = None):  # noqa: ANN201
        """Draw the posterior median and nested intervals of one region over time, claims overlaid.

        The same as :func:`estimates.plot_timeline` with this result.

        Parameters
        ----------
        region : str, optional
            The region; left as None, the one with the most claims.
        quantity : str, optional
            What is counted; chosen the same way when None.
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new pyplot figure is made when None.

        Returns
        -------
        matplotlib.axes.Axes
            Each claim's artist has the gid ``claim:<row in result.claims>``.

        Raises
        ------
        OptionError
            An unknown quantity or region (the message lists the valid ones).

        See Also
        --------
        estimates.plot_timeline : The function this calls.

        Examples
        --------
        >>> from matplotlib.figure import Figure
        >>> ax = result.plot_timeline("Afghanistan", ax=Figure().subplots())
        >>> ax.get_title(loc="left")
        'fighters in Afghanistan over time'
        """
        from .plots import plot_timeline

        return plot_timeline(self, region=region, quantity=quantity, ax=ax)

    def plot_sources(self, *, quantity: str | None = None, ax: Any = None):  # noqa: ANN201
        """Draw each source's bias factor with its interval on a log axis.

        The same as :func:`estimates.plot_sources` with this result.

        Parameters
        ----------
        quantity : str, optional
            Only this quantity's sources; all when None.
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new pyplot figure is made when None.

        Returns
        -------
        matplotlib.axes.Axes
            Each source's artist has the gid ``source:<row in result.sources>``.

        Raises
        ------
        OptionError
            An unknown quantity (the message lists the valid ones).

        See Also
        --------
        estimates.plot_sources : The function this calls.

        Examples
        --------
        >>> from matplotlib.figure import Figure
        >>> ax = result.plot_sources(quantity="fighters", ax=Figure().subplots())
        >>> ax.get_title(loc="left")
        'Source bias (fighters): median and 90% interval'
        >>> [label.get_text() for label in ax.get_yticklabels()]
        ['UN member-state intelligence (4 claims)', 'US intelligence (earlier estimate) (1 claim)']
        """
        from .plots import plot_sources

        return plot_sources(self, quantity=quantity, ax=ax)

    def report(self, path: str | os.PathLike) -> Path:
        """Write one self-contained HTML report: summary, flagged claims, figures, tables, diagnostics.

        Figures are embedded as PNG; the file needs nothing else to open. It
        is written to a temporary name and renamed, so it is never left
        half-written.

        Parameters
        ----------
        path : str or os.PathLike
            The HTML file to write (replaced if it exists).

        Returns
        -------
        pathlib.Path
            ``path``.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = result.report(Path(tmp) / "isis-2022.html")
        ...     html = path.read_text(encoding="utf-8")
        >>> path.name, html.startswith("<!doctype html>")
        ('isis-2022.html', True)
        """
        from .report import write_report

        return write_report(self, path)

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write the result to one netCDF file (ArviZ), tables included; no pickle.

        The file is written to a temporary name and renamed, so an interrupted
        save never leaves a partial file.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists), e.g. ``"isis.nc"``.

        Returns
        -------
        pathlib.Path
            ``path``.

        See Also
        --------
        Reconciliation.load : Reads it back.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> import estimates as est
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = result.save(Path(tmp) / "isis.nc")
        ...     back = est.Reconciliation.load(path)
        >>> back.intervals.equals(result.intervals), back.diagnostics == result.diagnostics
        (True, True)
        """
        path = Path(path)
        tables = {
            "intervals": _table_to_json(self.intervals),
            "sources": _table_to_json(self.sources),
            "claims": _table_to_json(self.claims),
        }
        if self.influence_table is not None:
            tables["influence"] = _table_to_json(self.influence_table)
        payload = json.dumps(
            {"tables": tables, "diagnostics": self.diagnostics, "meta": self.meta}, default=_json_default
        )
        idata = self.idata
        post_attrs = dict(idata.posterior.attrs)
        idata.posterior.attrs["estimates_result"] = payload
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        os.close(fd)
        try:
            idata.to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        finally:
            idata.posterior.attrs.clear()
            idata.posterior.attrs.update(post_attrs)
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Reconciliation:
        """Read a result written by :meth:`save`.

        The tables, diagnostics, provenance and posterior come back as they
        were saved; nothing is sampled.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.

        Returns
        -------
        Reconciliation
            The tables, diagnostics, provenance and posterior as saved.

        See Also
        --------
        Reconciliation.save : Writes the file.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> import estimates as est
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     back = est.Reconciliation.load(result.save(Path(tmp) / "isis.nc"))
        >>> back.sources.equals(result.sources), back.meta["input_sha256"] == result.meta["input_sha256"]
        (True, True)
        """
        az = quiet_import("arviz")

        idata = az.from_netcdf(path, engine="h5netcdf")
        idata.load()
        payload = json.loads(idata.posterior.attrs.pop("estimates_result"))
        t = payload["tables"]
        return cls(
            intervals=_table_from_json(t["intervals"]),
            sources=_table_from_json(t["sources"]),
            claims=_table_from_json(t["claims"]),
            diagnostics=payload["diagnostics"],
            idata=idata,
            meta=payload["meta"],
            influence_table=_table_from_json(t["influence"]) if "influence" in t else None,
        )


def _convergence_line(d: dict[str, Any]) -> str:
    if d.get("approximate"):
        k = d.get("pareto_k", float("nan"))
        return f"APPROXIMATE ({d.get('sampler')}): Pareto k {k:.2f}; not for reported intervals."
    state = "converged" if d.get("converged") else "NOT converged (see the warning's hint)"
    return (
        f"Sampler {d.get('sampler')}: {state}: max R-hat {d.get('r_hat_max', float('nan')):.3f}, "
        f"min bulk ESS {d.get('ess_bulk_min', float('nan')):.0f}, {d.get('divergences', 0)} divergences, "
        f"{d.get('seconds', float('nan')):.1f} s."
    )


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows of text cells, left-aligned in columns, indented by two spaces."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _numbers_text(r: pd.Series) -> str:
    def num(x: float) -> str:
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"

    parts = [f"{k} {num(float(r[k]))}" for k in ("low", "high", "value") if k in r and pd.notna(r[k])]
    return ", ".join(parts)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return str(o)


def _table_to_json(df: pd.DataFrame) -> dict[str, Any]:
    """A table as JSON-able columns with their dtypes (object columns keep Python values)."""
    cols = {}
    for c in df.columns:
        s = df[c]
        # NaN stays NaN and None stays None (json keeps both), so object
        # columns come back as they were.
        vals = [_plain(v) for v in s.tolist()]
        cols[str(c)] = {"dtype": str(s.dtype), "values": vals}
    return {"columns": cols, "order": [str(c) for c in df.columns]}


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float):
        return v
    if isinstance(v, np.generic):
        return _json_default(v)
    if isinstance(v, (int, str, bool)):
        return v
    return str(v)


def _table_from_json(d: dict[str, Any]) -> pd.DataFrame:
    data = {}
    for c in d["order"]:
        spec = d["columns"][c]
        dtype = spec["dtype"]
        vals = spec["values"]
        if dtype in ("float64", "float32"):
            data[c] = pd.Series([np.nan if v is None else v for v in vals], dtype=dtype)
        elif dtype.startswith("int") or dtype == "bool":
            data[c] = pd.Series(vals, dtype=dtype)
        elif dtype in ("str", "string"):
            data[c] = pd.Series(vals, dtype=dtype)
        else:
            data[c] = pd.Series(vals, dtype=object)
    return pd.DataFrame(data)


def write_table_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a CSV to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
