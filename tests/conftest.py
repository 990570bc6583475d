"""Shared fixtures: a few real fits (fixed seeds) reused by the slow tests."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

import estimates as est

# CI runs hypothesis derandomized, so a submission passes or fails on its
# code, not on the examples drawn that day; local runs keep exploring.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Sources of the simulated world used for recovery: log-scale biases.
SIM_BIASES = {"S0": 0.0, "S1": 0.4, "S2": -0.2, "S3": 0.1}
SIM_HIERARCHY = {"North": ["L1", "L2"]}


def simulate_world(seed: int = 20221) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small world with known truth: 3 leaves + 1 aggregate, 4 years, 4 biased sources.

    Claims are ranges whose centres are the biased truth plus noise matching
    their stated 90% spread, some one-sided bounds and some points, and a few
    claims on the aggregate. Returns ``(claims, truth)``.
    """
    rng = np.random.default_rng(seed)
    years = [2018, 2019, 2020, 2021]
    base = {"L1": np.log(1000.0), "L2": np.log(3000.0), "L3": np.log(500.0)}
    truth_rows = []
    logn = {}
    for leaf, b in base.items():
        x = b
        for y in years:
            logn[(leaf, y)] = x
            truth_rows.append({"region": leaf, "time": y, "truth": float(np.exp(x))})
            x = x + rng.normal(0, 0.3)
    for y in years:
        truth_rows.append(
            {"region": "North", "time": y, "truth": float(np.exp(logn[("L1", y)]) + np.exp(logn[("L2", y)]))}
        )
    rows = []
    half = 0.2  # stated half-width on the log scale: sd 0.2 / 1.645 = 0.12
    sd = half / 1.645
    sources = list(SIM_BIASES)
    for (leaf, y), x in logn.items():
        for s in rng.choice(sources, size=3, replace=False):
            c = x + SIM_BIASES[s] + rng.normal(0, sd)
            kind = rng.choice(["range", "range", "at_least", "about"])
            if kind == "range":
                rows.append(
                    {
                        "region": leaf,
                        "time": y,
                        "source": s,
                        "low": round(np.exp(c - half)),
                        "high": round(np.exp(c + half)),
                    }
                )
            elif kind == "at_least":
                # "more than X": X a little below the (biased) truth
                rows.append({"region": leaf, "time": y, "source": s, "low": round(np.exp(c - 0.3))})
            else:
                rows.append({"region": leaf, "time": y, "source": s, "value": round(np.exp(c), -1)})
    for y in years:
        tot = np.log(np.exp(logn[("L1", y)]) + np.exp(logn[("L2", y)]))
        s = rng.choice(sources)
        c = tot + SIM_BIASES[s] + rng.normal(0, sd)
        rows.append(
            {
                "region": "North",
                "time": y,
                "source": s,
                "low": round(np.exp(c - half)),
                "high": round(np.exp(c + half)),
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(truth_rows)


@pytest.fixture(scope="session")
def world():
    return simulate_world()


@pytest.fixture(scope="session")
def world_fit(world):
    claims, _ = world
    return est.reconcile(claims, hierarchy=SIM_HIERARCHY, random_seed=11)


@pytest.fixture(scope="session")
def example_fit():
    """The article example at default settings (the README's demo)."""
    return est.reconcile(est.load_example("isis-2022"))
