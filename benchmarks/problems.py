"""Benchmark problems: the article example, synthetic medium and large worlds, and UCDP vs PRIO.

Each problem is a claims table in the library's own input format, so the
library, the hand-written peers and the approximate mode all read the same
numbers. ``export_arrays`` turns a problem into the plain arrays the peers
(Stan, numpyro) need, taken from the library's own ``describe``: the peers
fit the same statistical model to the same interpreted claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Synthetic sizes of issue 4: regions x periods x sources.
SIZES = {"medium": (50, 24, 6), "large": (200, 120, 8)}


@dataclass
class Problem:
    name: str
    claims: pd.DataFrame
    hierarchy: dict | None = None
    truth: pd.DataFrame | None = None  # region, time, log_count (synthetic only)


def synthetic(name: str, n_regions: int, n_periods: int, n_sources: int, seed: int = 4) -> Problem:
    """A flat world: monthly random walks per region, biased sources, mixed claim kinds.

    About 1.7 claims per region-period on average (so about 2,000 claims for
    the medium size): each source speaks about a region-period with
    probability ``1.7 / n_sources``, at least one claim everywhere. Kinds:
    60% ranges (stated 90% intervals), 20% "more than" bounds, 20% rounded
    "about" numbers. Times are months.
    """
    rng = np.random.default_rng(seed)
    bias = rng.normal(0.0, 0.3, n_sources)
    bias -= bias.mean()  # the consensus is the sources' average
    noise = np.exp(rng.normal(np.log(1.3), 0.3, n_sources))  # each source overstates its precision a bit
    level = rng.normal(np.log(5000.0), 1.0, n_regions)
    steps = rng.normal(0.0, 0.3 / np.sqrt(12.0), (n_regions, n_periods))
    steps[:, 0] = 0.0
    x = level[:, None] + np.cumsum(steps, axis=1)
    months = pd.period_range("2015-01", periods=n_periods, freq="M").astype(str)
    regions = [f"R{i:03d}" for i in range(n_regions)]
    sources = [f"S{j}" for j in range(n_sources)]
    speaks = rng.random((n_regions, n_periods, n_sources)) < 1.7 / n_sources
    nobody = ~speaks.any(axis=2)
    speaks[nobody, rng.integers(0, n_sources, nobody.sum())] = True
    r_i, k_i, s_i = np.nonzero(speaks)
    half = rng.uniform(0.1, 0.4, len(r_i))  # stated half-width, log scale
    centre = x[r_i, k_i] + bias[s_i] + rng.normal(0.0, 1.0, len(r_i)) * noise[s_i] * half / 1.645
    kind = rng.choice(np.array(["range", "at_least", "about"]), size=len(r_i), p=[0.6, 0.2, 0.2])
    low = np.where(kind == "range", np.round(np.exp(centre - half)), np.nan)
    high = np.where(kind == "range", np.round(np.exp(centre + half)), np.nan)
    low = np.where(kind == "at_least", _round2(np.exp(centre - 0.3)), low)
    value = np.where(kind == "about", _round2(np.exp(centre)), np.nan)
    claims = pd.DataFrame(
        {
            "region": np.array(regions)[r_i],
            "time": np.array(months)[k_i],
            "source": np.array(sources)[s_i],
            "low": low,
            "high": high,
            "value": value,
        }
    )
    truth = pd.DataFrame(
        {
            "region": np.repeat(regions, n_periods),
            "time": np.tile(months, n_regions),
            "log_count": x.ravel(),
        }
    )
    return Problem(name, claims, None, truth)


def _round2(x: np.ndarray) -> np.ndarray:
    """Round to two significant digits, as people round "about" numbers."""
    digits = np.floor(np.log10(x)) - 1
    return np.round(x / 10.0**digits) * 10.0**digits


# UCDP and PRIO spell some locations differently; one name for each.
_PRIO_NAMES = {
    "Bosnia and Herzegovina": "Bosnia-Herzegovina",
    "Cambodia": "Cambodia (Kampuchea)",
    "Cote D\u2019Ivoire": "Ivory Coast",
    "Democratic Republic of Congo (Zaire)": "DR Congo (Zaire)",
    "Macedonia": "Macedonia, FYR",
    "Myanmar": "Myanmar (Burma)",
    "Sri Lanka (Ceylon)": "Sri Lanka",
    "Turkey/Ottoman Empire": "Turkey",
    "Yemen": "Yemen (North Yemen)",
    "Yugoslavia (Serbia)": "Serbia (Yugoslavia)",
}


def ucdp_prio(data: Path = SHARED_DATA) -> Problem:
    """UCDP v17.1 and PRIO v3.1 battle deaths, 1989-2008, as two sources per location-year.

    Each dataset's conflicts are summed per location and year (their
    conflict ids do not match; location and year do), and only
    location-years coded by both are kept. Each source's low-high becomes a
    range claim (default 90% coverage), its best estimate is kept as the
    ``quote``. PRIO's missing best (``-999``) is fine: only low and high are used.
    """
    u = pd.read_csv(data / "ucdp_brd_conf_v17.1.csv")
    p = pd.read_csv(data / "prio_battle_deaths_v3.1_bdonly.csv")
    u = u[u["Year"].between(1989, 2008)]
    p = p[p["year"].between(1989, 2008)].copy()
    p["location"] = p["location"].replace(_PRIO_NAMES)
    uu = (
        u.groupby(["LocationInc", "Year"])[["BdLow", "BdBest", "BdHigh"]]
        .sum()
        .rename_axis(["region", "time"])
        .set_axis(["low", "best", "high"], axis=1)
    )
    pb = p.assign(bdeadbes=p["bdeadbes"].where(p["bdeadbes"] >= 0))
    pp = (
        pb.groupby(["location", "year"])[["bdeadlow", "bdeadbes", "bdeadhig"]]
        .sum(min_count=1)
        .rename_axis(["region", "time"])
        .set_axis(["low", "best", "high"], axis=1)
    )
    both = uu.index.intersection(pp.index)
    rows = []
    for src, tab in (("UCDP v17.1", uu), ("PRIO v3.1", pp)):
        t = tab.loc[both].reset_index()
        t["source"] = src
        rows.append(t)
    claims = pd.concat(rows, ignore_index=True)
    claims["quote"] = "best " + claims["best"].map(lambda b: "n/a" if pd.isna(b) else f"{b:.0f}")
    claims = claims.drop(columns="best")
    claims["time"] = claims["time"].astype(int).astype(str)
    claims = claims[(claims["low"] > 0) & (claims["high"] >= claims["low"])].reset_index(drop=True)
    return Problem("ucdp-prio", claims)


def article() -> Problem:
    import estimates as est

    claims = est.load_example("isis-2022")
    return Problem("article", claims, claims.attrs.get("hierarchy"))


def get(name: str) -> Problem:
    """A benchmark problem by name: article, medium, large, ucdp-prio."""
    if name == "article":
        return article()
    if name in SIZES:
        return synthetic(name, *SIZES[name])
    if name == "ucdp-prio":
        return ucdp_prio()
    raise KeyError(name)


def export_arrays(problem: Problem) -> dict[str, np.ndarray]:
    """The arrays a hand-written peer needs, from the library's own interpretation.

    Only flat problems (no aggregates): one random-walk series per region.
    Keys: ``R, K, S, N`` sizes; ``sqrt_dt[K]`` (0 first); ``pivot[R]``
    (0-based period carrying the level prior); ``prior_mean[R]``,
    ``prior_sd`` (scalar); per claim ``cell_region[N], cell_period[N]``
    (0-based), ``source[N]`` (0-based), ``shape[N]`` (0 normal, 1 box,
    2 lower, 3 upper), ``a[N], b[N], spread[N]`` (log scale).
    """
    from estimates.claims import Hierarchy, normalise, read_claims
    from estimates.interpret import Interpretation, shapes_table
    from estimates.model import describe

    if problem.hierarchy:
        raise ValueError("peers take flat problems only")
    interp = Interpretation()
    cs = normalise(read_claims(problem.claims), hierarchy=Hierarchy.from_mapping(None), interpretation=interp)
    st = describe(shapes_table(cs.used, interp), cs.hierarchy)
    if st.n_logit or len(st.quantities) != 1:
        raise ValueError("peers take flat, single-quantity problems only")
    cells = st.cells
    regions = list(dict.fromkeys(cells["region"]))
    R = len(regions)
    K = len(cells) // R
    first = np.flatnonzero(st.walk_first)
    sqrt_dt = st.walk_sqrt_dt[first[0] : first[0] + K]
    # cell c = r * K + k, and walk cell == reported cell for flat problems
    assert np.array_equal(st.cell_members[:, 0], np.arange(len(cells)))
    codes = {"normal": 0, "box": 1, "lower": 2, "upper": 3}
    return {
        "R": R,
        "K": K,
        "S": len(st.sources),
        "N": len(st.claim_row),
        "sqrt_dt": np.asarray(sqrt_dt, float),
        "pivot": (st.walk_pivot[first] - first).astype(np.int64),
        "prior_mean": st.walk_prior_mean[first].astype(float),
        "prior_sd": float(st.walk_prior_sd[first[0]]),
        "cell_region": (st.claim_time_cell // K).astype(np.int64),
        "cell_period": (st.claim_time_cell % K).astype(np.int64),
        "source": st.claim_source.astype(np.int64),
        "shape": np.array([codes[s] for s in st.claim_shape], dtype=np.int64),
        "a": np.nan_to_num(st.claim_a.astype(float), nan=0.0, posinf=0.0, neginf=0.0),
        "b": np.nan_to_num(st.claim_b.astype(float), nan=0.0, posinf=0.0, neginf=0.0),
        "spread": st.claim_spread.astype(float),
    }
