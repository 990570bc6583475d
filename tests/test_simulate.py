"""``estimates.simulate``: seeded worlds whose claims follow the model's reading. No MCMC."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import estimates as est
from estimates.api import prepare
from estimates.claims import Hierarchy, read_claims
from estimates.errors import OptionError
from estimates.interpret import Interpretation
from estimates.model import signature


def _structure(world):
    return prepare(read_claims(world.claims), Hierarchy.from_mapping(world.hierarchy), Interpretation())[1]


def test_same_seed_same_world_and_the_caller_gets_a_valid_claims_table():
    a, b = est.simulate(seed=3), est.simulate(seed=3)
    pd.testing.assert_frame_equal(a.claims, b.claims)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    c = est.simulate(seed=4)
    assert not a.truth["log_count"].equals(c.truth["log_count"])
    res_cs, st = prepare(read_claims(a.claims), Hierarchy.from_mapping(a.hierarchy), Interpretation())
    assert (res_cs.table["status"] == "used").all()  # every simulated claim is valid input
    assert len(st.claim_row) == len(a.claims)


def test_the_aggregate_is_the_sum_of_its_leaves_and_every_leaf_cell_has_a_claim():
    w = est.simulate(regions=4, periods=5, seed=1)
    t = w.truth.pivot(index="time", columns="region", values="count")
    np.testing.assert_allclose(t["All"], t[["R1", "R2", "R3", "R4"]].sum(axis=1), rtol=1e-12)
    leaf_cells = {(r, y) for r in ["R1", "R2", "R3", "R4"] for y in t.index}
    assert leaf_cells <= set(zip(w.claims["region"], w.claims["time"], strict=True))
    assert w.hierarchy == {"All": ["R1", "R2", "R3", "R4"]}


def test_a_design_seed_fixes_the_layout_so_worlds_share_a_compiled_model():
    sigs = {signature(_structure(est.simulate(seed=s, design_seed=7))) for s in range(5)}
    assert len(sigs) == 1
    assert signature(_structure(est.simulate(seed=0, design_seed=8))) not in sigs


def test_model_true_ranges_are_centred_on_the_biased_truth():
    """Over many ranges, (log centre - log biased truth) / (stated sd) has mean 0 and sd = reliability.

    8,000-odd ranges: the standard error of the mean is about 0.015; tolerance 0.06.
    """
    w = est.simulate(regions=40, periods=10, sources=6, claims_per_cell=4, kinds={"range": 1.0}, seed=2)
    c = w.claims[w.claims["since"].isna()].merge(w.truth, on=["region", "time"])
    c = c.merge(w.sources, on="source")
    centre = 0.5 * (np.log(c["low"]) + np.log(c["high"]))
    sd = (np.log(c["high"]) - np.log(c["low"])) / 2 / 1.6449
    z = (centre - c["log_count"] - c["log_bias"]) / (sd * c["reliability"])
    assert abs(z.mean()) < 0.06
    assert z.std() == pytest.approx(1.0, abs=0.06)


def test_misspecifications_do_what_they_say():
    base = est.simulate(regions=10, periods=6, sources=6, seed=5)
    assert not base.claims["wild"].any() and not base.sources["overconfident"].any()
    wild = est.simulate(regions=10, periods=6, sources=6, outliers=1.0, seed=5)
    assert wild.claims["wild"].all()
    over = est.simulate(regions=10, periods=6, sources=6, overconfident=0.5, seed=5)
    assert over.sources["overconfident"].sum() == 3
    maj = est.simulate(regions=10, periods=6, sources=6, biased_majority=math.log(1.5), seed=5)
    assert maj.sources["majority"].sum() == 4
    shift = maj.sources["log_bias"] - base.sources["log_bias"]
    np.testing.assert_allclose(shift[maj.sources["majority"]], math.log(1.5))
    np.testing.assert_allclose(shift[~maj.sources["majority"]], 0.0)


def test_sparse_worlds_have_one_or_two_claims_per_cell():
    w = est.simulate(regions=10, periods=6, claims_per_cell=1.0, seed=6)
    per = w.claims[w.claims["region"] != "All"].groupby(["region", "time"]).size()
    assert per.min() >= 1 and per.mean() < 2.0


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"regions": 0}, "regions=0"),
        ({"outliers": 1.5}, "outliers=1.5"),
        ({"kinds": {"rumour": 1.0}}, "unknown kinds"),
        ({"claims_per_cell": 0}, "claims_per_cell=0"),
    ],
)
def test_bad_options_raise(kw, match):
    with pytest.raises(OptionError, match=match):
        est.simulate(**kw)


def test_a_reference_source_is_exactly_unbiased_and_outside_the_majority():
    w = est.simulate(sources=4, biased_majority=math.log(1.5), reference=True, seed=9)
    s = w.sources.set_index("source")
    assert s.loc["S1", "log_bias"] == 0.0 and not s.loc["S1", "majority"]
    assert s["majority"].sum() == 3
