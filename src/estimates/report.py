"""One self-contained HTML report of a :class:`~estimates.results.Reconciliation`.

The file has no outside references (figures are embedded PNGs, the style
sheet is inline, no scripts or fonts are fetched), so it can be mailed,
archived or opened offline. Every piece of user text (claims, quotes, names)
is HTML-escaped. Figures are drawn on ``matplotlib.figure.Figure`` objects,
not through pyplot, so writing a report never opens a window or touches the
figures of the caller's session.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import plots
from .claims import is_missing
from .results import TENSION_THRESHOLD, format_number

#: At most this many figures (the sources figure included); the report says
#: how many regions were left out.
MAX_FIGURES = 12

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1d1d1d; margin: 0; background: #fafafa; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem 3rem; background: #fff; }
h1 { font-size: 1.7rem; margin: 0.5rem 0 0.3rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 0.3rem; }
p.lead { font-size: 1.05rem; }
nav { font-size: 0.92rem; color: #555; }
nav a { margin-right: 0.9rem; }
table { border-collapse: collapse; font-size: 0.86rem; margin: 0.5rem 0 1rem; }
th, td { padding: 0.25rem 0.55rem; border-bottom: 1px solid #e5e5e5; text-align: left; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.nowrap { white-space: nowrap; }
tr.bare td { color: #777; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.flag td { background: #fdecea; }
.box { border-left: 4px solid #d62728; background: #fdf3f2; padding: 0.6rem 1rem; margin: 0.8rem 0; }
.ok { border-left-color: #2ca02c; background: #f2f9f2; }
.warn { border-left-color: #e69f00; background: #fff7e6; }
blockquote { margin: 0.4rem 0; padding-left: 0.8rem; border-left: 3px solid #bbb; color: #444; font-style: italic; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.88rem; color: #555; }
.muted { color: #666; font-size: 0.88rem; }
code { font-size: 0.85rem; }
"""


# --------------------------------------------------------------------------- formatting
def _e(v: Any) -> str:
    """HTML-escaped text of a value; missing values are blank."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if not isinstance(v, str) and is_missing(v):
        return ""
    return html.escape(str(v), quote=True)


def _num(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return _e(x)
    return format_number(v)


def _tension(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return _e(x)
    return "" if math.isnan(v) else plots._fmt_tension(v)


def _value(v: Any) -> str:
    """A diagnostics/options value as text."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if math.isnan(v) else (f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}")
    if isinstance(v, (dict, list, tuple)):
        return _e(json.dumps(v, default=str))
    return _e(v)


def _table(
    df: pd.DataFrame,
    columns: Sequence[tuple[str, str, Callable[[Any], str]]],
    *,
    row_class: Sequence[str] | None = None,
    numeric: Sequence[str] = (),
    nowrap: Sequence[str] = (),
) -> str:
    """An HTML table of ``(column, header, formatter)``; columns missing from ``df`` are skipped."""
    cols = [(c, h, f) for c, h, f in columns if c in df]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for _, h, _ in cols) + "</tr></thead>", "<tbody>"]
    for i, (_, row) in enumerate(df.iterrows()):
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        cells = []
        for c, _, f in cols:
            td = '<td class="num">' if c in numeric else ('<td class="nowrap">' if c in nowrap else "<td>")
            cells.append(f"{td}{f(row[c])}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure_html(draw: Callable[[Any], Any], size: tuple[float, float], alt: str, caption: str) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    draw(fig.add_subplot())
    data = _png(fig)
    return (
        f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


# --------------------------------------------------------------------------- the parts
def _summary(result: Any, flagged: pd.Series, prob: float) -> str:
    c, iv, d = result.claims, result.intervals, result.diagnostics
    status = c["status"].astype(str) if "status" in c else pd.Series("used", index=c.index)
    n_used = int((status == "used").sum())
    n_rej = len(c) - n_used
    n_src = result.sources["source"].nunique() if "source" in result.sources else 0
    qs = list(dict.fromkeys(iv["quantity"].astype(str)))
    regions = iv["region"].nunique()
    first = (
        f"{n_used} claim{'s' if n_used != 1 else ''} from {n_src} source{'s' if n_src != 1 else ''} "
        f"about {', '.join(qs)} were reconciled into {len(iv)} estimates ({regions} regions)"
    )
    if n_rej:
        first += f"; {n_rej} claim{'s were' if n_rej != 1 else ' was'} rejected and not used."
    else:
        first += "."
    parts = [
        _e(first),
        _e(
            f"Each estimate is the posterior median of the count with a {prob:.0%} interval: given all the "
            "claims, and allowing each source to overstate or understate by a factor of its own, the count lies "
            f"in the interval with {prob:.0%} probability under the model."
        ),
    ]
    n_flag = int(flagged.sum())
    if n_flag:
        parts.append(
            _e(f"{n_flag} claim{'s do' if n_flag != 1 else ' does'} not fit the rest (tension below ")
            + f'{TENSION_THRESHOLD:g}); see <a href="#flagged">claims in tension</a>.'
        )
    else:
        parts.append(_e(f"No claim is in tension with the rest (tension below {TENSION_THRESHOLD:g})."))
    return '<p class="lead">' + " ".join(parts) + "</p>\n" + _health(d)


def _health(d: dict[str, Any]) -> str:
    if d.get("approximate"):
        return (
            '<div class="box warn"><strong>Approximate fit</strong> (mean-field ADVI): the intervals are a quick '
            'approximation, not samples of the posterior. Refit with <code>method="nuts"</code> before '
            "reporting them.</div>"
        )
    bits = []
    for key, words, fmt in (
        ("r_hat_max", "max R-hat", "{:.3f}"),
        ("ess_bulk_min", "min bulk ESS", "{:.0f}"),
        ("divergences", "divergences", "{}"),
    ):
        if key in d and d[key] is not None:
            try:
                bits.append(f"{words} {fmt.format(d[key])}")
            except (TypeError, ValueError):
                bits.append(f"{words} {d[key]}")
    detail = _e(", ".join(bits))
    if d.get("converged"):
        return f'<div class="box ok">The sampler converged ({detail}).</div>'
    return (
        f'<div class="box warn"><strong>The sampler did not converge well</strong> ({detail}): treat the '
        "intervals with caution; more tuning steps or draws usually help. See "
        '<a href="#diagnostics">diagnostics</a>.</div>'
    )


def _flagged_section(result: Any, flagged: pd.Series, prob: float) -> str:
    c = result.claims
    rows = c[flagged.to_numpy()]
    if rows.empty:
        return f"<p>No claim has a tension below {TENSION_THRESHOLD:g}.</p>"
    out = [
        f"<p>Tension is the probability, under a model fitted without the claim, of a statement at least as far "
        f"from what was expected; below {TENSION_THRESHOLD:g}, about one claim in a hundred would be this far out "
        "by chance. A claim in tension may be wrong, may be about something else (another region, period or "
        "definition), or the other claims may be.</p>"
    ]
    for label, row in rows.iterrows():
        head = [str(row.get("claim_id")) if not is_missing(row.get("claim_id")) else f"row {label}"]
        where = ", ".join(str(row.get(k)) for k in ("region", "time") if not is_missing(row.get(k)))
        if where:
            head.append(where)
        if not is_missing(row.get("source")):
            head.append(str(row.get("source")))
        out.append('<div class="box">')
        out.append(f"<h3>{_e(' · '.join(head))}</h3>")
        out.append(f"<p>Claim: <strong>{_e(plots.claim_words(row))}</strong>")
        if not is_missing(row.get("quantity")):
            out.append(f" ({_e(row.get('quantity'))})")
        out.append("</p>")
        if not is_missing(row.get("quote")):
            out.append(f"<blockquote>{_e(row.get('quote'))}</blockquote>")
        lo, hi = row.get("predicted_lower"), row.get("predicted_upper")
        expected = ""
        if not is_missing(lo) and not is_missing(hi):
            expected = f"; the model expected this source to state between {_num(lo)} and {_num(hi)} ({prob:.0%})"
        out.append(f"<p>Tension <strong>{_tension(row.get('tension'))}</strong>{_e(expected)}.</p>")
        url = row.get("url")
        if not is_missing(url) and str(url).strip().lower().startswith(("http://", "https://")):
            out.append(f'<p class="muted">Source: <a href="{_e(str(url).strip())}">{_e(url)}</a></p>')
        out.append("</div>")
    return "\n".join(out)


def _intervals_section(result: Any, prob: float) -> str:
    iv = result.intervals.copy()
    keys = plots._interval_keys(result)
    cl = plots._claim_table(result)
    counted = cl[cl["used"] & ~cl["relative"]]
    n = Counter(tuple(k) for k in counted[["q", "r", "t"]].itertuples(index=False))
    iv["claims"] = [n.get(tuple(k), 0) for k in keys[["q", "r", "t"]].itertuples(index=False)]
    cols = [
        ("quantity", "quantity", _e),
        ("region", "region", _e),
        ("time", "time", _e),
        ("claims", "claims", _e),
        ("median", "median", _num),
        ("lower", f"lower ({prob:.0%})", _num),
        ("upper", f"upper ({prob:.0%})", _num),
    ]
    return (
        "<p>Counts. <em>claims</em> is the number of claims about that region and time; regions and times "
        "without claims are estimated from the hierarchy (an aggregate is the sum of its parts) and from "
        "neighbouring periods (greyed).</p>"
        + _table(
            iv,
            cols,
            numeric=["claims", "median", "lower", "upper"],
            nowrap=["time"],
            row_class=["" if n else "bare" for n in iv["claims"]],
        )
    )


def _sources_section(result: Any, prob: float) -> str:
    s = result.sources

    shown = s.copy()
    for name in ("bias", "reliability"):
        if name in shown:
            shown[f"{name}_interval"] = [
                f"{_num(a)} to {_num(b)}" for a, b in zip(s[f"{name}_lower"], s[f"{name}_upper"], strict=True)
            ]
    cols: list[tuple[str, str, Callable[[Any], str]]] = [
        ("quantity", "quantity", _e),
        ("source", "source", _e),
        ("n_claims", "claims", _e),
        ("bias", "bias", _num),
        ("bias_interval", f"bias {prob:.0%} interval", _e),
        ("reliability", "reliability", _num),
        ("reliability_interval", f"reliability {prob:.0%} interval", _e),
    ]
    if "influence" in shown:
        cols.append(("influence", "influence", lambda v: "" if pd.isna(v) else f"{float(v):.0%}"))
        cols.append(("influence_method", "influence computed by", _e))
    known = {"quantity", "source", "n_claims", "bias", "bias_lower", "bias_upper", "reliability"}
    known |= {"influence", "influence_method"}
    known |= {"reliability_lower", "reliability_upper", "bias_interval", "reliability_interval"}
    for extra in shown.columns:
        if extra not in known:
            fmt = _num if pd.api.types.is_numeric_dtype(shown[extra]) else _e
            cols.append((extra, extra.replace("_", " "), fmt))
    return (
        "<p><em>bias</em> is a factor on the consensus of all sources: 1 means no bias, 1.6 that the source "
        "states 60% more than the consensus. <em>reliability</em> is a factor on the spread a source states: "
        "above 1, its ranges are wider in effect than they look. <em>influence</em> is the largest move of "
        "any estimate's median when the source is left out (its claims dropped and the model refitted or "
        "reweighted).</p>" + _table(shown, cols, numeric=["n_claims", "bias", "reliability"])
    )


def _claims_section(result: Any, flagged: pd.Series) -> str:
    c = result.claims.copy()
    c["_text"] = [plots.claim_words(r) for _, r in c.iterrows()]
    c["_flag"] = ["yes" if f else "" for f in flagged]
    cols: list[tuple[str, str, Callable[[Any], str]]] = [
        ("claim_id", "id", _e),
        ("region", "region", _e),
        ("quantity", "quantity", _e),
        ("time", "time", _e),
        ("since", "since", _e),
        ("source", "source", _e),
        ("_text", "claim", _e),
        ("kind", "read as", lambda k: _e(str(k).replace("_", " ")) if not is_missing(k) else ""),
        ("status", "status", _e),
        ("predicted_lower", "expected from", _num),
        ("predicted_upper", "expected to", _num),
        ("tension", "tension", _tension),
        ("pareto_k", "Pareto k", _num),
        ("loo", "tension computed by", _e),
        ("_flag", "flagged", _e),
    ]
    cls = ["flag" if f else "" for f in flagged]
    return (
        "<p>Every input row, in input order. <em>expected</em> is the range the model expected the source to "
        "state; <em>tension</em> is small when the claim does not fit the rest. Relative claims (with "
        "<em>since</em>) are about a ratio of two periods.</p>"
        + _table(
            c,
            cols,
            row_class=cls,
            numeric=["predicted_lower", "predicted_upper", "tension", "pareto_k"],
            nowrap=["claim_id", "time", "since", "kind"],
        )
    )


def _diagnostics_section(result: Any) -> str:
    d = result.diagnostics
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_value(v)}</td></tr>" for k, v in d.items())
    meta = result.meta or {}
    out = [f"<table>{rows}</table>" if rows else "<p>No diagnostics were recorded.</p>"]
    opts = meta.get("options", {})
    if opts:
        orows = "".join(f"<tr><th>{_e(k)}</th><td>{_value(v)}</td></tr>" for k, v in opts.items())
        out.append(f"<h3>Options</h3><table>{orows}</table>")
    notes = meta.get("notes") or []
    if notes:
        out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    prov = [(k, meta[k]) for k in ("estimates_version", "input_sha256") if k in meta]
    if prov:
        out.append(
            '<p class="muted">'
            + "; ".join(f"{_e(k.replace('_', ' '))}: <code>{_e(v)}</code>" for k, v in prov)
            + "</p>"
        )
    return "\n".join(out)


def _region_plan(result: Any) -> list[tuple[str, Any, Any, Any]]:
    """The region figures to draw: ``(kind, quantity, region, time)``, most telling first.

    Only regions with claims of their own are drawn. Those with a flagged
    claim come first, then by number of claims. A region gets a timeline
    when it has several periods and its claims span more than one of them
    (or one of them is relative); otherwise the claims of its most claimed
    period beside the posterior there.
    """
    iv = result.intervals
    keys = plots._interval_keys(result)
    cl = plots._claim_table(result)
    used = cl[cl["used"]]
    plan = []
    groups = list(dict.fromkeys(zip(keys["q"], keys["r"], strict=True)))
    for order, (q, r) in enumerate(groups):
        mine = used[(used["q"] == q) & (used["r"] == r)]
        if mine.empty:
            continue
        first = int(((keys["q"] == q) & (keys["r"] == r)).to_numpy().argmax())
        n_periods = int(((keys["q"] == q) & (keys["r"] == r)).sum())
        counted = mine[~mine["relative"]]
        spans = counted["t"].nunique(dropna=False) > 1 or mine["relative"].any()
        quantity, region = iv["quantity"].iloc[first], iv["region"].iloc[first]
        if n_periods > 1 and spans:
            kind, time = "timeline", None
        else:
            kind = "claims"
            times = Counter(counted["t"]).most_common(1)
            tk = times[0][0] if times else keys["t"].iloc[first]
            cells = list(zip(keys["q"], keys["r"], keys["t"], strict=True))
            row = cells.index((q, r, tk)) if (q, r, tk) in cells else first
            time = iv["time"].iloc[row]
        plan.append((-int(mine["flagged"].any()), -len(counted), order, (kind, quantity, region, time)))
    plan.sort(key=lambda p: p[:3])
    return [p[3] for p in plan]


def _figures_section(result: Any) -> str:
    out = []
    n_src = len(result.sources)
    out.append(
        _figure_html(
            lambda ax: plots.plot_sources(result, ax=ax),
            plots.sources_figsize(n_src),
            "bias factor of each source with its interval",
            "Each source's bias factor: the dot is the median, the bar the interval; the dashed line at 1 is no bias.",
        )
    )
    plan = _region_plan(result)
    room = MAX_FIGURES - 1
    for kind, q, r, t in plan[:room]:
        if kind == "timeline":
            n = None
            html_fig = _figure_html(
                lambda ax, q=q, r=r: plots.plot_timeline(result, r, quantity=q, ax=ax),
                plots.TIMELINE_FIGSIZE,
                f"{q} in {r} over time",
                f"{q} in {r}: posterior median (line), 50% and {plots._prob(result):.0%} intervals (bands), "
                "and the claims at their periods.",
            )
        else:
            n = len(plots._claims_in(result, plots._key(q), plots._key(r), plots._key(t)))
            html_fig = _figure_html(
                lambda ax, q=q, r=r, t=t: plots.plot_claims(result, r, t, quantity=q, ax=ax),
                plots.claims_figsize(n),
                f"claims about {q} in {r}",
                f"{q} in {r}{'' if is_missing(t) else ', ' + str(t)}: each claim beside the posterior median "
                "and interval (grey band).",
            )
        out.append(html_fig)
    left = plan[room:]
    if left:
        names = "; ".join(f"{r} ({q})" for _, q, r, _ in left)
        out.append(
            f'<p class="muted">{len(left)} more region{"s" if len(left) != 1 else ""} with claims '
            f"{'are' if len(left) != 1 else 'is'} not drawn, to keep the report short: {_e(names)}. "
            "Draw them with <code>result.plot_timeline(region)</code> or <code>result.plot_claims(region)</code>."
            "</p>"
        )
    drawn = {(q, r) for _, q, r, _ in plan}
    bare = [
        f"{r} ({q})"
        for q, r in dict.fromkeys(zip(result.intervals["quantity"], result.intervals["region"], strict=True))
        if (q, r) not in drawn
    ]
    if bare:
        out.append(
            '<p class="muted">Regions without claims of their own are in the intervals table only: '
            f"{_e('; '.join(bare))}.</p>"
        )
    return "\n".join(out)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- public
def write_report(result: Any, path: str | os.PathLike) -> Path:
    """Write one self-contained HTML report of a reconciliation.

    The report holds a plain summary, the claims in tension (with their
    quotes), the figures (sources, then up to ``MAX_FIGURES - 1`` regions
    with claims of their own: those with a flagged claim first, then the
    most claimed; a timeline where the claims span several periods, else
    the claims beside the posterior), the intervals, sources and claims
    tables, and the diagnostics and options. Figures are embedded PNGs;
    nothing is loaded from elsewhere. The file is written to a temporary
    name beside ``path`` and renamed, so it is never left half-written.

    Parameters
    ----------
    result : Reconciliation
        What :func:`estimates.reconcile` returned.
    path : str or path-like
        The HTML file to write (replaced if it exists).

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import estimates as est
    >>> result = est.reconcile(est.load_example("isis-2022"))  # doctest: +SKIP
    >>> result.report("isis-2022.html")  # doctest: +SKIP
    PosixPath('isis-2022.html')
    """
    path = Path(path)
    prob = plots._prob(result)
    flagged = plots._flagged(result.claims)
    quantities = list(dict.fromkeys(result.intervals["quantity"].astype(str)))
    if len(quantities) <= 2:
        title = "Reconciled estimates of " + " and ".join(quantities)
    else:
        title = f"Reconciled estimates: {len(quantities)} quantities in {result.intervals['region'].nunique()} regions"
    body = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{_e(title)}</h1>",
        '<nav><a href="#flagged">claims in tension</a><a href="#figures">figures</a>'
        '<a href="#intervals">estimates</a><a href="#sources">sources</a><a href="#claims">all claims</a>'
        '<a href="#diagnostics">diagnostics</a></nav>',
        _summary(result, flagged, prob),
        '<section id="flagged"><h2>Claims in tension</h2>',
        _flagged_section(result, flagged, prob),
        "</section>",
        '<section id="figures"><h2>Figures</h2>',
        _figures_section(result),
        "</section>",
        f'<section id="intervals"><h2>Estimates: posterior medians and {prob:.0%} intervals</h2>',
        _intervals_section(result, prob),
        "</section>",
        '<section id="sources"><h2>Sources</h2>',
        _sources_section(result, prob),
        "</section>",
        '<section id="claims"><h2>All claims</h2>',
        _claims_section(result, flagged),
        "</section>",
        '<section id="diagnostics"><h2>Diagnostics</h2>',
        _diagnostics_section(result),
        "</section>",
        "</main>",
        "</body>",
        "</html>",
        "",
    ]
    text = "\n".join(body)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
