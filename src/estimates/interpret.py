"""How each kind of statement becomes a likelihood term: the one table.

Every claim targets a latent quantity on the log scale: ``y = log N(region,
time)`` plus the source's bias, or for a relative claim (``since`` given)
``y = log N(region, time) - log N(region, since)``. This module turns a claim's
kind and numbers into one of four *shapes* on ``y``; ``model.py`` turns shapes
into log-densities and nothing else decides what a statement means.

==========  ======================================  ==============================
kind        typical phrases                         reading (log scale)
==========  ======================================  ==============================
range       "between A and B", "A to B", "A-B"       normal: ``[log A, log B]`` is the
                                                    source's central interval with
                                                    probability ``coverage``
at_least    "more than X", "over X", "at least X"    box: truth in ``[X, u*X]``, edges
                                                    blurred by ``bound_edge_sd``;
                                                    ``bounds="censored"``: only
                                                    ``>= X`` (blurred)
at_most     "up to X", "fewer than X", "as many as"  box: ``[X/u, X]``; censored: ``<= X``
about       "about X", "some X", "X or so"           normal at ``log X``, spread from
                                                    the roundness of X, floored
exact       "54 attacks"                             normal at ``log X``, ``exact_sd``
==========  ======================================  ==============================

Shapes (``s`` is the claim's spread times its source's reliability factor):

- ``normal(c, s)``: ``log p = log Normal(c | y, s)``.
- ``box(a, b, s)``: the source places the truth uniformly in ``[a, b]`` (log
  scale) and reports with Gaussian blur ``s``; ``p = [Phi((y-a)/s) -
  Phi((y-b)/s)] / (b - a)``, a proper density in the reported bound.
- ``lower(a, s)``: ``p = Phi((y - a)/s)`` (censored at-least).
- ``upper(b, s)``: ``p = Phi((b - y)/s)`` (censored at-most).

Relative claims carry no source bias: a source that over-states by a constant
factor states ratios correctly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri  # the normal quantile (scipy.stats.norm.ppf is ndtri; stats costs 0.4 s to import)

from .errors import OptionError

#: Default probability of the reported equal-tailed intervals: ``prob=`` of
#: :func:`estimates.reconcile` and of the :mod:`estimates.baselines` (0.9, a 90% interval).
DEFAULT_PROB = 0.9

#: The kinds of claim, in the order used for codes.
KINDS = ("range", "at_least", "at_most", "about", "exact")

#: The shapes a claim can take on the log scale.
SHAPES = ("normal", "box", "lower", "upper")

#: Hedge words and the kind they give the number that follows (or, for the
#: ``*_after`` entries, precedes) them. The phrase parser reads this table; the
#: docs print it. Longer phrases win over their prefixes.
HEDGES: dict[str, tuple[str, ...]] = {
    "at_least": (
        "more than",
        "over",
        "at least",
        "not less than",
        "no less than",
        "no fewer than",
        "not fewer than",
        "upwards of",
        "upward of",
        "in excess of",
        "greater than",
        "above",
        "exceeding",
        "well over",
        "just over",
        "more then",
        "a minimum of",
    ),
    "at_most": (
        "up to",
        "fewer than",
        "less than",
        "at most",
        "as many as",
        "no more than",
        "not more than",
        "under",
        "below",
        "a maximum of",
        "as much as",
        "just under",
        "not exceeding",
    ),
    "about": (
        "about",
        "around",
        "roughly",
        "approximately",
        "approx.",
        "approx",
        "some",
        "an estimated",
        "estimated",
        "close to",
        "nearly",
        "almost",
        "approaching",
        "circa",
        "c.",
        "~",
        "±",
        "an approximate",
        "somewhere around",
        "in the region of",
        "on the order of",
        "something like",
        "perhaps",
    ),
    "at_least_after": ("+", "or more", "and more", "and above", "plus", "or over"),
    "at_most_after": ("or fewer", "or less", "and below", "or under"),
    "about_after": ("or so", "odd", "or thereabouts", "plus or minus", "give or take", "+/-", "±"),
}

#: Vague quantities: multipliers of the scale word that follows them
#: ("several hundred" -> 300 to 900), read as a range with the default
#: coverage. Plurals alone ("hundreds") use the ``plural`` reading.
VAGUE: dict[str, tuple[float, float]] = {
    "a couple of": (2, 3),
    "a couple": (2, 3),
    "a few": (2, 5),
    "several": (3, 9),
    "plural": (2, 9),  # "hundreds" = 200-900, "tens of thousands" = 20,000-90,000
    "dozens": (24, 96),
}

#: Points given by words ("a dozen" is about 12).
WORD_POINTS: dict[str, float] = {"a dozen": 12, "half a dozen": 6, "a score": 20, "a handful": 5}

#: Relative claims in words: the ratio N(time) / N(since) they state.
RATIO_WORDS: dict[str, float] = {
    "doubled": 2.0,
    "tripled": 3.0,
    "trebled": 3.0,
    "quadrupled": 4.0,
    "halved": 0.5,
}

#: Fractions in words, for "fell by a third" (ratio 2/3) and the like.
FRACTIONS: dict[str, float] = {
    "a half": 0.5,
    "half": 0.5,
    "a third": 1 / 3,
    "one third": 1 / 3,
    "two thirds": 2 / 3,
    "a quarter": 0.25,
    "one quarter": 0.25,
    "three quarters": 0.75,
}


def bare_number_kind(x: float) -> str:
    """Kind of a number stated without a hedge.

    A number below 20 or not a multiple of ten reads as a count ("54
    attacks": ``exact``); a multiple of ten reads as rounded ("7,000
    fighters": ``about``).

    >>> bare_number_kind(54), bare_number_kind(7000), bare_number_kind(1082)
    ('exact', 'about', 'exact')
    """
    if x < 20:
        return "exact"
    r = round(x)
    if abs(x - r) > 1e-9:
        return "exact"
    return "about" if r % 10 == 0 else "exact"


@dataclass(frozen=True)
class Interpretation:
    """Defaults that turn statements into likelihood terms.

    Pass overrides to :func:`estimates.reconcile` as
    ``interpretation={"coverage": 0.8}``; unknown names raise. The instance
    is frozen: each parameter is kept as the attribute of the same name.

    Parameters
    ----------
    coverage : float, default 0.9
        Probability a range's source meant it to hold, when the row gives none.
    bound_factor : float, default 2.0
        ``u`` of the soft bounds: "more than X" puts the truth most likely in
        ``[X, u*X]``; "up to X" in ``[X/u, X]``. Must be above 1.
    bound_edge_sd : float, default 0.1
        Blur (log scale) of a bound's edge: how far a source may be wrong
        about its own bound.
    bounds : {"soft", "censored"}, default "soft"
        ``"soft"`` reads one-sided bounds as the box above; ``"censored"``
        reads them as pure bounds with no upper (lower) limit.
    about_floor_sd : float, default 0.1
        Smallest spread (log scale) of an "about X" claim.
    about_coverage : float, default 0.9
        Probability that the truth lies within the rounding half-unit of an
        "about X" claim (see ``estimates.interpret.roundness_sd``).
    exact_sd : float, default 0.05
        Spread (log scale) of an exact count: counts are miscounted too.
    range_floor_sd : float, default 0.05
        Smallest spread (log scale) of a range claim (a range of width zero is
        still not a certainty).
    robust_weight : float, default 0.05
        With ``robust=True``, the prior probability that a claim is wild.
    robust_sd : float, default 1.5
        With ``robust=True``, the spread (log scale) of a wild claim around
        its own number.

    Raises
    ------
    OptionError
        A probability outside (0, 1), a spread that is not positive, a
        ``bound_factor`` not above 1 or an unknown ``bounds``.

    See Also
    --------
    estimates.interpret.hedge_table : Which words give which kind of claim.

    Examples
    --------
    >>> from estimates import Interpretation
    >>> Interpretation().coverage
    0.9
    >>> wide = Interpretation(coverage=0.8, bounds="censored")
    >>> wide.coverage, wide.bounds, wide.bound_factor
    (0.8, 'censored', 2.0)
    >>> Interpretation(coverage=90)
    Traceback (most recent call last):
        ...
    estimates.errors.OptionError: interpretation coverage = 90 must be strictly between 0 and 1
    """

    coverage: float = 0.9
    bound_factor: float = 2.0
    bound_edge_sd: float = 0.1
    bounds: str = "soft"
    about_floor_sd: float = 0.1
    about_coverage: float = 0.9
    exact_sd: float = 0.05
    range_floor_sd: float = 0.05
    robust_weight: float = 0.05
    robust_sd: float = 1.5

    def __post_init__(self) -> None:
        for name in ("coverage", "about_coverage", "robust_weight"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise OptionError(f"interpretation {name} = {v!r} must be strictly between 0 and 1")
        for name in ("bound_edge_sd", "about_floor_sd", "exact_sd", "range_floor_sd", "robust_sd"):
            v = getattr(self, name)
            if not v > 0:
                raise OptionError(f"interpretation {name} = {v!r} must be positive")
        if not self.bound_factor > 1:
            raise OptionError(f"interpretation bound_factor = {self.bound_factor!r} must be above 1")
        if self.bounds not in ("soft", "censored"):
            raise OptionError(f"interpretation bounds = {self.bounds!r} must be 'soft' or 'censored'")

    @classmethod
    def from_options(cls, options: Interpretation | Mapping[str, Any] | None) -> Interpretation:
        """Build from ``None``, a mapping of overrides or an instance; unknown keys raise.

        This is how :func:`estimates.reconcile` and the baselines read their
        ``interpretation=`` argument.

        Parameters
        ----------
        options : Interpretation, mapping or None
            ``None`` for the defaults, a mapping of field names to values
            (the other fields keep their defaults), or an instance, returned
            as it is.

        Returns
        -------
        Interpretation
            The reading to use.

        Raises
        ------
        OptionError
            A key that is not a field (the message lists the valid ones), or
            a value out of range.

        Examples
        --------
        >>> from estimates import Interpretation
        >>> Interpretation.from_options({"coverage": 0.8}).coverage
        0.8
        >>> Interpretation.from_options(None) == Interpretation()
        True
        >>> Interpretation.from_options({"coverage": 0.8, "covrage": 0.7})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        estimates.errors.OptionError: unknown interpretation option(s) 'covrage'; valid ones are: about_coverage, ...
        """
        if options is None:
            return cls()
        if isinstance(options, Interpretation):
            return options
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise OptionError(
                f"unknown interpretation option(s) {', '.join(map(repr, unknown))}; "
                f"valid ones are: {', '.join(sorted(valid))}"
            )
        return cls(**dict(options))


def roundness_unit(x: float) -> float:
    """Rounding unit a number suggests: the largest 1, 2 or 5 x 10^k dividing it, at most x/2.

    >>> roundness_unit(10_000), roundness_unit(2_000), roundness_unit(1_900), roundness_unit(54)
    (5000.0, 1000.0, 100.0, 2.0)
    """
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"roundness_unit needs a positive finite number, got {x!r}")
    top = math.floor(math.log10(x))
    for k in range(top, top - 16, -1):
        for m in (5.0, 2.0, 1.0):
            g = m * 10.0**k
            if g > x / 2:
                continue
            q = x / g
            if abs(q - round(q)) < 1e-9 * max(1.0, q):
                return g
    return 10.0 ** (top - 15)


def roundness_sd(x: float, interp: Interpretation) -> float:
    """Log-scale spread of "about x": half a rounding unit is the ``about_coverage`` interval.

    The spread moves smoothly with the implied rounding: "about 2,000"
    (unit 1,000) is wider than "about 1,900" (unit 100), and both are at
    least ``about_floor_sd``.

    >>> float(round(roundness_sd(10_000, Interpretation()), 3))
    0.155
    """
    g = roundness_unit(x)
    half = min(g / 2, 0.999 * x)
    z = ndtri(0.5 + interp.about_coverage / 2)
    sd = 0.5 * math.log((x + half) / (x - half)) / z
    return float(max(interp.about_floor_sd, sd))


def shape_of(
    kind: str,
    low: float,
    high: float,
    value: float,
    coverage: float,
    interp: Interpretation,
) -> tuple[str, float, float, float]:
    """Shape of one claim: ``(shape, a, b, sd)`` on the log scale.

    ``low``, ``high`` and ``value`` are positive numbers or NaN, already
    validated for the kind. For ``normal`` shapes ``a == b`` is the centre.

    Examples
    --------
    >>> shape_of("at_least", 4000, float("nan"), float("nan"), 0.9, Interpretation())[0]
    'box'
    """
    if kind == "range":
        la, lb = math.log(low), math.log(high)
        centre = math.log(value) if value == value and low <= value <= high else 0.5 * (la + lb)
        z = ndtri(0.5 + coverage / 2)
        sd = max(interp.range_floor_sd, (lb - la) / (2 * z))
        return "normal", centre, centre, sd
    if kind == "about":
        c = math.log(value)
        return "normal", c, c, roundness_sd(value, interp)
    if kind == "exact":
        c = math.log(value)
        return "normal", c, c, interp.exact_sd
    lu = math.log(interp.bound_factor)
    if kind == "at_least":
        a = math.log(low)
        if interp.bounds == "censored":
            return "lower", a, math.inf, interp.bound_edge_sd
        return "box", a, a + lu, interp.bound_edge_sd
    if kind == "at_most":
        b = math.log(high)
        if interp.bounds == "censored":
            return "upper", -math.inf, b, interp.bound_edge_sd
        return "box", b - lu, b, interp.bound_edge_sd
    raise ValueError(f"unknown kind {kind!r}")


def shapes_table(claims: pd.DataFrame, interp: Interpretation) -> pd.DataFrame:
    """Add ``shape, a, b, spread`` columns to normalised claims (a copy)."""
    out = claims.copy()
    rows = [
        shape_of(k, lo, hi, v, cov, interp)
        for k, lo, hi, v, cov in zip(out["kind"], out["low"], out["high"], out["value"], out["coverage"], strict=True)
    ]
    if rows:
        shp, a, b, sd = zip(*rows, strict=True)
    else:
        shp, a, b, sd = (), (), (), ()
    out["shape"] = pd.Series(list(shp), index=out.index, dtype=object)
    out["a"] = np.asarray(a, dtype=float)
    out["b"] = np.asarray(b, dtype=float)
    out["spread"] = np.asarray(sd, dtype=float)
    return out


def simulate_statement(
    shape: np.ndarray,
    kind: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    sd: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw the number a source would state, given latent targets ``y``.

    Parameters are per claim (length C); ``sd`` and ``y`` are draws x C. The
    returned array (draws x C, log scale) is the replicate of the claim's
    reported number: a normal claim's centre, a box's stated bound, a
    censored bound's stated bound. It inverts the generative reading of each
    shape documented in this module.
    """
    draws, c = y.shape
    noise = rng.standard_normal((draws, c)) * sd
    width = np.where(np.isfinite(b - a), b - a, 0.0)
    u = rng.random((draws, c))
    out = np.empty((draws, c))
    is_normal = shape == "normal"
    out[:, is_normal] = (y + noise)[:, is_normal]
    # box: the truth sits uniformly inside the stated box; the stated bound is
    # the box edge the kind names.
    lower_edge = kind == "at_least"
    box = shape == "box"
    rep_low = y - u * width + noise  # stated lower edge a
    rep_high = y + u * width + noise  # stated upper edge b
    sel = box & lower_edge
    out[:, sel] = rep_low[:, sel]
    sel = box & ~lower_edge
    out[:, sel] = rep_high[:, sel]
    # censored bounds: the source states its bound at the truth, blurred.
    sel = (shape == "lower") | (shape == "upper")
    out[:, sel] = (y + noise)[:, sel]
    return out


def statement_tails(
    shape: np.ndarray,
    kind: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    sd: np.ndarray,
    y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``P(rep <= obs)`` and ``P(rep >= obs)`` per draw, exactly, for :func:`simulate_statement`'s ``rep``.

    ``obs`` is :func:`observed_number`. Normal and censored shapes: the
    replicate is ``y`` plus normal noise, so each tail is a normal CDF. A box
    adds a uniform offset over its width ``w``, whose integral of the normal
    CDF is closed form: ``int_0^1 Phi(x + u w / s) du = s / w [G(x + w / s) - G(x)]``
    with ``G(x) = x Phi(x) + phi(x)``. Both tails are computed directly (not
    as one minus the other) so small tail probabilities keep their digits.
    """
    from scipy.special import ndtr

    def g(x: np.ndarray) -> np.ndarray:
        return x * ndtr(x) + np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

    obs = observed_number(shape, kind, a, b)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        d = (obs - y) / sd  # standardised distance of the observed number above the target
        below, above = ndtr(d), ndtr(-d)
        # the box terms on the box columns only (they cost four G each)
        box = shape == "box"
        for edge, lower in ((box & (kind == "at_least"), True), (box & (kind != "at_least"), False)):
            j = np.flatnonzero(edge)
            if not len(j):
                continue
            dj = d[..., j]
            width = np.where(np.isfinite(b[j] - a[j]), b[j] - a[j], 1.0)
            w = width / (sd[..., j] if np.ndim(sd) else sd)  # box width in noise sds
            if lower:  # rep = y - u w + noise
                below[..., j] = (g(dj + w) - g(dj)) / w
                above[..., j] = (g(-dj) - g(-dj - w)) / w
            else:  # rep = y + u w + noise
                below[..., j] = (g(dj) - g(dj - w)) / w
                above[..., j] = (g(-dj + w) - g(-dj)) / w
    return np.clip(below, 0.0, 1.0), np.clip(above, 0.0, 1.0)


def tension_from_tails(shape: np.ndarray, below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Two-sided tail probability of a claim; a censored bound is in tension on one side only."""
    t = 2.0 * np.minimum(below, above)
    t = np.where(shape == "lower", 2.0 * above, t)
    t = np.where(shape == "upper", 2.0 * below, t)
    return np.minimum(1.0, t)


def observed_number(shape: np.ndarray, kind: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The observed counterpart of :func:`simulate_statement` (log scale)."""
    out = np.where(shape == "normal", a, np.nan)
    out = np.where((shape == "box") & (kind == "at_least"), a, out)
    out = np.where((shape == "box") & (kind != "at_least"), b, out)
    out = np.where(shape == "lower", a, out)
    out = np.where(shape == "upper", b, out)
    return out


def hedge_table() -> pd.DataFrame:
    """List the hedge words and what each reads as, one row per phrase (for docs and users).

    Built from the module's tables ``HEDGES``, ``VAGUE``, ``WORD_POINTS``,
    ``RATIO_WORDS`` and ``FRACTIONS``: the parser and the model use
    those same tables, so this never drifts from what the code does.

    Returns
    -------
    DataFrame
        Columns ``phrase`` (``X`` stands for the number), ``kind`` (the kind
        of claim it gives) and ``reading`` (what the model makes of it, with
        the default :class:`Interpretation`).

    See Also
    --------
    estimates.parse_claim : Reads a statement with these words.

    Examples
    --------
    >>> from estimates.interpret import hedge_table
    >>> t = hedge_table()
    >>> list(t.columns)
    ['phrase', 'kind', 'reading']
    >>> t.loc[t["phrase"] == "more than X", "kind"].item()
    'at_least'
    >>> t.loc[t["phrase"] == "X or so", "kind"].item()
    'about'
    """
    d = Interpretation()
    reading = {
        "at_least": f"truth most likely in [X, {d.bound_factor:g}X] (bound_factor; bounds='censored': >= X)",
        "at_most": f"truth most likely in [X/{d.bound_factor:g}, X] (bound_factor; bounds='censored': <= X)",
        "about": f"normal at X, spread from X's roundness, at least {d.about_floor_sd:g} on the log scale",
    }
    rows = []
    for kind in ("at_least", "at_most", "about"):
        for h in HEDGES[kind]:
            rows.append((f"{h} X", kind, reading[kind]))
        for h in HEDGES[f"{kind}_after"]:
            rows.append((f"X {h}" if h not in ("+",) else f"X{h}", kind, reading[kind]))
    for word, (lo, hi) in VAGUE.items():
        if word == "plural":
            rows.append(("hundreds / thousands / tens of thousands", "range", f"{lo:g} to {hi:g} of the unit"))
        elif word == "dozens":
            rows.append(("dozens", "range", f"{lo:g} to {hi:g}"))
        else:
            rows.append((f"{word} hundred / thousand", "range", f"{lo:g} to {hi:g} of the unit"))
    for word, v in WORD_POINTS.items():
        rows.append((word, "about", f"{v:g}"))
    for word, v in RATIO_WORDS.items():
        rows.append((word, "about (relative)", f"ratio {v:g}"))
    for word, v in FRACTIONS.items():
        rows.append((f"fell by {word}", "about (relative)", f"ratio {1 - v:.3g}"))
    rows.append(("increase of X% / up X% / a X% rise", "relative", "ratio 1 + X/100; kind as a bare number"))
    rows.append(("X (no hedge)", "exact or about", "exact below 20 or when not a multiple of ten; else about"))
    return pd.DataFrame(rows, columns=["phrase", "kind", "reading"])
