"""Figures of a :class:`~estimates.results.Reconciliation`.

Three views, each a function taking the result first and returning the
matplotlib ``Axes`` it drew on:

- :func:`plot_claims`: the claims about one (quantity, region, time) cell
  beside the posterior interval of that cell;
- :func:`plot_timeline`: the posterior of one region over time, with its
  claims overlaid;
- :func:`plot_sources`: each source's bias factor.

Claims are drawn the same way everywhere: a bar for a range (low to high), an
arrow for a one-sided bound (from the bound, pointing the way the claim
allows), a marker for a point (``o`` for "about", a diamond for an exact
count); coloured by source, one colour per source for the whole result.
Flagged claims (leave-one-out ``tension`` below
:data:`estimates.results.TENSION_THRESHOLD`) get a red outline and their
tension written beside them. Relative claims (``since`` given) bound a ratio
of two counts, not a count, so they are left out of these figures and a note
on the axes says how many.

Every claim's artist has the gid ``claim:<row>`` (its row in
``result.claims``), every flag annotation ``flag:<row>``, so a figure can be
checked by counting them.

With ``ax=None`` a new figure is made with :mod:`matplotlib.pyplot` (so it
shows in a notebook); nothing here calls ``plt.show``. To draw without
pyplot's global state (a script, a server), pass the ``ax`` of a
``matplotlib.figure.Figure`` you made yourself, as :mod:`estimates.report`
does. matplotlib is imported on first use, not with ``estimates``.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .claims import is_missing, parse_time
from .errors import OptionError
from .results import TENSION_THRESHOLD

#: Marker of a point claim, by kind.
POINT_MARKERS = {"about": "o", "exact": "D"}
#: Words for the legend, by kind.
KIND_WORDS = {
    "range": "range (low to high)",
    "at_least": "at least (arrow from the bound)",
    "at_most": "at most (arrow from the bound)",
    "about": "about",
    "exact": "exact count",
}
FLAG_COLOUR = "#d62728"
BAND_COLOUR = "0.55"


# --------------------------------------------------------------------------- small helpers
def _key(v: Any) -> str | None:
    """A comparable key for a region, quantity or time label (2018, 2018.0 and "2018" agree)."""
    if is_missing(v):
        return None
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        x = float(v)
        return str(int(x)) if x.is_integer() else repr(x)
    return str(v).strip()


def _time_key(v: Any) -> str | None:
    """:func:`_key` of a time as the claims table would label it (None if it is not a time)."""
    try:
        return _key(parse_time(v, numeric=False)[0])
    except (ValueError, TypeError):
        return None


def _float(v: Any) -> float:
    """A number from a table cell; NaN for None, blanks and text."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _fmt_count(x: float) -> str:
    if not math.isfinite(x):
        return ""
    if abs(x) >= 1:
        return f"{x:,.0f}" if abs(x - round(x)) < 1e-9 or abs(x) >= 100 else f"{x:,.1f}"
    return f"{x:.2g}"


def _fmt_tension(t: float) -> str:
    """Two significant digits, so a flagged 0.0097 never reads as "0.010" beside a "< 0.01" legend."""
    return "< 0.001" if t < 0.001 else f"{t:.2g}"


def _flagged(claims: pd.DataFrame) -> pd.Series:
    """``claims["flagged"]`` when the result has it, else ``tension < TENSION_THRESHOLD``."""
    if "flagged" in claims:
        return claims["flagged"].fillna(False).astype(bool)
    if "tension" in claims:
        return pd.to_numeric(claims["tension"], errors="coerce").lt(TENSION_THRESHOLD)
    return pd.Series(False, index=claims.index)


def _column(df: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    return df[name] if name in df else pd.Series(default, index=df.index, dtype=object)


def _prob(result: Any) -> float:
    return float(result.meta.get("options", {}).get("prob", 0.9))


def _claim_table(result: Any) -> pd.DataFrame:
    """The claims with cell keys: ``q, r, t`` keys, ``relative``, ``used``, ``flagged``.

    Times are read the way :func:`estimates.claims.normalise` reads them, so
    a claim's ``"2022-4"`` finds the cell labelled ``"2022-04"``.
    """
    c = result.claims
    times = _column(c, "time")
    since = _column(c, "since")
    given = [v for v in list(times) + list(since) if not is_missing(v)]
    numeric = bool(given) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in given)

    def time_key(v: Any) -> str | None:
        if is_missing(v):
            return None
        try:
            return _key(parse_time(v, numeric=numeric)[0])
        except (ValueError, TypeError, OverflowError):
            return _key(v)

    out = pd.DataFrame(index=c.index)
    out["q"] = [_key(v) or "count" for v in _column(c, "quantity")]
    out["r"] = [_key(v) for v in _column(c, "region")]
    out["t"] = [time_key(v) for v in times]
    out["relative"] = [not is_missing(v) for v in since]
    out["used"] = _column(c, "status", "used").astype(str).eq("used")
    out["flagged"] = _flagged(c)
    return out


def _interval_keys(result: Any) -> pd.DataFrame:
    iv = result.intervals
    return pd.DataFrame(
        {
            "q": [_key(v) for v in iv["quantity"]],
            "r": [_key(v) for v in iv["region"]],
            "t": [_key(v) for v in iv["time"]],
        },
        index=iv.index,
    )


def _choices(values: Sequence[Any]) -> str:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(repr(v), None)
    return ", ".join(seen)


def _select(result: Any, quantity: Any, region: Any, time: Any, *, by_time: bool) -> tuple[Any, ...]:
    """Check the requested quantity/region/time and fill in the ones left as None.

    Among several possible cells (or regions, ``by_time=False``), the one
    with the most used, non-relative claims is chosen; ties go to the first
    in ``result.intervals`` order. Returns the positional rows of
    ``result.intervals`` that make up the choice.
    """
    iv = result.intervals
    keys = _interval_keys(result)
    mask = np.ones(len(iv), dtype=bool)
    for name, want, col in (("quantity", quantity, "q"), ("region", region, "r"), ("time", time, "t")):
        if name == "time" and not by_time:
            continue
        if want is None:
            continue
        hit = mask & (keys[col] == _key(want)).to_numpy()
        if name == "time" and not hit.any():  # "2022-2" names the period labelled "2022-02"
            hit = mask & (keys[col] == _time_key(want)).to_numpy()
        if not hit.any():
            where = f" for {', '.join(_described(iv, mask, name))}" if not mask.all() else ""
            raise OptionError(f"unknown {name} {want!r}{where}; choose one of: {_choices(iv.loc[mask, name].tolist())}")
        mask = hit
    if not mask.any():  # pragma: no cover - an empty intervals table
        raise OptionError("the result has no intervals to plot")
    cl = _claim_table(result)
    counted = cl[cl["used"] & ~cl["relative"]]
    group_cols = ["q", "r", "t"] if by_time else ["q", "r"]
    per_group = Counter(tuple(v) for v in counted[group_cols].itertuples(index=False))
    best, best_n = None, -1
    for i in np.flatnonzero(mask):
        g = tuple(keys.iloc[i][group_cols])
        n = per_group.get(g, 0)
        if n > best_n:
            best, best_n = g, n
    assert best is not None
    sel = mask.copy()
    for col, v in zip(group_cols, best, strict=True):
        sel &= (keys[col] == v).to_numpy() if v is not None else keys[col].isna().to_numpy()
    return tuple(np.flatnonzero(sel))


def _described(iv: pd.DataFrame, mask: np.ndarray, name: str) -> list[str]:
    parts = []
    for col in ("quantity", "region"):
        if col == name:
            break
        vals = iv.loc[mask, col].unique()
        if len(vals) == 1:
            parts.append(f"{col} {vals[0]!r}")
    return parts


def _claims_in(result: Any, q: str | None, r: str | None, t: Any = ..., relative: bool = False) -> list[int]:
    """Row labels of the used claims of a region (and time), non-relative unless ``relative``."""
    cl = _claim_table(result)
    m = cl["used"] & (cl["q"] == q) & (cl["r"] == r) & (cl["relative"] == relative)
    if t is not ...:
        m &= (cl["t"] == t) if t is not None else cl["t"].isna()
    return list(cl.index[m])


def _source_colours(result: Any) -> dict[str, Any]:
    """One colour per source, the same in every figure of a result."""
    from matplotlib import colormaps

    names: dict[str, None] = {}
    for s in list(_column(result.sources, "source")) + list(_column(result.claims, "source")):
        names.setdefault(_key(s) or "unattributed", None)
    # tab10 without its red (kept for flags) and grey (the posterior bands),
    # then the paler tab20 versions of the same hues
    hues = [0, 1, 2, 4, 5, 6, 8, 9]
    palette = [colormaps["tab10"](i) for i in hues] + [colormaps["tab20"](2 * i + 1) for i in hues]
    return {s: palette[i % len(palette)] for i, s in enumerate(names)}


def _claim_text(row: pd.Series) -> str:
    """The claim's words for an axis label: wrapped in two lines of 30 characters at most."""
    return "\n".join(textwrap.wrap(claim_words(row), 30, max_lines=2, placeholder=" \u2026"))


def claim_words(row: pd.Series) -> str:
    """A claim's text as given, or else its numbers in words ("at least 4,000")."""
    text = row.get("claim")
    if not is_missing(text):
        s = " ".join(str(text).split())
    else:
        kind = row.get("kind")
        lo, hi, val = (_float(row.get(c)) for c in ("low", "high", "value"))
        s = {
            "range": f"{_fmt_count(lo)} to {_fmt_count(hi)}",
            "at_least": f"at least {_fmt_count(lo)}",
            "at_most": f"at most {_fmt_count(hi)}",
            "about": f"about {_fmt_count(val)}",
        }.get(str(kind), _fmt_count(val))
    return s


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1].rstrip() + "\u2026"


def _claim_span(row: pd.Series) -> tuple[float, float]:
    """The numbers a claim states, for axis limits."""
    vals = [_float(row.get(c)) for c in ("low", "high", "value")]
    vals = [v for v in vals if math.isfinite(v) and v > 0]
    return (min(vals), max(vals)) if vals else (math.nan, math.nan)


def _draw_claim(
    ax: Any, row_label: int, row: pd.Series, at: float, colour: Any, arrow: float, *, vertical: bool
) -> tuple[Any, float]:
    """Draw one claim at ``at`` on the category axis; return its artist and its far end on the count axis.

    ``arrow`` is the multiplicative length of a bound's arrow.
    """
    import matplotlib.patheffects as pe

    kind = str(row.get("kind"))
    lo, hi, val = (_float(row.get(c)) for c in ("low", "high", "value"))
    if kind == "range":
        counts, marker, every = [lo, hi], "|" if not vertical else "_", None
    elif kind == "at_least":
        counts, marker, every = [lo, lo * arrow], "^" if vertical else ">", [1]
    elif kind == "at_most":
        counts, marker, every = [hi, hi / arrow], "v" if vertical else "<", [1]
    else:
        v = val if math.isfinite(val) else (lo if math.isfinite(lo) else hi)
        counts, marker, every = [v], POINT_MARKERS.get(kind, "o"), None
    pos = [at] * len(counts)
    xs, ys = (pos, counts) if vertical else (counts, pos)
    flagged = bool(row.get("_flagged", False))
    point = len(counts) == 1
    # a flagged range gets a red halo; a flagged point a red ring around it, so its source colour still shows
    effects = [pe.Stroke(linewidth=7, foreground=FLAG_COLOUR), pe.Normal()] if flagged and not point else None
    if flagged and point:
        (ring,) = ax.plot(
            xs,
            ys,
            linestyle="none",
            marker="o",
            markersize=17,
            markerfacecolor="none",
            markeredgecolor=FLAG_COLOUR,
            markeredgewidth=2.5,
            zorder=3.9,
        )
        ring.set_gid(f"flag-ring:{row_label}")
    (line,) = ax.plot(
        xs,
        ys,
        color=colour,
        linewidth=3,
        marker=marker,
        markersize=11 if len(counts) > 1 else 9,
        markeredgewidth=2.5 if len(counts) > 1 else 1.5,
        markeredgecolor=colour,
        markevery=every,
        solid_capstyle="butt",
        zorder=4,
        path_effects=effects,
    )
    line.set_gid(f"claim:{row_label}")
    far = max(counts) if kind != "at_most" else min(counts)
    return line, far


def _annotate_flag(ax: Any, row_label: int, tension: float, xy: tuple[float, float], *, vertical: bool) -> None:
    text = f"tension {_fmt_tension(tension)}" if math.isfinite(tension) else "flagged"
    ann = ax.annotate(
        text,
        xy=xy,
        xytext=(0, 11) if vertical else (12, 0),
        textcoords="offset points",
        ha="center" if vertical else "left",
        va="bottom" if vertical else "center",
        color=FLAG_COLOUR,
        fontsize=8.5,
        fontweight="bold",
        zorder=5,
    )
    ann.set_gid(f"flag:{row_label}")


def _arrow_factor(lo: float, hi: float) -> float:
    """Length of a bound's arrow: a fifth of the plotted span (log scale), at least x1.3."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0:
        return 1.5
    return float(max(1.3, (hi / lo) ** 0.2))


def _nice_log_ticks(lo: float, hi: float) -> list[float]:
    """3 to about 8 ticks between ``lo`` and ``hi`` at 1-2-5 style values, whatever the span."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi <= lo:
        return []
    candidates = [
        (1.0,),
        (1.0, 3.0),
        (1.0, 2.0, 5.0),
        (1.0, 2.0, 3.0, 5.0, 7.0),
        (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0),
        (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0),
    ]
    d0, d1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks: list[float] = []
    for subs in candidates:
        ticks = [float(s * 10.0**d) for d in range(d0, d1 + 1) for s in subs]
        ticks = [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
        if len(ticks) >= 4:
            break
    if len(ticks) > 9:
        ticks = ticks[:: math.ceil(len(ticks) / 8)]
    return ticks


def _log_count_axis(axis: Any, fmt: Any = _fmt_count) -> None:
    """A log axis with plain, readable numbers (``5,000  10,000  20,000``) at any span."""
    from matplotlib.ticker import FuncFormatter, Locator, NullFormatter

    class _Nice(Locator):
        def __call__(self) -> list[float]:
            lo, hi = sorted(self.axis.get_view_interval())
            return _nice_log_ticks(lo, hi)

    axis.set_major_locator(_Nice())
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: fmt(x)))
    axis.set_minor_formatter(NullFormatter())


#: Figure size of :func:`plot_timeline` (inches).
TIMELINE_FIGSIZE = (8.0, 5.0)


def claims_figsize(n_claims: int) -> tuple[float, float]:
    """Figure size (inches) :func:`plot_claims` uses for ``n_claims`` rows."""
    return (8.0, 2.9 + 0.45 * (n_claims + 1))


def sources_figsize(n_sources: int) -> tuple[float, float]:
    """Figure size (inches) :func:`plot_sources` uses for ``n_sources`` rows."""
    return (8.0, 1.9 + 0.45 * max(n_sources, 1))


def _new_axes(ax: Any, size: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _fig, new = plt.subplots(figsize=size, layout="constrained")
    return new


#: Points below the axes where the note (and then the legend) starts: under
#: the tick labels and the axis label, whatever the height of the axes.
_BELOW_PT = 38.0
_NOTE_PT = 16.0


def _note_below(ax: Any, text: str) -> None:
    if not text:
        return
    note = ax.annotate(
        text,
        xy=(0, 0),
        xycoords="axes fraction",
        xytext=(0, -_BELOW_PT),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=8.5,
        color="0.3",
        style="italic",
        annotation_clip=False,
    )
    note.set_gid("note")


def _relative_note(n: int) -> str:
    if n == 0:
        return ""
    return f"{n} relative claim{'s' if n != 1 else ''} not shown (a ratio, not a count)"


def _legend_below(ax: Any, handles: list[Any], *, after_note: bool) -> None:
    """The legend under the axes (and under the note, if any), offset in points, not axes fractions."""
    if not handles:
        return
    from matplotlib.transforms import ScaledTranslation

    below = _BELOW_PT + (_NOTE_PT if after_note else 0.0)
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.0, 0.0),
        bbox_transform=ax.transAxes + ScaledTranslation(0, -below / 72, ax.figure.dpi_scale_trans),
        ncol=2 if len(handles) <= 8 else 3,
        fontsize=8.5,
        frameon=False,
        borderaxespad=0.0,
    )


def _kind_handles(kinds: list[str], *, vertical: bool) -> list[Any]:
    from matplotlib.lines import Line2D

    out = []
    for kind in ("range", "at_least", "at_most", "about", "exact"):
        if kind not in kinds:
            continue
        if kind == "range" and vertical:
            h = Line2D([], [], color="0.35", lw=0, marker="|", markersize=14, mew=3)
        elif kind == "range":
            h = Line2D([], [], color="0.35", lw=3, marker="|", markersize=10, mew=2.5)
        elif kind in ("at_least", "at_most"):
            m = {"at_least": "^" if vertical else ">", "at_most": "v" if vertical else "<"}[kind]
            h = Line2D([], [], color="0.35", lw=3, marker=m, markersize=9)
        else:
            h = Line2D([], [], color="0.35", lw=0, marker=POINT_MARKERS[kind], markersize=8)
        h.set_label(KIND_WORDS[kind])
        out.append(h)
    return out


def _source_handles(sources: list[str], colours: dict[str, Any]) -> list[Any]:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=colours[s], lw=6, label=s) for s in dict.fromkeys(sources)]


def _flag_handle(any_flagged: bool) -> list[Any]:
    if not any_flagged:
        return []
    import matplotlib.patheffects as pe
    from matplotlib.lines import Line2D

    h = Line2D(
        [],
        [],
        color="0.35",
        lw=3,
        path_effects=[pe.Stroke(linewidth=7, foreground=FLAG_COLOUR), pe.Normal()],
        label=f"flagged: tension < {TENSION_THRESHOLD:g} (does not fit the rest)",
    )
    return [h]


def _wrap(title: str, width: int = 55) -> str:
    return textwrap.fill(title, width)


def _title_time(t: Any) -> str:
    return "" if is_missing(t) else f", {t}"


# --------------------------------------------------------------------------- plot_claims
def plot_claims(
    result: Any,
    region: str | None = None,
    time: Any = None,
    *,
    quantity: str | None = None,
    ax: Any = None,
) -> Any:
    """Draw each claim about one region and time beside the posterior interval there.

    One row per claim (used, non-relative, of that quantity, region and
    time), labelled with its text: ranges as bars, one-sided bounds as arrows
    from the bound, points as markers, coloured by source. The top row and
    the grey band are the posterior median and ``prob`` interval of the
    count. Flagged claims have a red outline and their tension beside them.
    Relative claims (``since`` given) bound a ratio, not this count, and are
    left out with a note under the axes.

    Parameters
    ----------
    result : Reconciliation
        What :func:`estimates.reconcile` returned.
    region : str, optional
        The region of the cell to draw. Left as None, a value is filled in:
        the only one there is, or else the one whose cell has the most claims
        (ties: the first in ``result.intervals``).
    time : str or number, optional
        The period of the cell, as labelled in ``result.intervals["time"]``
        (e.g. ``"2022-02"``); chosen the same way when None.
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
    plot_timeline : The claims of one region over time.
    estimates.Reconciliation.plot_claims : The same, as a method.

    Examples
    --------
    >>> import estimates as est
    >>> result = est.reconcile(est.load_example("isis-2022"))  # doctest: +SKIP
    >>> ax = est.plot_claims(result, "Iraq and Syria", "2022-02")  # doctest: +SKIP
    >>> ax.figure.savefig("iraq-syria.png")  # doctest: +SKIP

    The test suite supplies that fit as ``result``; here the axes come from
    a figure made without pyplot, so nothing is shown:

    >>> from matplotlib.figure import Figure
    >>> ax = est.plot_claims(result, "Iraq and Syria", "2022-02", ax=Figure().subplots())
    >>> ax.get_title(loc="left")
    'fighters in Iraq and Syria, 2022-02'
    >>> [label.get_text() for label in ax.get_yticklabels()][1:]
    ['between 6,000 and 8,000\\nfighters', 'in the range of 8,000 to\\n16,000']

    Afghanistan's relative claim ("more than doubled") bounds a ratio, not a
    count, and is left out with a note:

    >>> ax = est.plot_claims(result, "Afghanistan", "2022-02", ax=Figure().subplots())
    >>> sorted(a.get_gid() for a in ax.get_children() if str(a.get_gid()).startswith("claim:"))
    ['claim:2']
    """
    rows = _select(result, quantity, region, time, by_time=True)
    iv = result.intervals.iloc[rows[0]]
    q, r, t = _key(iv["quantity"]), _key(iv["region"]), _key(iv["time"])
    labels = _claims_in(result, q, r, t)
    n_relative = len(_claims_in(result, q, r, t, relative=True))
    claims = result.claims.loc[labels].copy()
    claims["_flagged"] = _flagged(result.claims).loc[labels]
    prob = _prob(result)
    colours = _source_colours(result)

    ax = _new_axes(ax, claims_figsize(len(labels)))
    lo_all = [float(iv["lower"])] + [_claim_span(row)[0] for _, row in claims.iterrows()]
    hi_all = [float(iv["upper"])] + [_claim_span(row)[1] for _, row in claims.iterrows()]
    lo_all = [v for v in lo_all if math.isfinite(v) and v > 0]
    hi_all = [v for v in hi_all if math.isfinite(v) and v > 0]
    arrow = _arrow_factor(min(lo_all), max(hi_all)) if lo_all and hi_all else 1.5

    med, lower, upper = float(iv["median"]), float(iv["lower"]), float(iv["upper"])
    ax.axvspan(lower, upper, color=BAND_COLOUR, alpha=0.18, lw=0, zorder=0)
    ax.axvline(med, color="0.25", lw=1, ls="--", zorder=1)
    ax.plot([lower, upper], [0, 0], color="black", lw=5, solid_capstyle="butt", zorder=3)
    ax.plot([med], [0], marker="o", color="white", markeredgecolor="black", markersize=9, mew=2, zorder=4)

    ticks = [f"posterior median {_fmt_count(med)}\nand {prob:.0%} interval"]
    sources = []
    for k, (label, row) in enumerate(claims.iterrows(), start=1):
        src = _key(row.get("source")) or "unattributed"
        sources.append(src)
        line, far = _draw_claim(ax, label, row, float(k), colours[src], arrow, vertical=False)
        if row["_flagged"]:
            _annotate_flag(ax, label, _float(row.get("tension")), (far, float(k)), vertical=False)
        ticks.append(_claim_text(row))
    ax.set_yticks(range(len(ticks)), ticks)
    ax.set_ylim(len(ticks) - 0.4, -0.6)
    ax.tick_params(axis="y", length=0)
    ax.get_yticklabels()[0].set_fontweight("bold")
    ax.set_xscale("log")
    if lo_all and hi_all:
        a = min(lo_all) / arrow**1.3
        b = max(hi_all) * arrow**1.3
        if any(claims["_flagged"]):
            b *= arrow**1.2  # room for the tension label
        ax.set_xlim(a, b)
    _log_count_axis(ax.xaxis)
    ax.grid(axis="x", which="major", color="0.9", zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel(f"{iv['quantity']} (log scale)")
    ax.set_title(_wrap(f"{iv['quantity']} in {iv['region']}{_title_time(iv['time'])}"), loc="left")
    handles = _source_handles(sources, colours) + _kind_handles(list(claims.get("kind", [])), vertical=False)
    handles += _flag_handle(bool(claims["_flagged"].any()))
    _legend_below(ax, handles, after_note=n_relative > 0)
    _note_below(ax, _relative_note(n_relative))
    return ax


# --------------------------------------------------------------------------- plot_timeline
def _time_positions(labels: list[Any]) -> tuple[np.ndarray, bool]:
    """Positions of period labels in years (evenly spaced if they cannot all be read)."""
    if len(labels) <= 1 or any(is_missing(v) for v in labels):
        return np.arange(len(labels), dtype=float), False
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in labels)
    try:
        pos = np.array([parse_time(v, numeric=numeric)[1] for v in labels], dtype=float)
    except (ValueError, TypeError, OverflowError):
        return np.arange(len(labels), dtype=float), False
    if np.any(np.diff(pos) <= 0):
        return np.arange(len(labels), dtype=float), False
    return pos, True


def _cell_draws(result: Any, rows: Sequence[int]) -> np.ndarray:
    """exp(log_count) draws of the given cells as (n_draws, len(rows))."""
    post = result.idata.posterior["log_count"]
    a = np.asarray(post.values)
    a = a.reshape((-1, a.shape[-1]))
    if a.shape[1] != len(result.intervals):
        raise OptionError(
            f"the posterior has {a.shape[1]} cells but result.intervals has {len(result.intervals)} rows; "
            "they must be in the same order"
        )
    return np.exp(a[:, list(rows)])


def plot_timeline(
    result: Any,
    region: str | None = None,
    *,
    quantity: str | None = None,
    ax: Any = None,
) -> Any:
    """Draw the posterior of one region over time, with the claims about it.

    The black line is the posterior median of the count in each period; the
    dark and light grey bands are the 50% and the result's ``prob`` (e.g.
    90%) intervals, computed from the posterior draws. The region's claims
    sit at their periods (several in one period are spread out a little):
    ranges as vertical bars, bounds as arrows up ("at least") or down ("at
    most"), points as markers; coloured by source, flagged ones outlined in
    red with their tension. A region with one period is drawn as a point
    with error bars. Relative claims are left out, with a note.

    Parameters
    ----------
    result : Reconciliation
        What :func:`estimates.reconcile` returned.
    region : str, optional
        Left as None: the only region, or else the one with the most claims
        (ties: the first in ``result.intervals``).
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
    plot_claims : The claims of one region and time, one per row.
    estimates.Reconciliation.plot_timeline : The same, as a method.

    Examples
    --------
    >>> import estimates as est
    >>> result = est.reconcile(est.load_example("isis-2022"))  # doctest: +SKIP
    >>> ax = est.plot_timeline(result, "Afghanistan")  # doctest: +SKIP

    The test suite supplies that fit as ``result``; the axes of a figure
    made without pyplot:

    >>> from matplotlib.figure import Figure
    >>> ax = est.plot_timeline(result, "Iraq and Syria", ax=Figure().subplots())
    >>> ax.get_title(loc="left")
    'fighters in Iraq and Syria over time'
    >>> [label.get_text() for label in ax.get_xticklabels()]
    ['2021-08', '2022-02']
    """
    rows = _select(result, quantity, region, None, by_time=False)
    iv = result.intervals.iloc[list(rows)]
    first = iv.iloc[0]
    q, r = _key(first["quantity"]), _key(first["region"])
    prob = _prob(result)
    draws = _cell_draws(result, rows)
    p_lo, p_hi = (1 - prob) / 2, (1 + prob) / 2
    qs = np.quantile(draws, [p_lo, 0.25, 0.5, 0.75, p_hi], axis=0)
    labels_t = list(iv["time"])
    x, dated = _time_positions(labels_t)
    tkeys = [_key(v) for v in labels_t]
    colours = _source_colours(result)

    ax = _new_axes(ax, TIMELINE_FIGSIZE)
    if len(x) >= 2:
        ax.fill_between(x, qs[0], qs[4], color=BAND_COLOUR, alpha=0.25, lw=0, label=f"{prob:.0%} interval")
        ax.fill_between(x, qs[1], qs[3], color=BAND_COLOUR, alpha=0.5, lw=0, label="50% interval")
        ax.plot(x, qs[2], color="black", lw=1.8, marker="o", markersize=4, label="posterior median")
        gap = float(np.min(np.diff(x)))
    else:
        ax.vlines(x, qs[0], qs[4], color=BAND_COLOUR, alpha=0.6, lw=6, label=f"{prob:.0%} interval")
        ax.vlines(x, qs[1], qs[3], color="0.3", lw=6, label="50% interval")
        ax.plot(x, qs[2], ls="none", marker="o", color="white", mec="black", mew=2, ms=9, label="posterior median")
        gap = 1.0
    band_handles, _ = ax.get_legend_handles_labels()

    labels = _claims_in(result, q, r)
    n_relative = len(_claims_in(result, q, r, relative=True))
    claims = result.claims.loc[labels].copy()
    claims["_flagged"] = _flagged(result.claims).loc[labels]
    ckeys = _claim_table(result).loc[labels, "t"]
    spans = [_claim_span(row) for _, row in claims.iterrows()]
    lows = [s[0] for s in spans if math.isfinite(s[0])] + [float(np.min(qs[0]))]
    highs = [s[1] for s in spans if math.isfinite(s[1])] + [float(np.max(qs[4]))]
    arrow = _arrow_factor(min(lows), max(highs))
    sources: list[str] = []
    by_time: dict[Any, list[int]] = {}
    for label in labels:
        by_time.setdefault(ckeys[label], []).append(label)
    width = 0.35 * gap
    for tk, group in by_time.items():
        i = tkeys.index(tk) if tk in tkeys else None
        if i is None:  # pragma: no cover - a claim on a period the result does not have
            continue
        offs = np.linspace(-width / 2, width / 2, len(group)) if len(group) > 1 else [0.0]
        if len(x) == 1:
            offs = [o + 0.2 * gap for o in offs]  # beside the error bar, not on it
        for label, off in zip(group, offs, strict=True):
            row = claims.loc[label]
            src = _key(row.get("source")) or "unattributed"
            sources.append(src)
            at = float(x[i] + off)
            _line, far = _draw_claim(ax, label, row, at, colours[src], arrow, vertical=True)
            if row["_flagged"]:
                _annotate_flag(ax, label, _float(row.get("tension")), (at, far), vertical=True)

    ax.set_yscale("log")
    ax.set_ylim(min(lows) / arrow, max(highs) * arrow**1.2)
    _log_count_axis(ax.yaxis)
    ax.set_ylabel(f"{first['quantity']} (log scale)")
    ticks_at, tick_labels = list(x), [("" if is_missing(v) else str(v)) for v in labels_t]
    step = max(1, math.ceil(len(ticks_at) / 10))
    ax.set_xticks(ticks_at[::step], tick_labels[::step])
    pad = 0.45 * gap if len(x) == 1 else 0.5 * gap
    ax.set_xlim(float(x[0]) - pad, float(x[-1]) + pad)
    ax.set_xlabel("time" if dated or len(x) > 1 else "")
    ax.grid(axis="y", which="major", color="0.9")
    ax.set_axisbelow(True)
    when = " over time" if len(x) > 1 else _title_time(first["time"])
    ax.set_title(_wrap(f"{first['quantity']} in {first['region']}{when}"), loc="left")
    handles = band_handles + _source_handles(sources, colours)
    handles += _kind_handles(list(claims.get("kind", [])), vertical=True)
    handles += _flag_handle(bool(claims["_flagged"].any()))
    _legend_below(ax, handles, after_note=n_relative > 0)
    _note_below(ax, _relative_note(n_relative))
    return ax


# --------------------------------------------------------------------------- plot_sources
def plot_sources(result: Any, *, quantity: str | None = None, ax: Any = None) -> Any:
    """Draw each source's bias factor with its interval, on a log axis.

    A bias of 2 means the source states twice the consensus of all sources;
    0.5, half. The dashed line at 1 is no bias. Rows are labelled
    ``source (quantity)`` when there are several quantities, and say how
    many claims each bias rests on: a source with one claim is mostly
    described by what is known of sources in general.

    Parameters
    ----------
    result : Reconciliation
        What :func:`estimates.reconcile` returned.
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
    estimates.Reconciliation.plot_sources : The same, as a method.

    Examples
    --------
    >>> import estimates as est
    >>> result = est.reconcile(est.load_example("isis-2022"))  # doctest: +SKIP
    >>> ax = est.plot_sources(result)  # doctest: +SKIP

    The test suite supplies that fit as ``result``; the axes of a figure
    made without pyplot:

    >>> from matplotlib.figure import Figure
    >>> ax = est.plot_sources(result, ax=Figure().subplots())
    >>> ax.get_title(loc="left")
    'Source bias: median and 90% interval'
    >>> len(ax.get_yticklabels()) == len(result.sources)
    True
    >>> est.plot_sources(result, quantity="refugees")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.OptionError: unknown quantity 'refugees'; choose one of: 'fighters', ...
    """
    src = result.sources
    if quantity is not None:
        m = [(_key(v) == _key(quantity)) for v in src["quantity"]]
        if not any(m):
            raise OptionError(f"unknown quantity {quantity!r}; choose one of: {_choices(src['quantity'].tolist())}")
        src = src[m]
    several = src["quantity"].nunique() > 1
    colours = _source_colours(result)
    prob = _prob(result)

    ax = _new_axes(ax, sources_figsize(len(src)))
    labels = []
    for k, (label, row) in enumerate(src.iterrows()):
        name = _key(row["source"]) or "unattributed"
        colour = colours.get(name, "0.3")
        lo, b, hi = float(row["bias_lower"]), float(row["bias"]), float(row["bias_upper"])
        (line,) = ax.plot([lo, hi], [k, k], color=colour, lw=3, solid_capstyle="butt", zorder=3)
        line.set_gid(f"source:{label}")
        ax.plot([b], [k], marker="o", color=colour, mec="black", ms=8, zorder=4)
        n = row.get("n_claims")
        count = "" if is_missing(n) else f"{int(n)} claim{'s' if int(n) != 1 else ''}"
        if several:
            # shorten the quantity, never the count
            room = 40 - (len(count) + 2 if count else 0)
            second = ", ".join(v for v in (_short(str(row["quantity"]), room), count) if v)
            text = f"{_short(name, 40)}\n{second}"
        else:
            text = f"{_short(name, 40)} ({count})" if count else _short(name, 40)
        labels.append(text)
    ax.axvline(1.0, color="0.35", ls="--", lw=1.2, zorder=2)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.tick_params(axis="y", length=0)
    ax.set_xscale("log")
    vals = np.concatenate([src["bias_lower"].to_numpy(float), src["bias_upper"].to_numpy(float), [1.0]])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if len(vals):
        lo, hi = float(vals.min()), float(vals.max())
        lo, hi = min(lo, 1 / 1.25), max(hi, 1.25)
        ax.set_xlim(lo / 1.1, hi * 1.1)
    _log_count_axis(ax.xaxis, fmt=lambda x: f"{x:g}")
    ax.grid(axis="x", which="major", color="0.9")
    ax.set_axisbelow(True)
    ax.set_xlabel("bias factor: the source states x times the consensus\n(log scale; dashed line: 1 = no bias)")
    which = f" ({src['quantity'].iloc[0]})" if len(src) and not several else ""
    ax.set_title(f"Source bias{which}: median and {prob:.0%} interval", loc="left")
    return ax
