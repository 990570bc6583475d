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
from scipy import stats

from .errors import OptionError

#: Default probability of the reported intervals (``prob=`` of ``reconcile``).
DEFAULT_PROB = 0.9

#: The kinds of claim, in the order used for codes.
KINDS = ("range", "at_least", "at_most", "about", "exact")

#: The shapes a claim can take on the log scale.
SHAPES = ("normal", "box", "lower", "upper")

#: Typical phrases for each kind (documentation; the phrase parser extends it).
PHRASES: dict[str, tuple[str, ...]] = {
    "range": ("between A and B", "A to B", "A-B", "in the range of A to B"),
    "at_least": ("more than X", "over X", "at least X", "upwards of X"),
    "at_most": ("up to X", "fewer than X", "as many as X", "at most X"),
    "about": ("about X", "around X", "some X", "X or so", "roughly X", "nearly X"),
    "exact": ("X (a count)",),
}


@dataclass(frozen=True)
class Interpretation:
    """Defaults that turn statements into likelihood terms.

    Pass overrides to :func:`estimates.reconcile` as
    ``interpretation={"coverage": 0.8}``; unknown names raise.

    Attributes
    ----------
    coverage : float
        Probability a range's source meant it to hold, when the row gives none.
    bound_factor : float
        ``u`` of the soft bounds: "more than X" puts the truth most likely in
        ``[X, u*X]``; "up to X" in ``[X/u, X]``.
    bound_edge_sd : float
        Blur (log scale) of a bound's edge: how far a source may be wrong
        about its own bound.
    bounds : {"soft", "censored"}
        ``"soft"`` reads one-sided bounds as the box above; ``"censored"``
        reads them as pure bounds with no upper (lower) limit.
    about_floor_sd : float
        Smallest spread (log scale) of an "about X" claim.
    about_coverage : float
        Probability that the truth lies within the rounding half-unit of an
        "about X" claim (see :func:`roundness_sd`).
    exact_sd : float
        Spread (log scale) of an exact count: counts are miscounted too.
    range_floor_sd : float
        Smallest spread (log scale) of a range claim (a range of width zero is
        still not a certainty).
    robust_weight : float
        With ``robust=True``, the prior probability that a claim is wild.
    robust_sd : float
        With ``robust=True``, the spread (log scale) of a wild claim around
        its own number.
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
        """Build from ``None``, a mapping of overrides or an instance; unknown keys raise."""
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
    z = stats.norm.ppf(0.5 + interp.about_coverage / 2)
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
        z = stats.norm.ppf(0.5 + coverage / 2)
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


def observed_number(shape: np.ndarray, kind: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The observed counterpart of :func:`simulate_statement` (log scale)."""
    out = np.where(shape == "normal", a, np.nan)
    out = np.where((shape == "box") & (kind == "at_least"), a, out)
    out = np.where((shape == "box") & (kind != "at_least"), b, out)
    out = np.where(shape == "lower", a, out)
    out = np.where(shape == "upper", b, out)
    return out
