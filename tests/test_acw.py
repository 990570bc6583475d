"""The embedded example ``acw-strengths``: American Civil War troop strengths from five sources.

The shipped CSV is built by ``scripts/build_acw_dataset.py`` from J. B.
Arnold's acw_battle_data, read in place from ``../shared/data/acw`` (CI has
that folder; users do not, so the tests that need it skip without it). The
spot checks read Arnold's raw files directly, not through the builder, so a
mistake in the builder's cross-walks shows up as a wrong number.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import estimates as est
from estimates.api import prepare
from estimates.claims import Hierarchy
from estimates.datasets import EXAMPLES
from estimates.interpret import Interpretation, roundness_sd

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_acw_dataset.py"
SHIPPED = ROOT / "src" / "estimates" / "datasets" / "acw-strengths.csv"
ACW = ROOT.parent / "shared" / "data" / "acw"
needs_acw = pytest.mark.skipif(
    not ACW.is_dir(), reason=f"acw_battle_data not found at {ACW} (tests read it from ../shared/data/acw)"
)

SOURCES = ["Livermore 1900", "Bodart 1908", "Clodfelter 2008", "CWSAC", "Wikipedia"]


def builder():
    """The build script as a module (it lives outside the package, in scripts/)."""
    spec = importlib.util.spec_from_file_location("build_acw_dataset", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return est.load_example("acw-strengths")


def claim(claims: pd.DataFrame, region: str, source: str) -> pd.Series:
    rows = claims[(claims["region"] == region) & (claims["source"] == source)]
    assert len(rows) == 1, f"expected one claim by {source} about {region}, found {len(rows)}"
    return rows.iloc[0]


# ----------------------------------------------------------------------------- the shipped table


def test_shipped_table_has_one_claim_per_battle_side_and_source(claims):
    assert "acw-strengths" in EXAMPLES
    assert len(claims) == 409 and claims["claim_id"].is_unique
    assert claims.attrs["hierarchy"] == {}
    assert not claims.duplicated(["battle_id", "side", "source"]).any()
    assert sorted(claims["source"].unique()) == sorted(SOURCES)
    assert set(claims["side"]) == {"Union", "Confederate"} and (claims["quantity"] == "troops").all()
    short = claims["side"].map({"Union": "US", "Confederate": "CS"})
    assert (claims["region"] == claims["battle"] + " (" + short + ")").all()
    # one battle name per CWSAC id and back
    assert claims.groupby("battle_id")["battle"].nunique().max() == 1
    assert claims.groupby("battle")["battle_id"].nunique().max() == 1
    assert "time" not in claims.columns


def test_every_kept_battle_has_at_least_four_sources_on_each_side(claims):
    n = claims.groupby(["battle_id", "side"])["source"].nunique().unstack("side")
    assert n.notna().all().all() and (n >= 4).all().all()
    assert len(n) == 48


def test_numbers_are_whole_and_kinds_are_explicit(claims):
    assert set(claims["kind"]) == {"about", "range"}
    about = claims["kind"] == "about"
    assert claims.loc[about, "value"].notna().all() and claims.loc[about, ["low", "high"]].isna().all().all()
    rng = claims.loc[~about]
    assert rng["value"].isna().all() and (rng["low"] < rng["high"]).all()
    nums = claims[["low", "high", "value"]].to_numpy(float)
    finite = nums[~np.isnan(nums)]
    assert (finite == np.round(finite)).all() and (finite > 0).all()


def test_the_library_validates_every_row_without_sampling(claims):
    before = claims.copy()
    cs, st = prepare(claims, Hierarchy.from_mapping({}), Interpretation(), errors="skip")
    assert (cs.table["status"] == "used").all()
    assert len(st.claim_row) == len(claims) == len(cs.used)
    assert st.quantities == ["troops"] and len(st.cells) == 96
    assert sorted(st.sources["source"]) == sorted(SOURCES)
    pd.testing.assert_frame_equal(claims, before)  # never the caller's frame


def test_a_bare_strength_is_read_as_about_not_as_an_exact_count(claims):
    # without kind, 75,316 (not a multiple of ten) would be an exact count with a 5% spread;
    # as "about" it gets the library's floor for rounded numbers (roundness of 75,316 is 2)
    interp = Interpretation()
    cs, st = prepare(claims, Hierarchy.from_mapping({}), interp)
    row = int(claim(claims, "Antietam (US)", "Livermore 1900").name)
    j = int(np.flatnonzero(st.claim_row == row)[0])
    assert math.isclose(st.claim_a[j], math.log(75316))
    assert math.isclose(st.claim_spread[j], roundness_sd(75316, interp)) and st.claim_spread[j] == interp.about_floor_sd


def test_cwsac_is_one_source_in_two_editions():
    b = builder()

    def row(lo, hi, file):
        return {"battle_id": "X", "side": "Union", "source": "CWSAC", "lo": lo, "hi": hi, "source_file": file}

    first = [row(600.0, 600.0, "cwsac_forces.csv")]
    assert b.cwsac_rows(first, [row(570.0, 570.0, "cws2_forces.csv")])[0]["lo"] == 570.0  # the update wins
    merged = b.cwsac_rows(first, [row(600.0, 600.0, "cws2_forces.csv")])
    assert len(merged) == 1 and "gives the same" in merged[0]["cwsac_note"]
    assert b.cwsac_rows(first, [])[0]["source_file"] == "cwsac_forces.csv"  # the report where the update is silent


# ----------------------------------------------------------------------------- against Arnold's files


@needs_acw
def test_shipped_csv_is_exactly_what_the_build_script_writes():
    b = builder()
    assert SHIPPED.read_text(encoding="utf-8") == b.render(b.build(ACW)), (
        "src/estimates/datasets/acw-strengths.csv is stale: run python scripts/build_acw_dataset.py"
    )


@needs_acw
def test_spot_checks_against_the_raw_files(claims):
    # Livermore's Antietam is his battle whose cross-walk entry points at CWSAC MD003
    liv_map = json.loads((ACW / "livermore_to_cwsac.json").read_text())
    liv_id = next(e["battles_from"][0] for e in liv_map if e["battles_to"] == ["MD003"])
    liv = pd.read_csv(ACW / "livermore_forces.csv")
    union = liv[(liv["battle_id"] == liv_id) & (liv["belligerent"] == "Union")]["str"].item()
    assert union == 75316 == claim(claims, "Antietam (US)", "Livermore 1900")["value"]
    confed = liv[(liv["battle_id"] == liv_id) & (liv["belligerent"] == "Confederate")]["str"].item()
    assert confed == claim(claims, "Antietam (CS)", "Livermore 1900")["value"]
    # Bodart's Antietam: all troops available, well above Livermore's engaged
    bod = pd.read_csv(ACW / "bodart1908_forces.csv")
    bod_row = claim(claims, "Antietam (US)", "Bodart 1908")
    raw = bod[(bod["battle_id"].astype(str) == bod_row["source_battle"]) & (bod["belligerent"] == "US")]
    assert raw["strength"].item() == bod_row["value"] == 85000
    # Wikipedia's First Bull Run, Confederate side: a min and a max, kept as a range
    wiki = pd.read_csv(ACW / "wikipedia_forces.csv")
    w = wiki[(wiki["battle_id"] == "First_Battle_of_Bull_Run") & (wiki["belligerent"] == "Confederate")]
    r = claim(claims, "First Bull Run (CS)", "Wikipedia")
    assert (w["strength_min"].item(), w["strength_max"].item()) == (r["low"], r["high"]) == (32000, 34000)
    assert r["kind"] == "range"
    # CWSAC, filed under the CWSAC id itself: at Antietam the update (cws2_forces.csv) gives the Union
    # strength; at Gettysburg it gives none, so the 1993 report's (cwsac_forces.csv) is used
    cws1, cws2 = pd.read_csv(ACW / "cwsac_forces.csv"), pd.read_csv(ACW / "cws2_forces.csv")
    a = cws2[(cws2["battle"] == "MD003") & (cws2["belligerent"] == "US")]["strength"].item()
    assert a == claim(claims, "Antietam (US)", "CWSAC")["value"] == 60000
    assert math.isnan(cws2[(cws2["battle"] == "PA002") & (cws2["belligerent"] == "US")]["strength"].item())
    g = cws1[(cws1["battle"] == "PA002") & (cws1["belligerent"] == "US")]
    gett = claim(claims, "Gettysburg (US)", "CWSAC")
    assert g["strength_min"].item() == g["strength_max"].item() == gett["value"]
    assert gett["source_file"] == "cwsac_forces.csv" and gett["note"].startswith("the 1993 report")


@needs_acw
def test_campaigns_are_not_matched_to_one_battle():
    # Livermore's entries spanning several CWSAC battles ("Chancellorsville and Fredericksburg, May 1-4")
    # must not become claims
    b = builder()
    liv_map = json.loads((ACW / "livermore_to_cwsac.json").read_text())
    many = {str(e["battles_from"][0]) for e in liv_map if len(e["battles_to"]) > 1}
    assert many, "expected Livermore entries that span several CWSAC battles"
    raw = b.raw_claims(ACW)
    assert not raw[(raw["source"] == "Livermore 1900") & raw["source_battle"].isin(many)].shape[0]
    # and the NPS combination is not a source
    assert "nps_forces.csv" not in set(raw["source_file"])
