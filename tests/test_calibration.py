"""The calibration study in small (``benchmarks/calibration.py``): model-true worlds.

24 simulated problems sharing one design (one compile), fixed seeds. The
full study (300 problems, five scenarios) is ``python
benchmarks/calibration.py``; its tables are in ``docs/calibration.md``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _calibration():
    spec = importlib.util.spec_from_file_location("calibration", ROOT / "benchmarks" / "calibration.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["calibration"] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def study():
    cal = _calibration()
    todo = cal.setups(24, 1, ["model-true"])
    df, infos = cal.run(todo, workers=1, progress=False)
    return cal, df, infos


@pytest.mark.slow
def test_model_true_90_percent_intervals_cover_as_stated(study):
    """Coverage of leaf values by 90% intervals is 0.9 within three standard errors.

    The 12 leaves of one problem share its sources' biases, so they are not
    independent: the standard error is that of the mean of the 24
    per-problem coverages (a cluster standard error), which is about twice
    the naive binomial one here.
    """
    cal, df, infos = study
    assert sum(i["compiles"] for i in infos) == 1  # one design, one compiled model
    leaf = df[(df["method"] == "model") & (df["target"] == "leaf") & (df["level"] == 0.9)]
    per_problem = leaf.groupby("problem")["covered"].mean()
    assert len(per_problem) == 24
    se = per_problem.std(ddof=1) / math.sqrt(len(per_problem))
    naive = math.sqrt(0.9 * 0.1 / len(leaf))
    assert abs(per_problem.mean() - 0.9) < 3 * max(se, naive), (per_problem.mean(), se)


@pytest.mark.slow
def test_model_beats_every_baseline_on_the_interval_score(study):
    """On the cells every method estimates, the model's mean 90% interval score is the lowest."""
    cal, df, _ = study
    comp = cal.comparison(df).iloc[0]
    model = comp["model IS"]
    others = {k: v for k, v in comp.items() if k.endswith(" IS") and k != "model IS"}
    assert set(others) == {"midpoint IS", "envelope IS", "inverse-variance IS", "dersimonian-laird IS"}
    assert all(model < v for v in others.values()), comp.to_dict()
    assert np.isfinite(model)
