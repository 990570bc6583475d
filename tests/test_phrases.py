"""Text -> claim: ``parse_claim`` reads statements as people write them.

The case table below is grouped by form (ranges, numbers, bounds,
approximations, relative claims, words around the number). Meanings (which
kind a hedge gives, how wide "several hundred" is) come from the tables in
:mod:`estimates.interpret`, so expectations are built from those tables where
that reads well. Real messy strings come from the Onder (JPR) Syrian group
sizes, read in place from ``../shared/data`` (no licence: never copied here).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import estimates as est
from estimates.errors import ClaimError
from estimates.interpret import FRACTIONS, HEDGES, RATIO_WORDS, VAGUE, WORD_POINTS, bare_number_kind
from estimates.phrases import ClaimParseError, parse_claim

NAN = math.nan
ANY = object()  # "not checked"

ONDER = Path(__file__).parents[2] / "shared" / "data" / "onder_syria_rebel_group_sizes_IdeologyVars_JPR.csv"
needs_onder = pytest.mark.skipif(
    not ONDER.exists(), reason=f"Onder group-size data not found at {ONDER} (tests read it from ../shared/data)"
)


# ----------------------------------------------------------------------------- helpers


def _exp(kind, low=NAN, high=NAN, value=NAN, *, ratio=False, hedge=ANY, unit=None):
    return {"kind": kind, "low": low, "high": high, "value": value, "ratio": ratio, "hedge": hedge, "unit": unit}


def rng(low, high, value=NAN, **kw):
    return _exp("range", low, high, value, **kw)


def at_least(x, **kw):
    return _exp("at_least", low=x, **kw)


def at_most(x, **kw):
    return _exp("at_most", high=x, **kw)


def about(x, **kw):
    return _exp("about", value=x, **kw)


def exact(x, **kw):
    return _exp("exact", value=x, **kw)


def vague(word, scale=1.0):
    """The (low, high) the VAGUE table gives ``word`` times ``scale``: "several" x 100 -> (300, 900)."""
    lo, hi = VAGUE[word]
    return lo * scale, hi * scale


def assert_claim(got, exp, text):
    """``got`` (from parse_claim) matches ``exp``: kind, numbers (NaN where unstated), ratio, hedge, unit."""
    assert got["kind"] == exp["kind"], f"{text!r}: kind {got['kind']!r}, expected {exp['kind']!r}"
    for key in ("low", "high", "value"):
        want = exp[key]
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(got[key]), f"{text!r}: {key} = {got[key]!r}, expected NaN"
        else:
            assert got[key] == pytest.approx(want), f"{text!r}: {key} = {got[key]!r}, expected {want!r}"
    assert got["ratio"] is exp["ratio"], f"{text!r}: ratio = {got['ratio']!r}"
    if exp["hedge"] is not ANY:
        assert got["hedge"] == exp["hedge"], f"{text!r}: hedge = {got['hedge']!r}"
    if exp["unit"] is not ANY:
        assert got["unit"] == exp["unit"], f"{text!r}: unit = {got['unit']!r}"
    assert got["text"] == text
    a, b = got["span"]
    assert 0 <= a < b <= len(text), f"{text!r}: span {got['span']!r} outside the text"


# ----------------------------------------------------------------------------- the case table

CASES = [
    # --- ranges: connectors ---------------------------------------------------------------
    ("between 6,000 and 8,000", rng(6000, 8000, hedge="between")),
    ("between 6,000 to 8,000", rng(6000, 8000, hedge="between")),
    ("6,000 to 8,000", rng(6000, 8000)),
    ("6,000-8,000", rng(6000, 8000)),
    ("6,000 - 8,000", rng(6000, 8000)),
    ("from 6,000 to 8,000", rng(6000, 8000, hedge="from")),
    ("somewhere between 9,000 to 18,000 fighters", rng(9000, 18000, unit="fighters")),
    ("somewhere between 9,000 and 18,000 fighters", rng(9000, 18000, unit="fighters")),
    ("in the range of 8,000 to 16,000", rng(8000, 16000, hedge="in the range of")),
    ("ranging from 500 to 700 members", rng(500, 700, unit="members")),
    ("between 6,000 and 8,000 fighters", rng(6000, 8000, unit="fighters")),
    ("around 5,000 to 7,000", rng(5000, 7000)),
    # --- ranges: any dash -----------------------------------------------------------------
    ("6,000\u20138,000", rng(6000, 8000)),  # en dash
    ("6,000\u20148,000", rng(6000, 8000)),  # em dash
    ("6,000\u20128,000", rng(6000, 8000)),  # figure dash
    ("6,000\u20158,000", rng(6000, 8000)),  # horizontal bar
    ("6,000\u22128,000", rng(6000, 8000)),  # minus sign
    ("between 6,000\u20138,000 fighters", rng(6000, 8000, unit="fighters")),
    # --- ranges: shorthand scale on the second number only ---------------------------------
    ("20-25K", rng(20_000, 25_000)),
    ("20\u201325k fighters", rng(20_000, 25_000, unit="fighters")),
    ("six to eight thousand", rng(6000, 8000)),
    ("1.5-2 million", rng(1_500_000, 2_000_000)),
    ("1.5-2m", rng(1_500_000, 2_000_000)),
    ("between 5 and 10 thousand", rng(5000, 10_000)),
    ("between 2 and 3 million", rng(2_000_000, 3_000_000)),
    # --- ranges: plus or minus ------------------------------------------------------------
    ("5,000 plus or minus 500", rng(4500, 5500, hedge="plus or minus")),
    ("5,000 +/- 500", rng(4500, 5500)),
    ("5,000 \u00b1 500", rng(4500, 5500)),
    # --- ranges: low-best-high, best kept as value -----------------------------------------
    ("10,000-15,000-20,000", rng(10_000, 20_000, 15_000, hedge="low-best-high")),
    ("600-750-1,000", rng(600, 1000, 750)),
    ("1,400\u20131,550\u20131,800", rng(1400, 1800, 1550)),
    ("8,000-9,000,10,000", rng(8000, 10_000, 9000)),  # typo: comma for the second dash
    # --- numbers: thousands separators ----------------------------------------------------
    ("4,000", about(4000, hedge=None)),
    ("4\u2009000", about(4000)),  # thin space
    ("4\u202f000", about(4000)),  # narrow no-break space
    ("4 000", about(4000)),  # plain space
    ("4'000", about(4000)),  # apostrophe
    ("4\u2019000", about(4000)),  # right single quote as apostrophe
    ("1,234,567", exact(1_234_567)),
    ("1 234 567", exact(1_234_567)),
    ("1'234'567", exact(1_234_567)),
    ("1,082", exact(1082)),
    # --- numbers: decimals and bare counts (bare_number_kind) ------------------------------
    ("12.5", exact(12.5)),
    ("0.75", exact(0.75)),
    ("1,234.5", exact(1234.5)),
    ("54", exact(54)),
    ("15", exact(15)),
    ("10", exact(10)),  # below 20: a count
    ("20", about(20)),  # a multiple of ten from 20 up: rounded
    ("7,000", about(7000)),
    # --- numbers: scale words and suffixes ------------------------------------------------
    ("4k", about(4000)),
    ("4K", about(4000)),
    ("25k fighters", about(25_000, unit="fighters")),
    ("4 thousand", about(4000)),
    ("1.5 million", about(1_500_000)),
    ("1.5m", about(1_500_000)),
    ("2.5 mn", about(2_500_000)),
    ("2bn", about(2_000_000_000)),
    # --- numbers: number words ------------------------------------------------------------
    ("four thousand", about(4000)),
    ("five thousand", about(5000)),
    ("twelve", exact(12)),
    ("twenty-five", exact(25)),
    ("ninety-nine", exact(99)),
    ("two hundred and fifty", about(250)),
    ("a thousand", about(1000)),
    ("a million", about(1_000_000)),
    # --- numbers: word points (WORD_POINTS) -----------------------------------------------
    ("a dozen", about(WORD_POINTS["a dozen"], hedge="a dozen")),
    ("half a dozen", about(WORD_POINTS["half a dozen"])),
    ("a handful", about(WORD_POINTS["a handful"])),
    # --- numbers: vague quantities (VAGUE), read as ranges ---------------------------------
    ("several hundred", rng(*vague("several", 100), hedge="several hundred")),
    ("several thousand fighters", rng(*vague("several", 1000), unit="fighters")),
    ("a few thousand", rng(*vague("a few", 1000))),
    ("a few dozen", rng(*vague("a few", 12))),
    ("several dozen", rng(*vague("several", 12))),
    ("a couple of hundred", rng(*vague("a couple of", 100))),
    ("tens of thousands", rng(*vague("plural", 10 * 1000))),
    ("hundreds of thousands", rng(*vague("plural", 100 * 1000))),
    ("hundreds", rng(*vague("plural", 100), hedge="hundreds")),
    ("thousands", rng(*vague("plural", 1000))),
    ("dozens", rng(*vague("dozens"))),
    ("dozens of fighters", rng(*vague("dozens"), unit="fighters")),
    # --- lower bounds ---------------------------------------------------------------------
    ("more than 4,000", at_least(4000, hedge="more than")),
    ("over 4,000", at_least(4000, hedge="over")),
    ("at least 4,000", at_least(4000, hedge="at least")),
    ("not less than 4,000", at_least(4000, hedge="not less than")),
    ("no less than 4,000", at_least(4000, hedge="no less than")),
    ("no fewer than 4,000", at_least(4000, hedge="no fewer than")),
    ("upwards of 4,000", at_least(4000, hedge="upwards of")),
    ("in excess of 4,000", at_least(4000, hedge="in excess of")),
    ("greater than 4,000", at_least(4000)),
    ("well over 4,000", at_least(4000, hedge="well over")),
    ("4,000+", at_least(4000, hedge="+")),
    ("4,000 or more", at_least(4000, hedge="or more")),
    ("more than 2,000 detainees", at_least(2000, unit="detainees")),
    ("more than several hundred", at_least(vague("several", 100)[0])),
    # --- upper bounds ---------------------------------------------------------------------
    ("up to 4,000", at_most(4000, hedge="up to")),
    ("fewer than 4,000", at_most(4000, hedge="fewer than")),
    ("less than 4,000", at_most(4000, hedge="less than")),
    ("at most 4,000", at_most(4000, hedge="at most")),
    ("as many as 4,000", at_most(4000, hedge="as many as")),
    ("no more than 4,000", at_most(4000, hedge="no more than")),
    ("not more than 4,000", at_most(4000, hedge="not more than")),
    ("under 4,000", at_most(4000, hedge="under")),
    ("below 4,000", at_most(4000)),
    ("4,000 or fewer", at_most(4000, hedge="or fewer")),
    ("up to 4,000 prisoners", at_most(4000, unit="prisoners")),
    ("up to several thousand", at_most(vague("several", 1000)[1])),
    # --- approximations -------------------------------------------------------------------
    ("about 4,000", about(4000, hedge="about")),
    ("around 4,000", about(4000, hedge="around")),
    ("roughly 4,000", about(4000, hedge="roughly")),
    ("approximately 4,000", about(4000, hedge="approximately")),
    ("approx. 4,000", about(4000, hedge="approx.")),
    ("some 4,000", about(4000, hedge="some")),
    ("an estimated 4,000", about(4000, hedge="an estimated")),
    ("4,000 or so", about(4000, hedge="or so")),
    ("4,000 odd", about(4000, hedge="odd")),
    ("close to 4,000", about(4000, hedge="close to")),
    ("nearly 4,000", about(4000, hedge="nearly")),
    ("almost 4,000", about(4000, hedge="almost")),
    ("approaching 4,000", about(4000, hedge="approaching")),
    ("circa 4,000", about(4000, hedge="circa")),
    ("c. 4,000", about(4000, hedge="c.")),
    ("~4,000", about(4000, hedge="~")),
    ("~ 4,000", about(4000, hedge="~")),
    ("about a dozen", about(WORD_POINTS["a dozen"], hedge="about")),
    # --- relative claims: ratio words (RATIO_WORDS) ----------------------------------------
    ("doubled", about(RATIO_WORDS["doubled"], ratio=True, hedge="doubled")),
    ("more than doubled", at_least(RATIO_WORDS["doubled"], ratio=True, hedge="more than")),
    ("nearly doubled", about(RATIO_WORDS["doubled"], ratio=True, hedge="nearly")),
    ("tripled", about(RATIO_WORDS["tripled"], ratio=True)),
    ("trebled", about(RATIO_WORDS["trebled"], ratio=True)),
    ("quadrupled", about(RATIO_WORDS["quadrupled"], ratio=True)),
    ("halved", about(RATIO_WORDS["halved"], ratio=True)),
    ("3-fold", about(3, ratio=True)),
    # --- relative claims: percentages (184% increase -> 2.84) ------------------------------
    ("increase of 184%", exact(2.84, ratio=True)),
    ("an increase of 184 percent", exact(2.84, ratio=True)),
    ("up 184 percent", exact(2.84, ratio=True)),
    ("a 184% rise", exact(2.84, ratio=True)),
    ("rose 40%", about(1.4, ratio=True)),
    ("numbers rose 40 per cent", about(1.4, ratio=True)),
    ("rose by about 40%", about(1.4, ratio=True, hedge="about")),
    ("fell 40%", about(0.6, ratio=True)),
    ("a 40% drop", about(0.6, ratio=True)),
    ("fell by more than 40%", at_most(0.6, ratio=True)),  # ratio below 0.6
    # --- relative claims: fractions (FRACTIONS; fell by a third -> 2/3) ---------------------
    ("fell by a third", about(1 - FRACTIONS["a third"], ratio=True, hedge="a third")),
    ("fell by one third", about(2 / 3, ratio=True)),
    ("fell by a quarter", about(1 - FRACTIONS["a quarter"], ratio=True)),
    ("declined by a quarter", about(0.75, ratio=True)),
    ("fell by half", about(0.5, ratio=True)),
    ("fell by a half", about(0.5, ratio=True)),
    ("dropped by half", about(0.5, ratio=True)),
    ("fell by two thirds", about(1 - FRACTIONS["two thirds"], ratio=True)),
    ("declined by two thirds", about(1 / 3, ratio=True)),
    ("fell by three quarters", about(1 - FRACTIONS["three quarters"], ratio=True)),
    # --- words around the number: ignored, unit returned -----------------------------------
    ("6,000 fighters", about(6000, unit="fighters")),
    ("2,000 members", about(2000, unit="members")),
    ("4,000 militants in Syria alone", about(4000, unit="militants")),
    ("54 attacks", exact(54, unit="attacks")),
    ("the 10,000 or so ISIS members", about(10_000, unit="members")),
    ("reaching more than 4,000 fighters", at_least(4000, unit="fighters")),
    ("some 300 prisoners held", about(300, unit="prisoners")),
    ("an estimated 1,000 foreign fighters", about(1000, unit="fighters")),
    ("fighters numbering around 3,000", about(3000, unit="fighters")),  # unit before the number
    ("ISIS \u2014 about\u00a04,000 fighters", about(4000, unit="fighters")),
    ("Fighters: 20\u201425K (est.)", rng(20_000, 25_000, unit="fighters")),
    ("\u2014 some 1\u202f500 prisoners", about(1500, unit="prisoners")),
]


def _case_params():
    for case in CASES:
        yield case if hasattr(case, "marks") else pytest.param(*case, id=case[0])


@pytest.mark.parametrize("text,expected", list(_case_params()))
def test_case_table(text, expected):
    """Each written form reads as the stated kind, bounds, ratio flag, hedge and unit."""
    assert_claim(parse_claim(text), expected, text)


def test_case_table_is_broad():
    """The table keeps at least 120 cases and every kind of claim, counts and ratios both."""
    assert len(CASES) >= 120
    exps = [c.values[1] if hasattr(c, "values") else c[1] for c in CASES]
    assert {e["kind"] for e in exps} == {"range", "at_least", "at_most", "about", "exact"}
    assert any(e["ratio"] for e in exps) and not all(e["ratio"] for e in exps)


# ----------------------------------------------------------------------------- hedge tables


def _render_before(hedge, number="5,000"):
    """'more than 5,000' but '~5,000': a symbol hedge attaches without a space."""
    return f"{hedge} {number}" if hedge[-1].isalnum() or hedge[-1] == "." else f"{hedge}{number}"


def _render_after(hedge, number="5,000"):
    """'5,000 or more' but '5,000+'."""
    return f"{number} {hedge}" if hedge[0].isalnum() else f"{number}{hedge}"


def _hedge_params(kinds, render):
    for kind in kinds:
        for hedge in HEDGES[kind]:
            yield pytest.param(kind.removesuffix("_after"), render(hedge), id=f"{kind}:{hedge}")


@pytest.mark.parametrize("kind,text", list(_hedge_params(("at_least", "at_most", "about"), _render_before)))
def test_every_leading_hedge_gives_its_kind(kind, text):
    """Every hedge in HEDGES[at_least/at_most/about], put before 5,000, gives that kind (new hedges included)."""
    got = parse_claim(text)
    assert got["kind"] == kind, f"{text!r} read as {got['kind']!r}"
    assert 5000 in (got["low"], got["high"], got["value"])
    assert got["ratio"] is False


@pytest.mark.parametrize(
    "kind,text", list(_hedge_params(("at_least_after", "at_most_after", "about_after"), _render_after))
)
def test_every_trailing_hedge_gives_its_kind(kind, text):
    """Every hedge in HEDGES[*_after], put after 5,000, gives that kind."""
    got = parse_claim(text)
    assert got["kind"] == kind, f"{text!r} read as {got['kind']!r}"
    assert 5000 in (got["low"], got["high"], got["value"])


@pytest.mark.parametrize(
    "text",
    ["about5,000", "more than5,000 fighters", "up to5,000"],
)
def test_number_glued_to_a_word_is_never_read_as_its_digit_group_tail(text):
    """Text from PDFs loses spaces ('about5,000'): read 5,000 or refuse, never the tail '000' as 0."""
    try:
        got = parse_claim(text)
    except ClaimParseError:
        return
    assert 5000 in (got["low"], got["high"], got["value"]), f"{text!r} read as {got}"


# ----------------------------------------------------------------------------- errors and options


@pytest.mark.parametrize(
    "text,why",
    [
        ("no number here", "holds no number"),
        ("fighters", "holds no number"),
        ("", "no statement"),
        ("   ", "no statement"),
        ("54 attacks and 12 bombings", "more than one number"),
        ("5,000 fighters in 3 provinces", "more than one number"),
        ("8,000 to 6,000", "down to"),
        ("1.082", "ambiguous"),
        ("the 1.082 fighters", "ambiguous"),
    ],
)
def test_unreadable_text_raises_with_the_text_and_the_reason(text, why):
    """No number, unrelated numbers, a descending range and an ambiguous '1.082' are refused, saying why."""
    with pytest.raises(ClaimParseError) as info:
        parse_claim(text)
    msg = str(info.value)
    assert repr(text) in msg
    assert why in msg
    assert isinstance(info.value, ClaimError) and isinstance(info.value, ValueError)


def test_unknown_decimal_option_is_refused():
    """decimal= accepts only None, '.' and ','."""
    with pytest.raises(ClaimParseError, match="decimal"):
        parse_claim("4,000", decimal=";")


@pytest.mark.parametrize(
    "text,decimal,kind,value",
    [
        ("1.082", ",", "exact", 1082),
        ("1,5 million", ",", "about", 1_500_000),
        ("1.234.567", ",", "exact", 1_234_567),
        ("1,5", ",", "exact", 1.5),
        ("1.082", ".", "exact", 1.082),
        ("4,000", ".", "about", 4000),
        ("1,082", None, "exact", 1082),
        ("1.08", None, "exact", 1.08),
    ],
)
def test_decimal_mark_option(text, decimal, kind, value):
    """decimal=',' reads dots as thousands groups; decimal='.' reads '1.082' as just over one."""
    got = parse_claim(text, decimal=decimal)
    assert got["kind"] == kind
    assert got["value"] == pytest.approx(value)


def test_european_range_with_decimal_comma():
    """A dotted-thousands range reads with decimal=','."""
    got = parse_claim("6.000-8.000", decimal=",")
    assert (got["kind"], got["low"], got["high"]) == ("range", 6000, 8000)


# ----------------------------------------------------------------------------- dates and spans


@pytest.mark.parametrize(
    "text,expected",
    [
        ("more than 4,000 fighters in 2022", at_least(4000, unit="fighters")),
        ("54 attacks in April 2022", exact(54, unit="attacks")),
        ("carried out 54 attacks in northeastern Syria in April", exact(54, unit="attacks")),
        ("in 2021 about 3,000 fighters", about(3000, unit="fighters")),
        ("since 2020, up to 300 attacks", at_most(300, unit="attacks")),
        ("about 5,000 (2019)", about(5000)),
        ("4,000 fighters in 2014-15", about(4000, unit="fighters")),
    ],
)
def test_years_in_date_phrases_are_not_claims(text, expected):
    """A year after 'in', 'since', a month or in brackets is a date, not a second number."""
    assert_claim(parse_claim(text), expected, text)


@pytest.mark.parametrize(
    "text,matched",
    [
        ("reaching more than 4,000 fighters", "more than 4,000"),
        ("reaching more than 4\u2009000 fighters", "more than 4\u2009000"),
        ("the 10,000 or so ISIS members", "10,000 or so"),
        ("between 6,000\u20138,000 fighters", "between 6,000\u20138,000"),
        ("ISIS \u2014 about\u00a04,000 fighters", "about\u00a04,000"),
        ("Fighters: 20\u201425K (est.)", "20\u201425K"),
        ("\u2014 some 1\u202f500 prisoners", "some 1\u202f500"),
        ("has more than doubled since US forces left", "more than doubled"),
        ("an increase of 184 percent compared to the previous month", "an increase of 184 percent"),
        ("Group size: 10,000\u201315,000\u201320,000 (est.)", "10,000\u201315,000\u201320,000"),
        ("smuggle up to 4,000 IS prisoners", "up to 4,000"),
    ],
)
def test_span_points_at_the_matched_words(text, matched):
    """text[span] is the claim's words in the original text, dashes and odd spaces included."""
    a, b = parse_claim(text)["span"]
    assert text[a:b] == matched


# ----------------------------------------------------------------------------- the article example

EXAMPLE = est.load_example("isis-2022")


@pytest.mark.parametrize("row", [pytest.param(r, id=r.claim_id) for r in EXAMPLE.itertuples()])
def test_article_example_claims_parse_to_their_columns(row):
    """Each claim text of the shipped example gives the row's kind, numbers and ratio (since set)."""
    got = parse_claim(row.claim)
    ratio = isinstance(row.since, str) and row.since != ""
    assert_claim(got, _exp(row.kind, row.low, row.high, row.value, ratio=ratio, unit=ANY), row.claim)


# ----------------------------------------------------------------------------- real messy strings (Onder)

ONDER_EXPECTED = {
    "10,000-15,000-20,000": rng(10_000, 20_000, 15_000, hedge="low-best-high"),
    "20,000-31,500": rng(20_000, 31_500),
    "5,000-7,000-10,000": rng(5000, 10_000, 7000),
    "30,000-50,000": rng(30_000, 50_000),
    "7,000-8,000-11,000": rng(7000, 11_000, 8000),
    "1,500-5,000-7,000": rng(1500, 7000, 5000),
    "8,000-9,000,10,000": rng(8000, 10_000, 9000),  # typo: comma for a dash
    "10,000-15,000": rng(10_000, 15_000),
    "5,000-12,000": rng(5000, 12_000),
    "12,000-17,000-20,000": rng(12_000, 20_000, 17_000),
    "2,000": about(2000, hedge=None),  # a bare multiple of ten
    "2,500": about(2500),
    "7,000-9,000-10,000": rng(7000, 10_000, 9000),
    "2,000-5,000-13,000": rng(2000, 13_000, 5000),
    "7,000-10,000-14,000": rng(7000, 14_000, 10_000),
    "30,000-38,000-40,000": rng(30_000, 40_000, 38_000),
    "3,000-4,000,5,000": rng(3000, 5000, 4000),  # the same typo
    "1,400-1,550-1,800": rng(1400, 1800, 1550),
    "600-800-1,000": rng(600, 1000, 800),
    "2,000-6,000-7,000": rng(2000, 7000, 6000),
    "1,800": about(1800),
    "900-1,300": rng(900, 1300),
    "600-750-1,000": rng(600, 1000, 750),
    "3,000": about(3000),
    "500-900-1,500": rng(500, 1500, 900),
    "4,000-4,500-5,000": rng(4000, 5000, 4500),
}


def _onder_rows():
    with ONDER.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@needs_onder
def test_onder_table_covers_every_distinct_string():
    """The explicit table below lists exactly the distinct non-blank GroupSize_full strings of the file."""
    values = {r["GroupSize_full"] for r in _onder_rows()}
    assert "" in values  # the file has blanks
    assert values - {""} == set(ONDER_EXPECTED)


@needs_onder
@pytest.mark.parametrize("text", list(ONDER_EXPECTED))
def test_onder_strings(text):
    """Each distinct real string reads as the hand-checked claim: ranges, low-best-high, typos, points."""
    assert_claim(parse_claim(text), ONDER_EXPECTED[text], text)


@needs_onder
def test_onder_blank_is_refused():
    """A blank GroupSize_full cell is no claim."""
    blanks = [r for r in _onder_rows() if not r["GroupSize_full"].strip()]
    assert blanks
    for r in blanks:
        with pytest.raises(ClaimParseError, match="no statement"):
            parse_claim(r["GroupSize_full"])


@needs_onder
def test_onder_every_value_parses_consistently():
    """Every non-blank string parses; ranges keep low <= value <= high; GroupSize lies in the stated claim."""
    rows = [r for r in _onder_rows() if r["GroupSize_full"].strip()]
    assert len(rows) >= 25
    for r in rows:
        text = r["GroupSize_full"]
        got = parse_claim(text)
        size = float(r["GroupSize"])
        if got["kind"] == "range":
            assert got["low"] <= got["high"], text
            if not math.isnan(got["value"]):
                assert got["low"] <= got["value"] <= got["high"], text
            assert got["low"] <= size <= got["high"], (text, size)
        else:
            assert got["kind"] in ("about", "exact"), text
            assert got["value"] == size, (text, size)


# ----------------------------------------------------------------------------- property tests

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int, joiner: str = "-") -> str:
    """English words for 1..99: 'twenty-five' (or 'twenty five')."""
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (joiner + _ONES[ones] if ones else "")


THOUSANDS_SEPARATORS = ("", ",", "'", "\u2019", "\u2009", "\u202f", " ")
DASHES = ("-", "\u2013", "\u2014", "\u2012", "\u2015")


def grouped(n: int, sep: str) -> str:
    """``n`` with ``sep`` between groups of three digits ('' for plain digits)."""
    return f"{n:,}".replace(",", sep)


@st.composite
def rendered_numbers(draw):
    """(text, value): a positive number written in one of the supported styles."""
    style = draw(st.sampled_from(["digits", "decimal", "k", "thousand", "million", "words", "words thousand"]))
    if style == "digits":
        n = draw(st.integers(1, 10**9))
        return grouped(n, draw(st.sampled_from(THOUSANDS_SEPARATORS))), n
    if style == "decimal":
        whole, cents = draw(st.integers(0, 10**6)), draw(st.integers(1, 99))
        sep = draw(st.sampled_from(("", ",")))
        return f"{grouped(whole, sep)}.{cents:02d}", whole + cents / 100
    if style == "k":
        m = draw(st.integers(1, 999_999))
        return f"{m}{draw(st.sampled_from('kK'))}", m * 1000
    if style == "thousand":
        m = draw(st.integers(1, 999_999))
        return f"{m} thousand", m * 1000
    if style == "million":
        m = draw(st.integers(1, 999))
        return f"{m} million", m * 1_000_000
    n = draw(st.integers(2, 99))
    words = number_words(n, draw(st.sampled_from("- ")))
    return (words, n) if style == "words" else (f"{words} thousand", n * 1000)


@settings(max_examples=300, deadline=None, database=None)
@given(rendered_numbers(), st.sampled_from(["", " fighters", " members"]))
def test_property_any_rendered_number_reads_back(rendered, tail):
    """Any positive number in any supported style (separators, k/thousand/million, words) reads back."""
    text, value = rendered
    text += tail
    got = parse_claim(text)
    assert got["kind"] in ("exact", "about")
    assert got["kind"] == bare_number_kind(value)
    assert got["value"] == pytest.approx(value, rel=1e-12)
    assert got["ratio"] is False
    assert got["unit"] == (tail.strip() or None)


def _range_number(draw, n):
    # plain digits only where they cannot be a year: 'from 2014 to ...' is a date phrase on purpose
    plain_ok = not (1900 <= n <= 2099)
    return str(n) if plain_ok and draw(st.booleans()) else f"{n:,}"


@st.composite
def rendered_ranges(draw):
    """(text, low, high): an ascending range joined by any dash or connector."""
    low = draw(st.integers(1, 10**7))
    high = low + draw(st.integers(1, 10**7))
    a, b = _range_number(draw, low), _range_number(draw, high)
    form = draw(st.sampled_from(["dash", "to", "spaced dash", "between and", "from to", "between to"]))
    if form == "dash":
        pad = draw(st.sampled_from(["", " "]))
        text = f"{a}{pad}{draw(st.sampled_from(DASHES))}{pad}{b}"
    else:
        text = {
            "to": f"{a} to {b}",
            "spaced dash": f"{a} - {b}",
            "between and": f"between {a} and {b}",
            "from to": f"from {a} to {b}",
            "between to": f"between {a} to {b}",
        }[form]
    return text, low, high


@settings(max_examples=300, deadline=None, database=None)
@given(rendered_ranges())
def test_property_any_rendered_range_reads_back(rendered):
    """Any ascending range with any dash or connector reads as kind 'range' with the same bounds."""
    text, low, high = rendered
    got = parse_claim(text)
    assert got["kind"] == "range"
    assert (got["low"], got["high"]) == (low, high)
    assert math.isnan(got["value"])
    assert got["ratio"] is False


_CLAIM_WORDS = (
    "about |more than |up to |between | and | to |from |thousand|million|several |hundreds|tens of |a dozen|"
    "doubled|fell by |a third|in |april |percent|fighters|or so|two |twenty-"
).split("|")
_CLAIM_CHARS = list("0123456789,.'-+~%() kKmM\u00b1\u2009\u202f\u00a0") + list(DASHES)
_CLAIMISH = st.lists(st.sampled_from(_CLAIM_CHARS + _CLAIM_WORDS), max_size=12).map("".join)


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.text(), _CLAIMISH))
def test_property_random_text_returns_a_claim_or_raises_claim_parse_error(text):
    """Arbitrary text never crashes: a well-formed claim dict or ClaimParseError, nothing else."""
    try:
        got = parse_claim(text)
    except ClaimParseError:
        return
    assert got["kind"] in ("range", "at_least", "at_most", "about", "exact")
    assert got["text"] == text
    a, b = got["span"]
    assert 0 <= a < b <= len(text)
    if got["kind"] == "range":
        assert got["low"] <= got["high"]
    assert re.search(r"\S", text)
