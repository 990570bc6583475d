"""The claims table: reading, validation, normalisation, times and hierarchy.

The output of this module is plain data (:class:`ClaimSet`): the caller's
rows as a new table with a ``status`` per row, and the normalised rows that
go on to interpretation and the model. The caller's DataFrame is never
modified.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import (
    ClaimError,
    CoverageError,
    EmptyClaimsError,
    HierarchyError,
    InvalidRangeError,
    MissingNumberError,
    NonPositiveCountError,
    OptionError,
    TimeOrderError,
    TimeParseError,
    UnknownKindError,
    UnknownRegionError,
)
from .interpret import KINDS, Interpretation
from .phrases import ClaimParseError, parse_claim

#: Columns of the claims table that the library reads (DESIGN section 3).
COLUMNS = (
    "region",
    "claim",
    "low",
    "high",
    "value",
    "kind",
    "since",
    "time",
    "source",
    "quantity",
    "coverage",
)
#: Provenance columns, carried through to ``result.claims`` untouched.
PROVENANCE = ("claim_id", "quote", "url")

DEFAULT_SOURCE = "unattributed"
DEFAULT_QUANTITY = "count"

ClaimsLike = pd.DataFrame | Sequence[Mapping[str, Any]] | str | os.PathLike


# --------------------------------------------------------------------------- input


def read_claims(claims: ClaimsLike) -> pd.DataFrame:
    """Return the claims as a new DataFrame (never the caller's object).

    Accepts a DataFrame, a list of dicts, or a path to a CSV file.

    Examples
    --------
    >>> read_claims([{"region": "Syria", "low": 6000, "high": 8000}]).shape
    (1, 3)
    """
    if isinstance(claims, pd.DataFrame):
        df = claims.copy(deep=True)
    elif isinstance(claims, (str, os.PathLike)):
        path = Path(claims)
        if not path.exists():
            raise EmptyClaimsError(
                f"claims file {str(path)!r} does not exist; pass a CSV path, a DataFrame or a list of dicts"
            )
        df = pd.read_csv(path)
    elif isinstance(claims, Sequence) and all(isinstance(r, Mapping) for r in claims):
        df = pd.DataFrame([dict(r) for r in claims])
    else:
        raise EmptyClaimsError(
            f"claims must be a DataFrame, a list of dicts or a CSV path, not {type(claims).__name__}"
        )
    if len(df) == 0:
        raise EmptyClaimsError("the claims table is empty; give at least one row with a region and a number")
    df = df.reset_index(drop=True)
    if "region" not in df.columns:
        raise EmptyClaimsError(
            f"the claims table has no 'region' column (columns: {', '.join(map(str, df.columns))}); "
            "every claim needs the region it is about"
        )
    numeric = [c for c in ("low", "high", "value", "claim") if c in df.columns]
    if not numeric:
        raise MissingNumberError(
            "the claims table has none of the columns 'claim', 'low', 'high', 'value'; "
            "give each statement as text in 'claim' or its numbers in 'low'/'high'/'value'"
        )
    return df


# --------------------------------------------------------------------------- hierarchy


@dataclass(frozen=True)
class Hierarchy:
    """Aggregates and their members, validated.

    Attributes
    ----------
    members : dict
        Aggregate name -> tuple of member names (members may be aggregates).
    """

    members: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, hierarchy: Mapping[str, Iterable[str]] | None) -> Hierarchy:
        """Validate a mapping ``{aggregate: [members]}``: no cycles, no empty aggregates."""
        if hierarchy is None:
            return cls({})
        if not isinstance(hierarchy, Mapping):
            raise HierarchyError(
                f"hierarchy must be a mapping of aggregate name to member names, not {type(hierarchy).__name__}"
            )
        members: dict[str, tuple[str, ...]] = {}
        for agg, mem in hierarchy.items():
            if not isinstance(agg, str) or not agg.strip():
                raise HierarchyError(f"hierarchy key {agg!r} is not a region name; use non-empty strings")
            if isinstance(mem, str) or not isinstance(mem, Iterable):
                raise HierarchyError(
                    f"hierarchy[{agg!r}] = {mem!r} must be a list of member names, e.g. ['Iraq', 'Syria']"
                )
            mem = tuple(m.strip() if isinstance(m, str) else m for m in mem)
            if len(mem) == 0:
                raise HierarchyError(f"aggregate {agg!r} has no members; list its members or remove it")
            for m in mem:
                if not isinstance(m, str) or not m.strip():
                    raise HierarchyError(f"aggregate {agg!r} has a member {m!r} that is not a region name")
            if len(set(mem)) != len(mem):
                raise HierarchyError(f"aggregate {agg!r} lists a member twice: {list(mem)!r}")
            if agg.strip() in members:
                raise HierarchyError(
                    f"aggregate {agg.strip()!r} is defined twice (names are compared without surrounding spaces)"
                )
            members[agg.strip()] = mem
        h = cls(members)
        h._check_cycles()
        return h

    def _check_cycles(self) -> None:
        state: dict[str, int] = {}

        def visit(node: str, path: list[str]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                cyc = path[path.index(node) :] + [node]
                raise HierarchyError(f"hierarchy has a cycle: {' -> '.join(cyc)}; an aggregate cannot contain itself")
            state[node] = 1
            for m in self.members.get(node, ()):
                visit(m, path + [node])
            state[node] = 2

        for agg in self.members:
            visit(agg, [])

    def is_aggregate(self, region: str) -> bool:
        return region in self.members

    def leaves(self, region: str) -> tuple[str, ...]:
        """Leaf regions under ``region`` (itself if it is a leaf), in first-seen order."""
        if region not in self.members:
            return (region,)
        out: list[str] = []
        for m in self.members[region]:
            for leaf in self.leaves(m):
                if leaf not in out:
                    out.append(leaf)
        return tuple(out)

    def descendants(self, region: str) -> tuple[str, ...]:
        """All regions under ``region`` (aggregates and leaves), excluding itself."""
        out: list[str] = []
        for m in self.members.get(region, ()):
            if m not in out:
                out.append(m)
            for d in self.descendants(m):
                if d not in out:
                    out.append(d)
        return tuple(out)

    def names(self) -> set[str]:
        out = set(self.members)
        for mem in self.members.values():
            out.update(mem)
        return out

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.members.items()}


# --------------------------------------------------------------------------- time

_YEAR = re.compile(r"^\d{4}$")
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")
_DECIMAL = re.compile(r"^[+-]?\d+\.\d*$")
_EPOCH = pd.Timestamp("1970-01-01")
_DAYS_PER_YEAR = 365.2425


def _decimal_year(ts: pd.Timestamp) -> float:
    return 1970.0 + (ts - _EPOCH) / pd.Timedelta(days=1) / _DAYS_PER_YEAR


def _period_position(p: pd.Period) -> float:
    start = p.start_time
    end = p.end_time
    return _decimal_year(start + (end - start) / 2)


def is_missing(v: Any) -> bool:
    """True for None, NaN, NA, NaT and blank strings."""
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip() == ""
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def parse_time(v: Any, *, numeric: bool) -> tuple[Any, float]:
    """Parse one time value into ``(label, position in decimal years)``.

    ``numeric=True`` when every time in the table is a number: labels stay
    numbers and positions are the numbers themselves, read as years. Otherwise
    strings are periods: ``"2022"`` (the year, positioned at its middle),
    ``"2022-04"`` (a month), ``"2022-04-15"`` (a day), ``"2022Q2"``; dates are
    days; whole numbers are years.

    Examples
    --------
    >>> parse_time("2022-04", numeric=False)[0]
    '2022-04'
    >>> round(parse_time("2022", numeric=False)[1], 2)
    2022.5
    """
    if numeric:
        x = float(v)
        if not math.isfinite(x):
            raise ValueError("not a finite number")
        label: Any = int(x) if x.is_integer() else x
        return label, x
    if isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "isoformat"):
        ts = pd.Timestamp(v)
        if ts is pd.NaT:
            raise ValueError("not a date")
        p = ts.to_period("D")
        return str(p), _period_position(p)
    if _is_number(v):
        x = float(v)
        if not x.is_integer():
            raise ValueError("a fractional number among dates; give all times as numbers or all as dates/periods")
        v = str(int(x))
    s = str(v).strip()
    if _YEAR.match(s):
        p = pd.Period(s, freq="Y")
    elif m := _MONTH.match(s):
        ts = pd.Timestamp(year=int(m.group(1)), month=int(m.group(2)), day=1)  # raises on month 13
        p = ts.to_period("M")
    elif m := _DAY.match(s):
        ts = pd.Timestamp(year=int(m.group(1)), month=int(m.group(2)), day=int(m.group(3)))
        p = ts.to_period("D")
    elif m := _QUARTER.match(s):
        p = pd.Period(year=int(m.group(1)), quarter=int(m.group(2)), freq="Q")
    elif _DECIMAL.match(s):
        raise ValueError("a fractional number among dates; give all times as numbers or all as dates/periods")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pandas' day-first guessing notice
            ts = pd.to_datetime(s, errors="coerce")
        if ts is pd.NaT or pd.isna(ts):
            raise ValueError("not a date or period")
        p = ts.to_period("D")
    return str(p), _period_position(p)


# --------------------------------------------------------------------------- normalisation


@dataclass
class ClaimSet:
    """Validated claims, ready for interpretation.

    Attributes
    ----------
    table : DataFrame
        One row per input row, in input order: every input column plus the
        interpreted ``kind, low, high, value, coverage, quantity, source`` and
        ``status``.
    used : DataFrame
        One row per usable claim: ``row`` (input position), ``quantity,
        region, source, kind, low, high, value, coverage, ratio, time_label,
        time_pos, since_label, since_pos``.
    hierarchy : Hierarchy
    """

    table: pd.DataFrame
    used: pd.DataFrame
    hierarchy: Hierarchy


def _context(rec: Mapping[str, Any]) -> str:
    parts = []
    if not is_missing(rec.get("region")):
        parts.append(f"region {str(rec.get('region'))!r}")
    for col in ("low", "high", "value"):
        if col in rec and not is_missing(rec[col]):
            parts.append(f"{col} {rec[col]!r}")
    if not is_missing(rec.get("source")):
        parts.append(f"source {str(rec.get('source'))!r}")
    return ", ".join(parts)


def _number(rec: Mapping[str, Any], col: str, i: int, ctx: str) -> float:
    v = rec.get(col)
    if is_missing(v):
        return math.nan
    if _is_number(v):
        x = float(v)
    else:
        s = str(v).strip().replace(",", "").replace("_", "")
        try:
            x = float(s)
        except ValueError:
            raise MissingNumberError(
                "is not a number",
                row=i,
                column=col,
                value=v,
                hint="write plain numbers such as 6000 (text statements go in the 'claim' column)",
                context=ctx,
            ) from None
    if not math.isfinite(x):
        raise MissingNumberError(
            "is not a finite number",
            row=i,
            column=col,
            value=v,
            hint="give a positive number or leave it empty",
            context=ctx,
        )
    return x


def _resolve_region(name: Any, i: int, hierarchy: Hierarchy, ctx: str) -> str:
    if is_missing(name):
        raise UnknownRegionError(
            "is missing",
            row=i,
            column="region",
            value=name,
            hint="every claim needs the region it is about",
            context=ctx,
        )
    region = str(name).strip()
    known = hierarchy.names()
    if known and region not in known:
        folded = {k.casefold().replace(" ", ""): k for k in known}
        hit = folded.get(region.casefold().replace(" ", ""))
        if hit is not None:
            raise UnknownRegionError(
                "does not match the hierarchy exactly",
                row=i,
                column="region",
                value=name,
                hint=f"did you mean {hit!r}? Region names are matched exactly",
                context=ctx,
            )
    return region


def _read_text(rec: Mapping[str, Any], i: int, ctx: str, decimal: str | None) -> dict[str, Any] | None:
    """The parsed ``claim`` text of a row, or None when the row has none."""
    text = rec.get("claim")
    if is_missing(text):
        return None
    try:
        return parse_claim(str(text), decimal=decimal)
    except ClaimParseError as exc:
        raise ClaimParseError(
            f"cannot be read: {exc.reason}",
            row=i,
            column="claim",
            value=text,
            hint=exc.hint or "rephrase it, or give the numbers in low/high/value",
            context=ctx,
        ) from None


def _interpret_row(
    rec: Mapping[str, Any], i: int, interp: Interpretation, ctx: str, decimal: str | None = None
) -> tuple[str, float, float, float, float, dict[str, Any] | None]:
    """Kind and numbers of one row: ``(kind, low, high, value, coverage, parsed text)``."""
    low = _number(rec, "low", i, ctx)
    high = _number(rec, "high", i, ctx)
    value = _number(rec, "value", i, ctx)
    parsed = _read_text(rec, i, ctx, decimal)
    if parsed is not None:
        if parsed["ratio"] and is_missing(rec.get("since")):
            raise ClaimParseError(
                f"is a relative claim ({parsed['hedge']!r}) but 'since' is empty",
                row=i,
                column="claim",
                value=rec.get("claim"),
                hint="give the earlier time the change is measured from in 'since'",
                context=ctx,
            )
        if low != low and high != high and value != value:
            low, high, value = parsed["low"], parsed["high"], parsed["value"]
            if is_missing(rec.get("kind")):
                rec = {**rec, "kind": parsed["kind"]}
        else:
            _check_agreement(rec, parsed, (low, high, value), i, ctx)
    for col, x in (("low", low), ("high", high), ("value", value)):
        if x == x and x <= 0:
            raise NonPositiveCountError(
                "must be positive",
                row=i,
                column=col if not is_missing(rec.get(col)) else "claim",
                value=rec.get(col) if not is_missing(rec.get(col)) else rec.get("claim"),  # the text it was read from
                hint="counts and ratios are positive; for 'no change' use a ratio of 1 with 'since'",
                context=ctx,
            )
    kind_raw = rec.get("kind")
    if is_missing(kind_raw):
        kind = None
    else:
        kind = str(kind_raw).strip().lower().replace("-", "_").replace(" ", "_")
        if kind not in KINDS:
            raise UnknownKindError(
                "is not a known kind",
                row=i,
                column="kind",
                value=kind_raw,
                hint=f"use one of {', '.join(KINDS)} or leave it empty to infer it from low/high/value",
                context=ctx,
            )
    has_l, has_h, has_v = low == low, high == high, value == value
    if kind is None:
        if has_l and has_h:
            kind = "exact" if low == high and not has_v else "range"
        elif has_l:
            kind = "at_least"
        elif has_h:
            kind = "at_most"
        elif has_v:
            kind = "about"
        else:
            raise MissingNumberError(
                "low, high and value are all empty",
                row=i,
                column="value",
                value=rec.get("value"),
                hint="give low and high for a range, low for 'at least', high for 'at most', or value",
                context=ctx,
            )
    # numbers each kind needs
    if kind == "range":
        for col, ok in (("low", has_l), ("high", has_h)):
            if not ok:
                raise MissingNumberError(
                    "is missing for a range claim",
                    row=i,
                    column=col,
                    value=rec.get(col),
                    hint="a range needs both low and high",
                    context=ctx,
                )
    elif kind == "at_least":
        if not has_l:
            if not has_v:
                raise MissingNumberError(
                    "is missing for an at_least claim",
                    row=i,
                    column="low",
                    value=rec.get("low"),
                    hint="give the bound in low",
                    context=ctx,
                )
            low = value
        high = math.nan
    elif kind == "at_most":
        if not has_h:
            if not has_v:
                raise MissingNumberError(
                    "is missing for an at_most claim",
                    row=i,
                    column="high",
                    value=rec.get("high"),
                    hint="give the bound in high",
                    context=ctx,
                )
            high = value
        low = math.nan
    else:  # about, exact
        if not has_v:
            if has_l and has_h and low == high:
                value = low
            else:
                raise MissingNumberError(
                    f"is missing for an {kind} claim",
                    row=i,
                    column="value",
                    value=rec.get("value"),
                    hint="give the number in value",
                    context=ctx,
                )
        low = high = math.nan
    if kind == "range" and high < low:
        raise InvalidRangeError(
            f"is below low ({low:,.6g})",
            row=i,
            column="high",
            value=rec.get("high"),
            hint="swap low and high, or fix the typo",
            context=ctx,
        )
    if kind == "range" and has_v and not (low <= value <= high):
        raise InvalidRangeError(
            f"is outside the range [{low:,.6g}, {high:,.6g}]",
            row=i,
            column="value",
            value=rec.get("value"),
            hint="the best value of a low-best-high claim must lie between low and high",
            context=ctx,
        )
    cov = rec.get("coverage")
    if is_missing(cov) or kind != "range":
        coverage = interp.coverage  # coverage only means something for a range
    else:
        try:
            coverage = float(cov)
        except (TypeError, ValueError):
            raise CoverageError(
                "is not a number",
                row=i,
                column="coverage",
                value=cov,
                hint="coverage is the probability the range was meant to hold, e.g. 0.95",
                context=ctx,
            ) from None
        if not 0 < coverage < 1:
            raise CoverageError(
                "is outside (0, 1)",
                row=i,
                column="coverage",
                value=cov,
                hint="coverage is the probability the range was meant to hold, e.g. 0.95 for a 95% interval",
                context=ctx,
            )
    return kind, low, high, value, coverage, parsed


def _check_agreement(
    rec: Mapping[str, Any], parsed: dict[str, Any], numbers: tuple[float, float, float], i: int, ctx: str
) -> None:
    """A row with both text and numbers: they must say the same."""
    said = (parsed["low"], parsed["high"], parsed["value"])
    same = all(
        (a != a and b != b) or (a == a and b == b and math.isclose(a, b, rel_tol=1e-9))
        for a, b in zip(said, numbers, strict=True)
    )
    kind = rec.get("kind")
    if same and (is_missing(kind) or str(kind).strip().lower() == parsed["kind"]):
        return
    fmt = ", ".join(f"{c}={x:,g}" for c, x in zip(("low", "high", "value"), numbers, strict=True) if x == x)
    reading = ", ".join(f"{c}={x:,g}" for c, x in zip(("low", "high", "value"), said, strict=True) if x == x)
    raise ClaimParseError(
        f"reads as {parsed['kind']} ({reading}) but the row's numbers say {fmt or 'nothing'}"
        + ("" if is_missing(kind) else f" with kind {kind!r}"),
        row=i,
        column="claim",
        value=rec.get("claim"),
        hint="make the text and the numbers agree, or leave low/high/value empty to use the text",
        context=ctx,
    )


def normalise(
    claims: ClaimsLike,
    *,
    hierarchy: Mapping[str, Iterable[str]] | Hierarchy | None = None,
    interpretation: Interpretation | None = None,
    errors: str = "raise",
    decimal: str | None = None,
) -> ClaimSet:
    """Validate and normalise a claims table.

    Parameters
    ----------
    claims : DataFrame, list of dict or path
        The claims table of DESIGN section 3.
    hierarchy : mapping, optional
        ``{aggregate: [members]}``.
    interpretation : Interpretation, optional
        Defaults (e.g. the coverage of ranges without one).
    errors : {"raise", "skip"}
        ``"raise"`` stops at the first bad row; ``"skip"`` keeps going and marks
        the row ``rejected: <reason>``.
    decimal : {None, ".", ","}
        Decimal mark of numbers written in the ``claim`` text (see
        :func:`estimates.parse_claim`).

    Returns
    -------
    ClaimSet

    Examples
    --------
    >>> cs = normalise([{"region": "Syria", "low": 6000, "high": 8000}])
    >>> cs.used[["region", "kind", "low", "high"]].to_dict("records")
    [{'region': 'Syria', 'kind': 'range', 'low': 6000.0, 'high': 8000.0}]
    """
    if errors not in ("raise", "skip"):
        raise OptionError(f"errors={errors!r} is not supported; use 'raise' or 'skip'")
    interp = interpretation or Interpretation()
    hier = hierarchy if isinstance(hierarchy, Hierarchy) else Hierarchy.from_mapping(hierarchy)
    df = read_claims(claims)
    records = df.to_dict("records")
    n = len(records)

    # Numeric time axis only if every given time/since is a number.
    given = [r.get(c) for r in records for c in ("time", "since") if c in r and not is_missing(r.get(c))]
    numeric_time = bool(given) and all(_is_number(v) for v in given)

    status = ["used"] * n
    kinds: list[Any] = [None] * n
    lows = [math.nan] * n
    highs = [math.nan] * n
    values = [math.nan] * n
    covs = [math.nan] * n
    quantities: list[str] = [DEFAULT_QUANTITY] * n
    sources: list[str] = [DEFAULT_SOURCE] * n
    hedges: list[Any] = [None] * n
    units: list[Any] = [None] * n
    used_rows: list[dict[str, Any]] = []

    for i, rec in enumerate(records):
        ctx = _context(rec)
        q = rec.get("quantity")
        quantities[i] = DEFAULT_QUANTITY if is_missing(q) else str(q).strip()
        s = rec.get("source")
        sources[i] = DEFAULT_SOURCE if is_missing(s) else str(s).strip()
        try:
            region = _resolve_region(rec.get("region"), i, hier, ctx)
            kind, low, high, value, coverage, parsed = _interpret_row(rec, i, interp, ctx, decimal)
            if parsed is not None:
                hedges[i], units[i] = parsed["hedge"], parsed["unit"]
            kinds[i], lows[i], highs[i], values[i], covs[i] = kind, low, high, value, coverage
            tl, tp = None, math.nan
            sl, sp = None, math.nan
            for col in ("time", "since"):
                v = rec.get(col)
                if is_missing(v):
                    continue
                try:
                    lab, pos = parse_time(v, numeric=numeric_time)
                except (ValueError, TypeError, OverflowError) as exc:
                    raise TimeParseError(
                        f"cannot be read as a time ({exc})",
                        row=i,
                        column=col,
                        value=v,
                        hint="use a date, a year such as '2022', a month such as '2022-04', or a number",
                        context=ctx,
                    ) from None
                if col == "time":
                    tl, tp = lab, pos
                else:
                    sl, sp = lab, pos
            if sl is not None and tl is None:
                raise TimeParseError(
                    "is given without a time",
                    row=i,
                    column="since",
                    value=rec.get("since"),
                    hint="a relative claim compares N(time) with N(since): give both",
                    context=ctx,
                )
            if sl is not None and not sp < tp:
                raise TimeOrderError(
                    f"is not earlier than time ({rec.get('time')!r})",
                    row=i,
                    column="since",
                    value=rec.get("since"),
                    hint="'since' is the earlier time of a change, e.g. since='2021-08', time='2022-02'",
                    context=ctx,
                )
        except ClaimError as exc:
            if errors == "raise":
                raise
            status[i] = f"rejected: {exc.reason if exc.column is None else exc.column + ' ' + exc.reason}"
            continue
        used_rows.append(
            dict(
                row=i,
                quantity=quantities[i],
                region=region,
                source=sources[i],
                kind=kind,
                low=low,
                high=high,
                value=value,
                coverage=coverage,
                ratio=sl is not None,
                time_label=tl,
                time_pos=tp,
                since_label=sl,
                since_pos=sp,
            )
        )

    # A quantity with some dated and some undated claims is ambiguous.
    by_q: dict[str, list[dict[str, Any]]] = {}
    for r in used_rows:
        by_q.setdefault(r["quantity"], []).append(r)
    drop: set[int] = set()
    for q, rows in by_q.items():
        dated = [r for r in rows if r["time_label"] is not None]
        if dated and len(dated) < len(rows):
            first_dated = dated[0]
            for r in rows:
                if r["time_label"] is not None:
                    continue
                exc = TimeParseError(
                    f"is missing while other claims of quantity {q!r} have one "
                    f"(e.g. claim {first_dated['row']}: {first_dated['time_label']!r})",
                    row=r["row"],
                    column="time",
                    value=records[r["row"]].get("time"),
                    hint="give every claim of a quantity a time, or none",
                    context=_context(records[r["row"]]),
                )
                if errors == "raise":
                    raise exc
                status[r["row"]] = f"rejected: time {exc.reason}"
                drop.add(r["row"])
    used_rows = [r for r in used_rows if r["row"] not in drop]

    table = df.copy()
    table["quantity"] = quantities
    table["source"] = sources
    table["kind"] = pd.Series(kinds, dtype=object)
    table["low"] = np.asarray(lows, dtype=float)
    table["high"] = np.asarray(highs, dtype=float)
    table["value"] = np.asarray(values, dtype=float)
    # rejected rows keep the numbers they came with (their status says what is wrong)
    for col in ("low", "high", "value"):
        if col in df.columns:
            original = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
            rejected = np.array([st != "used" for st in status])
            table[col] = np.where(rejected, original, table[col].to_numpy(dtype=float))
    table["coverage"] = np.where(table["kind"] == "range", np.asarray(covs, dtype=float), np.nan)
    if "claim" in table.columns:
        table["hedge"] = pd.Series(hedges, dtype=object)
        table["unit"] = pd.Series(units, dtype=object)
    table["status"] = pd.Series(status, dtype=object)

    if not used_rows:
        reasons = "; ".join(f"claim {i}: {s}" for i, s in enumerate(status))
        raise EmptyClaimsError(f"no usable claim is left ({reasons})")

    # Built column by column with explicit dtypes: pandas' string inference
    # would turn a missing label (None) into NaN and NaN into a period.
    object_cols = ("time_label", "since_label", "kind", "quantity", "region", "source")
    used = pd.DataFrame(
        {
            col: pd.Series([r[col] for r in used_rows], dtype=object if col in object_cols else None)
            for col in used_rows[0]
        }
    )
    return ClaimSet(table=table, used=used, hierarchy=hier)
