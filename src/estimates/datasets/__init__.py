"""Embedded example datasets."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pandas as pd

from ..errors import OptionError

EXAMPLES = ("isis-2022", "bcg-trials", "acw-strengths")

#: Normal quantile of the 95% confidence intervals derived for ``bcg-trials``
#: (the value trial reports and meta-analysis software use).
BCG_Z = 1.96


def load_example(name: str = "isis-2022") -> pd.DataFrame:
    """Load an embedded claims table.

    The table's ``attrs["hierarchy"]`` holds the aggregates its regions refer
    to; :func:`estimates.reconcile` uses it when no ``hierarchy`` is passed.

    Parameters
    ----------
    name : str
        One of ``EXAMPLES``.

    Returns
    -------
    DataFrame
        A claims table (DESIGN section 3) with ``claim_id`` and a ``note`` on
        how each row was read from its source (and the source's own words in
        ``quote`` where it is a text).

    Notes
    -----
    ``isis-2022``: every numeric claim of a news article (see the datasets
    README). ``bcg-trials``: the 13 trials of the BCG vaccine against
    tuberculosis (Colditz et al. 1994; metafor's ``dat.bcg``), one claim per
    trial: the 95% confidence interval of its risk ratio, derived from the
    trial's counts (kept in the columns ``tpos, tneg, cpos, cneg``, with
    ``year`` and ``ablat``, the absolute latitude); see
    ``estimates.datasets.bcg_claims``. ``acw-strengths``: troop strengths of both sides in 48
    American Civil War battles as given by five historians and compilers
    (Livermore 1900, Bodart 1908, Clodfelter 2008, the National Park Service's
    CWSAC report and its update, Wikipedia), from J. B. Arnold's *acw_battle_data*
    (CC BY 4.0); one claim per battle, side and source, ``region`` the battle
    and side ("Antietam (US)"), ``quantity="troops"``, no time. Columns
    ``battle_id`` (CWSAC id), ``battle``, ``side``, ``source_battle``,
    ``source_file`` and ``source_column`` say where each number comes from;
    the datasets README says how the subset was chosen
    (``scripts/build_acw_dataset.py`` builds it).

    Examples
    --------
    >>> import estimates as est
    >>> claims = est.load_example("isis-2022")
    >>> len(claims), sorted(claims.attrs["hierarchy"])
    (10, ['Africa (six countries)', 'Iraq and Syria'])
    >>> bcg = est.load_example("bcg-trials")
    >>> len(bcg), bcg["source"].iloc[0], round(float(bcg["low"].iloc[0]), 4), round(float(bcg["high"].iloc[0]), 4)
    (13, 'Aronson 1948', 0.1343, 1.2574)
    >>> acw = est.load_example("acw-strengths")
    >>> len(acw), acw["battle"].nunique(), acw["region"].nunique()
    (409, 48, 96)
    >>> acw["source"].value_counts().sort_index().to_dict()
    {'Bodart 1908': 76, 'CWSAC': 54, 'Clodfelter 2008': 96, 'Livermore 1900': 87, 'Wikipedia': 96}
    >>> antietam = acw[acw["region"] == "Antietam (US)"]
    >>> list(zip(antietam["source"], antietam["value"].astype(int)))  # doctest: +NORMALIZE_WHITESPACE
    [('Livermore 1900', 75316), ('Bodart 1908', 85000), ('Clodfelter 2008', 75316),
     ('CWSAC', 60000), ('Wikipedia', 75500)]
    """
    if name not in EXAMPLES:
        raise OptionError(f"unknown example {name!r}; available: {', '.join(EXAMPLES)}")
    if name == "bcg-trials":
        return bcg_claims(load_counts(name))
    base = resources.files(__package__)
    with (base / f"{name}.csv").open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, dtype={"time": object, "since": object, "source_battle": str})
    hierarchy = base / f"{name}.hierarchy.json"
    if hierarchy.is_file():
        with hierarchy.open("r", encoding="utf-8") as fh:
            df.attrs["hierarchy"] = json.load(fh)
    else:  # acw-strengths: every battle side is a leaf
        df.attrs["hierarchy"] = {}
    return df


def example_hierarchy(name: str = "isis-2022") -> dict[str, list[str]]:
    """The hierarchy shipped with an embedded example.

    The same mapping rides in ``load_example(name).attrs["hierarchy"]``,
    where :func:`estimates.reconcile` finds it when no ``hierarchy`` is
    passed; this returns a copy to pass explicitly or to edit.

    Parameters
    ----------
    name : str
        One of ``estimates.datasets.EXAMPLES``.

    Returns
    -------
    dict of str to list of str
        Each aggregate region and the regions it sums (empty when the
        example has no aggregates).

    Raises
    ------
    OptionError
        An unknown example name.

    Examples
    --------
    >>> example_hierarchy("isis-2022")["Iraq and Syria"]
    ['Iraq', 'Syria']
    """
    return dict(load_example(name).attrs["hierarchy"])


def load_counts(name: str = "bcg-trials") -> pd.DataFrame:
    """The raw counts behind an embedded example derived from trial data.

    Only ``bcg-trials`` has them: one row per trial, columns ``trial, author,
    year, tpos, tneg, cpos, cneg, ablat`` (tuberculosis cases ``tpos`` of
    ``tpos + tneg`` vaccinated, ``cpos`` of ``cpos + cneg`` unvaccinated).

    Examples
    --------
    >>> counts = load_counts("bcg-trials")
    >>> len(counts), counts.loc[0, "author"], [int(x) for x in counts.loc[0, ["tpos", "tneg", "cpos", "cneg"]]]
    (13, 'Aronson', [4, 119, 11, 128])
    """
    if name != "bcg-trials":
        raise OptionError(f"example {name!r} has no counts; only 'bcg-trials' does")
    with (resources.files(__package__) / f"{name}.counts.csv").open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, comment="#")


def bcg_claims(counts: pd.DataFrame) -> pd.DataFrame:
    """Trials' two-by-two counts as claims: the 95% confidence interval of each risk ratio.

    Per trial, ``y = log(tpos / (tpos + tneg)) - log(cpos / (cpos + cneg))``
    is the log risk ratio and ``v = 1/tpos - 1/(tpos + tneg) + 1/cpos - 1/(cpos
    + cneg)`` its sampling variance (the large-sample formula metafor's
    ``escalc(measure="RR")`` uses); the claim is the range ``exp(y -+ 1.96
    sqrt(v))`` with ``coverage = 0.95``, so the library reads back ``y`` as
    its centre and ``sqrt(v)`` as its spread on the log scale.

    Examples
    --------
    >>> counts = pd.DataFrame({"author": ["A"], "year": [2000], "tpos": [10], "tneg": [90],
    ...                        "cpos": [20], "cneg": [80]})
    >>> row = bcg_claims(counts).iloc[0]
    >>> round(math.sqrt(row["low"] * row["high"]), 6), float(row["coverage"])
    (0.5, 0.95)
    """
    tpos, tneg, cpos, cneg = (counts[c].to_numpy(float) for c in ("tpos", "tneg", "cpos", "cneg"))
    y = np.log(tpos / (tpos + tneg)) - np.log(cpos / (cpos + cneg))
    v = 1 / tpos - 1 / (tpos + tneg) + 1 / cpos - 1 / (cpos + cneg)
    half = BCG_Z * np.sqrt(v)
    rows = []
    for i, rec in enumerate(counts.to_dict("records")):
        n_t, n_c = rec["tpos"] + rec["tneg"], rec["cpos"] + rec["cneg"]
        rows.append(
            {
                "claim_id": f"bcg-{i + 1:02d}",
                "region": "BCG vaccine",
                "quantity": "risk ratio",
                "source": f"{rec['author']} {rec['year']}",
                "low": math.exp(y[i] - half[i]),
                "high": math.exp(y[i] + half[i]),
                "kind": "range",
                "coverage": 0.95,
                "quote": (
                    f"tuberculosis cases: {rec['tpos']} of {n_t} vaccinated, {rec['cpos']} of {n_c} unvaccinated "
                    "(Colditz et al. 1994, JAMA 271:698-702; metafor dat.bcg)"
                ),
                "note": (
                    f"derived: risk ratio {math.exp(y[i]):.4g} (log {y[i]:.4f}), variance of the log "
                    f"v = 1/tpos - 1/(tpos+tneg) + 1/cpos - 1/(cpos+cneg) = {v[i]:.4f}; "
                    f"range = exp(log RR -+ {BCG_Z} sqrt(v)), coverage 0.95"
                ),
                **{c: rec[c] for c in ("year", "tpos", "tneg", "cpos", "cneg", "ablat") if c in rec},
            }
        )
    out = pd.DataFrame(rows)
    out.attrs["hierarchy"] = {}
    return out
