"""The result of a reconciliation: plain tables, the InferenceData, save and load.

Summaries are vectorised over draws (no Python loop over cells or draws).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._deps import quiet_import
from .interpret import observed_number, simulate_statement
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
DIAGNOSTIC_KEYS = ["r_hat_max", "ess_bulk_min", "divergences", "converged", "sampler", "seconds"]


def _draws(idata: Any, name: str) -> np.ndarray:
    """Posterior draws of ``name`` as (n_draws, ...) with chains stacked."""
    a = np.asarray(idata.posterior[name].values)
    return a.reshape((-1,) + a.shape[2:])


def _quantiles(x: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, med, hi = np.quantile(x, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=0)
    return lo, med, hi


def summarise_intervals(st: Structure, idata: Any, prob: float) -> pd.DataFrame:
    """One row per (quantity, region, time); aggregates are sums of leaves draw by draw."""
    counts = np.exp(_draws(idata, "log_count"))
    lo, med, hi = _quantiles(counts, prob)
    out = st.cells[["quantity", "region", "time"]].copy()
    out["time"] = out["time"].astype(object)
    out["mean"] = counts.mean(axis=0)
    out["median"] = med
    out["sd"] = counts.std(axis=0, ddof=1) if counts.shape[0] > 1 else 0.0
    out["lower"] = lo
    out["upper"] = hi
    return out[INTERVAL_COLUMNS].reset_index(drop=True)


def summarise_sources(st: Structure, idata: Any, prob: float) -> pd.DataFrame:
    """One row per (quantity, source): bias factor and reliability with intervals."""
    bias = np.exp(_draws(idata, "log_bias"))
    rel = np.exp(_draws(idata, "log_reliability"))
    blo, bmed, bhi = _quantiles(bias, prob)
    rlo, rmed, rhi = _quantiles(rel, prob)
    out = st.sources[["quantity", "source", "n_claims"]].copy()
    out["bias"], out["bias_lower"], out["bias_upper"] = bmed, blo, bhi
    out["reliability"], out["reliability_lower"], out["reliability_upper"] = rmed, rlo, rhi
    return out[SOURCE_COLUMNS].reset_index(drop=True)


def summarise_claims(
    st: Structure, idata: Any, table: pd.DataFrame, prob: float, rng: np.random.Generator
) -> pd.DataFrame:
    """Add ``predicted_lower``, ``predicted_upper`` and ``tension`` to the claims table.

    The predicted interval is the posterior predictive interval of the number
    the claim's source would state (a range's centre, a bound's bound, a
    point's value; a ratio for relative claims). ``tension`` is the two-sided
    posterior predictive tail probability of the stated number (for a
    censored bound: twice the probability that the bound is violated, capped
    at 1); small means the claim does not fit the rest.
    """
    out = table.copy()
    out["predicted_lower"] = np.nan
    out["predicted_upper"] = np.nan
    out["tension"] = np.nan
    if len(st.claim_row) == 0:
        return out
    y, s = targets_numpy(st, _draws(idata, "log_count"), _draws(idata, "log_bias"), _draws(idata, "log_reliability"))
    shape, kind = st.claim_shape, st.claim_kind
    rep = simulate_statement(shape, kind, st.claim_a, st.claim_b, s, y, rng)
    obs = observed_number(shape, kind, st.claim_a, st.claim_b)
    lo, _, hi = _quantiles(rep, prob)
    p_below = (rep <= obs).mean(axis=0)
    p_above = (rep >= obs).mean(axis=0)
    tension = np.minimum(1.0, 2.0 * np.minimum(p_below, p_above))
    tension = np.where(shape == "lower", np.minimum(1.0, 2.0 * p_above), tension)
    tension = np.where(shape == "upper", np.minimum(1.0, 2.0 * p_below), tension)
    rows = st.claim_row
    out.loc[rows, "predicted_lower"] = np.exp(lo)
    out.loc[rows, "predicted_upper"] = np.exp(hi)
    out.loc[rows, "tension"] = tension
    return out


@dataclass
class Reconciliation:
    """What :func:`estimates.reconcile` returns.

    Attributes
    ----------
    intervals : DataFrame
        ``quantity, region, time, mean, median, sd, lower, upper`` (counts).
    sources : DataFrame
        ``quantity, source, n_claims, bias, bias_lower, bias_upper,
        reliability, reliability_lower, reliability_upper``.
    claims : DataFrame
        Every input row in input order with the interpretation, ``status``,
        ``predicted_lower``, ``predicted_upper`` and ``tension``.
    diagnostics : dict
        ``r_hat_max, ess_bulk_min, divergences, converged, sampler, seconds``.
    idata : arviz.InferenceData
        Posterior and sample stats.
    meta : dict
        Provenance: library version, options, input hash, notes.
    """

    intervals: pd.DataFrame
    sources: pd.DataFrame
    claims: pd.DataFrame
    diagnostics: dict[str, Any]
    idata: Any
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        d = self.diagnostics
        return (
            f"<Reconciliation: {len(self.claims)} claims, {len(self.intervals)} intervals, "
            f"{len(self.sources)} sources; sampler {d.get('sampler')}, "
            f"converged={d.get('converged')}>"
        )

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write the result to one netCDF file (ArviZ), tables included; no pickle.

        The file is written to a temporary name and renamed, so an interrupted
        save never leaves a partial file.

        Examples
        --------
        >>> # result.save("isis.nc"); est.Reconciliation.load("isis.nc")
        """
        path = Path(path)
        tables = {
            "intervals": _table_to_json(self.intervals),
            "sources": _table_to_json(self.sources),
            "claims": _table_to_json(self.claims),
        }
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
        """Read a result written by :meth:`save`."""
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
        )


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
