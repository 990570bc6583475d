"""Embedded example datasets."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

from ..errors import OptionError

EXAMPLES = ("isis-2022",)


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
        A claims table (DESIGN section 3) with ``claim_id``, ``quote`` and a
        ``note`` on how each row was read from its source.

    Examples
    --------
    >>> import estimates as est
    >>> claims = est.load_example("isis-2022")
    >>> len(claims), sorted(claims.attrs["hierarchy"])
    (10, ['Africa (six countries)', 'Iraq and Syria'])
    """
    if name not in EXAMPLES:
        raise OptionError(f"unknown example {name!r}; available: {', '.join(EXAMPLES)}")
    base = resources.files(__package__)
    with (base / f"{name}.csv").open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, dtype={"time": object, "since": object})
    with (base / f"{name}.hierarchy.json").open("r", encoding="utf-8") as fh:
        df.attrs["hierarchy"] = json.load(fh)
    return df


def example_hierarchy(name: str = "isis-2022") -> dict[str, list[str]]:
    """The hierarchy shipped with an embedded example.

    Examples
    --------
    >>> example_hierarchy("isis-2022")["Iraq and Syria"]
    ['Iraq', 'Syria']
    """
    return dict(load_example(name).attrs["hierarchy"])
