"""Claims table tests (DESIGN section 3): validation messages, errors="skip",
input forms, kind inference, defaults, time parsing and the hierarchy.

Only ``normalise``, ``read_claims``, ``parse_time`` and ``Hierarchy`` are
exercised; nothing here builds or samples a model.
"""

from __future__ import annotations

import copy
import datetime
import math

import pandas as pd
import pytest

from estimates.claims import Hierarchy, normalise, parse_time, read_claims
from estimates.errors import (
    ClaimError,
    CoverageError,
    EmptyClaimsError,
    HierarchyError,
    InvalidRangeError,
    MissingNumberError,
    NonPositiveCountError,
    OptionError,
    TimeOrderError,
    TimeParseError,
    UnknownKindError,
    UnknownRegionError,
)
from estimates.interpret import Interpretation
from estimates.phrases import ClaimParseError

HIER = {"Iraq and Syria": ["Iraq", "Syria"]}
GOOD0 = {"region": "Syria", "low": 6000, "high": 8000, "source": "A"}
GOOD2 = {"region": "Iraq", "value": 7000, "source": "B"}


def _rows(bad: dict) -> list[dict]:
    """Two good claims around one bad claim (region "Iraq" unless given), so it is ``claim 1``."""
    return [GOOD0, {"region": "Iraq", **bad}, GOOD2]


MNE, TPE, COV, CPE = MissingNumberError, TimeParseError, CoverageError, ClaimParseError
# One bad row each: (bad row, exception, column, quoted "column = value", hint fragment).
BAD = {
    "high_below_low": ({"low": 6000, "high": 5000}, InvalidRangeError, "high", "high = 5000", "swap low"),
    "value_outside_range": (
        {"low": 5000, "high": 6000, "value": 7000},
        InvalidRangeError,
        "value",
        "value = 7000",
        "between low and high",
    ),
    "zero_value": ({"value": 0}, NonPositiveCountError, "value", "value = 0", "positive"),
    "negative_low": ({"low": -5, "high": 10}, NonPositiveCountError, "low", "low = -5", "positive"),
    # a number read from the text is quoted as the text it came from
    "zero_in_text": ({"claim": "about 0"}, NonPositiveCountError, "claim", "claim = 'about 0'", "positive"),
    "range_without_high": ({"low": 6000, "kind": "range"}, MNE, "high", "high = nan", "needs both"),
    "low_not_a_number": ({"low": "abc", "high": 8000}, MNE, "low", "low = 'abc'", "plain numbers"),
    "infinite_value": ({"value": math.inf}, MNE, "value", "value = inf", "positive number"),
    "no_number_at_all": ({"source": "C"}, MNE, "value", "value = nan", "give low and high"),
    "text_without_number": ({"claim": "no number here"}, CPE, "claim", "claim = 'no number here'", "write the number"),
    "text_disagrees_with_numbers": (
        {"claim": "about 5,000", "low": 3000, "high": 8000},
        CPE,
        "claim",
        "claim = 'about 5,000'",
        "make the text and the numbers agree",
    ),
    "relative_text_without_since": (
        {"claim": "more than doubled"},
        CPE,
        "claim",
        "claim = 'more than doubled'",
        "since",
    ),
    "unknown_kind": ({"value": 7, "kind": "roughly"}, UnknownKindError, "kind", "kind = 'roughly'", "one of"),
    "since_equals_time": (
        {"value": 2, "time": "2022", "since": "2022"},
        TimeOrderError,
        "since",
        "since = '2022'",
        "earlier time",
    ),
    "since_after_time": (
        {"value": 2, "time": "2021", "since": "2022-04"},
        TimeOrderError,
        "since",
        "since = '2022-04'",
        "earlier time",
    ),
    "garbage_time": ({"value": 7, "time": "sometime"}, TPE, "time", "time = 'sometime'", "a month such as"),
    "since_without_time": ({"value": 2, "since": "2021-08"}, TPE, "since", "since = '2021-08'", "give both"),
    "coverage_zero": ({"low": 1, "high": 2, "coverage": 0}, COV, "coverage", "coverage = 0", "95% interval"),
    "coverage_one": ({"low": 1, "high": 2, "coverage": 1}, COV, "coverage", "coverage = 1", "95% interval"),
    "coverage_1.5": ({"low": 1, "high": 2, "coverage": 1.5}, COV, "coverage", "coverage = 1.5", "95% interv"),
    "region_missing": ({"region": None, "value": 7}, UnknownRegionError, "region", "region = ", "the region"),
    "region_case": (
        {"region": "iraq and syria", "value": 7},
        UnknownRegionError,
        "region",
        "region = 'iraq and syria'",
        "did you mean 'Iraq and Syria'",
    ),
    "region_spacing": (
        {"region": "Iraq andSyria", "value": 7},
        UnknownRegionError,
        "region",
        "region = 'Iraq andSyria'",
        "did you mean 'Iraq and Syria'",
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_row_raises_named_error_quoting_row_column_value_and_hint(case):
    """Each bad row raises its own ValueError subclass with a message a user can act on."""
    bad, exc_type, column, quoted, hint = case
    with pytest.raises(exc_type) as info:
        normalise(_rows(bad), hierarchy=HIER)
    exc = info.value
    msg = str(exc)
    assert isinstance(exc, ValueError)
    assert (exc.row, exc.column) == (1, column)
    assert msg.startswith("claim 1 ")
    assert quoted in msg
    assert hint in msg


def test_region_missing_says_it_is_missing():
    """A missing region is reported as missing, not as some odd name."""
    with pytest.raises(UnknownRegionError, match=r"^claim 0 .*region = .*is missing"):
        normalise([{"region": None, "value": 5}, {"region": "Iraq", "value": 6}])


def test_mixed_dated_and_undated_claims_of_one_quantity_are_rejected():
    """Within a quantity, an undated claim next to dated ones is ambiguous; the message names a dated one."""
    rows = [
        {"region": "Iraq", "value": 5000, "time": "2022"},
        {"region": "Iraq", "value": 6000},
        {"region": "Iraq", "value": 9, "quantity": "attacks"},  # other quantity, all undated: fine
    ]
    with pytest.raises(TimeParseError) as info:
        normalise(rows)
    assert info.value.row == 1 and info.value.column == "time"
    msg = str(info.value)
    assert msg.startswith("claim 1 ")
    assert "quantity 'count'" in msg and "claim 0: '2022'" in msg
    assert "give every claim of a quantity a time, or none" in msg
    cs = normalise(rows, errors="skip")
    assert list(cs.table["status"].str.startswith("rejected: time")) == [False, True, False]
    assert list(cs.used["row"]) == [0, 2]


@pytest.mark.parametrize(
    "claims",
    [[], pd.DataFrame(columns=["region", "low", "high"])],
    ids=["empty_list", "empty_frame"],
)
def test_empty_input_is_an_empty_claims_error(claims):
    with pytest.raises(EmptyClaimsError, match="empty"):
        normalise(claims)


def test_text_claim_column_without_numeric_columns_is_parsed():
    """A text-only table is read by the phrase parser; the reading shows in the table."""
    cs = normalise([{"region": "Iraq", "claim": "between 6,000 and 8,000 fighters"}])
    row = cs.table.iloc[0]
    assert (row["kind"], row["low"], row["high"]) == ("range", 6000.0, 8000.0)
    assert (row["hedge"], row["unit"], row["status"]) == ("between", "fighters", "used")


def test_text_and_agreeing_numbers_are_accepted():
    cs = normalise([{"region": "Iraq", "claim": "more than 4,000", "low": 4000}])
    assert cs.used.loc[0, "kind"] == "at_least"


@pytest.mark.parametrize(
    "claims, match",
    [
        ([{"region": "Iraq", "source": "A"}], "none of the columns 'claim', 'low', 'high', 'value'"),
        ([{"low": 1, "high": 2}], "no 'region' column"),
        ("/nonexistent/claims.csv", "does not exist"),
        (42, "not int"),
    ],
    ids=["no_numeric_columns", "no_region_column", "missing_file", "wrong_type"],
)
def test_read_claims_rejects_unusable_tables(claims, match):
    with pytest.raises(ValueError, match=match):
        read_claims(claims)


def test_skip_with_no_usable_row_is_empty_claims_error():
    """If every row is rejected, the error lists each row's reason."""
    with pytest.raises(EmptyClaimsError, match=r"claim 0: rejected: value must be positive"):
        normalise([{"region": "Iraq", "value": -1}], errors="skip")


def test_unknown_errors_option():
    with pytest.raises(OptionError, match="'raise' or 'skip'"):
        normalise([GOOD0], errors="ignore")


# --------------------------------------------------------------------------- errors="skip"


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_skip_keeps_every_row_in_order_and_uses_only_good_ones(case):
    """Rejected rows stay in ``table`` with a reason; ``used`` holds only the good rows."""
    bad, exc_type, column, _, _ = case
    cs = normalise(_rows(bad), hierarchy=HIER, errors="skip")
    assert len(cs.table) == 3
    assert list(cs.table["region"].iloc[[0, 2]]) == ["Syria", "Iraq"]
    status = list(cs.table["status"])
    assert status[0] == status[2] == "used"
    assert status[1].startswith(f"rejected: {column} ")
    assert len(status[1]) > len(f"rejected: {column} ") + 3
    assert list(cs.used["row"]) == [0, 2]
    assert list(cs.used["region"]) == ["Syria", "Iraq"]


def test_skip_rejects_several_bad_rows_at_once():
    bad = [{"region": "Iraq", **BAD[k][0]} for k in ("high_below_low", "unknown_kind", "coverage_one")]
    cs = normalise([GOOD0, bad[0], GOOD2, bad[1], bad[2]], errors="skip")
    status = [s.split(" ")[0] for s in cs.table["status"]]
    assert status == ["used", "rejected:", "used", "rejected:", "rejected:"]
    assert list(cs.used["row"]) == [0, 2]


# --------------------------------------------------------------------------- caller's data untouched


@pytest.mark.parametrize("bad", ["high_below_low", "low_not_a_number", "region_case", "garbage_time"])
@pytest.mark.parametrize("errors", ["raise", "skip"])
def test_callers_dataframe_is_never_modified(bad, errors):
    """Neither values nor dtypes of the caller's DataFrame change, whatever happens."""
    df = pd.DataFrame(_rows(BAD[bad][0]))
    before = copy.deepcopy(df)
    if errors == "raise":
        with pytest.raises(ClaimError):
            normalise(df, hierarchy=HIER, errors=errors)
    else:
        cs = normalise(df, hierarchy=HIER, errors=errors)
        assert cs.table is not df
        cs.table.loc[0, "region"] = "changed"
    pd.testing.assert_frame_equal(df, before, check_dtype=True)
    assert list(df.columns) == list(before.columns)


# --------------------------------------------------------------------------- input forms


def test_dataframe_list_and_csv_path_give_the_same_claims(tmp_path):
    rows = [
        {"region": "Syria", "low": 6000, "high": 8000, "source": "CIA", "time": "2022-04"},
        {"region": "Iraq", "value": 7000, "source": None, "time": "2022-04", "coverage": None},
        {"region": "Iraq", "low": 3000, "source": "Pentagon", "time": "2022-06", "quantity": "fighters"},
    ]
    path = tmp_path / "claims.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    expected = normalise(pd.DataFrame(rows)).used
    assert len(expected) == 3
    for form in (rows, path, str(path)):
        pd.testing.assert_frame_equal(normalise(form).used, expected)


# --------------------------------------------------------------------------- kind inference

NAN = math.nan


@pytest.mark.parametrize(
    "row, kind, low, high, value",
    [
        ({"low": 6000, "high": 8000}, "range", 6000, 8000, NAN),
        ({"low": 6000}, "at_least", 6000, NAN, NAN),
        ({"high": 8000}, "at_most", NAN, 8000, NAN),
        ({"value": 7000}, "about", NAN, NAN, 7000),
        ({"low": 7000, "high": 7000}, "exact", NAN, NAN, 7000),
        ({"low": 6000, "high": 8000, "value": 7000}, "range", 6000, 8000, 7000),
        ({"value": 7000, "kind": "at_least"}, "at_least", 7000, NAN, 7000),
        ({"value": 7000, "kind": "At-Most"}, "at_most", NAN, 7000, 7000),
        ({"value": 7000, "kind": "exact"}, "exact", NAN, NAN, 7000),
        ({"low": "6,000", "high": "8_000"}, "range", 6000, 8000, NAN),
    ],
    ids=[
        "range",
        "at_least",
        "at_most",
        "about",
        "exact",
        "low_best_high",
        "override_at_least",
        "override_spelling",
        "override_exact",
        "thousands_separators",
    ],
)
def test_kind_is_inferred_from_the_numbers_given(row, kind, low, high, value):
    cs = normalise([{"region": "Iraq", **row}])
    got = cs.used.iloc[0]
    assert got["kind"] == kind
    for col, want in (("low", low), ("high", high), ("value", value)):
        if math.isnan(want):
            assert math.isnan(got[col]), col
        else:
            assert got[col] == want, col
    assert cs.table.loc[0, "kind"] == kind


# --------------------------------------------------------------------------- defaults


def test_missing_source_quantity_and_coverage_get_defaults():
    rows = [
        {"region": "Iraq", "low": 6000, "high": 8000},
        {"region": "Iraq", "low": 6, "high": 8, "coverage": 0.5, "source": " CIA ", "quantity": "fighters"},
        {"region": "Iraq", "value": 7000},
        {"region": "Iraq", "low": 6000},
    ]
    cs = normalise(rows)
    assert list(cs.used["source"]) == ["unattributed", "CIA", "unattributed", "unattributed"]
    assert list(cs.used["quantity"]) == ["count", "fighters", "count", "count"]
    assert list(cs.table["source"]) == list(cs.used["source"])
    assert cs.used["coverage"].iloc[0] == Interpretation().coverage == 0.9
    assert cs.used["coverage"].iloc[1] == 0.5
    assert list(cs.table["coverage"].iloc[:2]) == [0.9, 0.5]
    assert cs.table["coverage"].iloc[2:].isna().all()


def test_default_coverage_comes_from_the_interpretation():
    cs = normalise([{"region": "Iraq", "low": 1, "high": 2}], interpretation=Interpretation(coverage=0.8))
    assert cs.used["coverage"].iloc[0] == 0.8


# --------------------------------------------------------------------------- time parsing


@pytest.mark.parametrize(
    "value, label, position",
    [
        ("2022", "2022", 2022.5),
        ("2022-04", "2022-04", 2022.29),
        ("2022-04-15", "2022-04-15", 2022.29),
        ("2022Q2", "2022Q2", 2022.37),
        ("2022-q2", "2022Q2", 2022.37),
        (datetime.date(2022, 4, 15), "2022-04-15", 2022.29),
        (pd.Timestamp("2022-04-15 18:30"), "2022-04-15", 2022.29),
        (2022, "2022", 2022.5),
        (2022.0, "2022", 2022.5),
    ],
    ids=["year", "month", "day", "quarter", "quarter_lower", "date", "timestamp", "int_year", "float_year"],
)
def test_parse_time_periods(value, label, position):
    """Periods keep a readable label and sit at their middle, in decimal years."""
    lab, pos = parse_time(value, numeric=False)
    assert lab == label
    assert pos == pytest.approx(position, abs=0.01)


@pytest.mark.parametrize("value", [1989, 1989.0, 1989.25, -5])
def test_parse_time_numeric_mode_keeps_numbers(value):
    lab, pos = parse_time(value, numeric=True)
    assert lab == value and pos == float(value)
    assert isinstance(lab, int) == float(value).is_integer()


@pytest.mark.parametrize("value", ["sometime", "2022Q5", 2022.5])
def test_parse_time_rejects_non_times(value):
    with pytest.raises(ValueError):
        parse_time(value, numeric=False)


def test_all_numeric_times_stay_numbers():
    cs = normalise([{"region": "I", "value": 5, "time": 1989}, {"region": "I", "value": 6, "time": 1990.5}])
    assert list(cs.used["time_label"]) == [1989, 1990.5]
    assert list(cs.used["time_pos"]) == [1989.0, 1990.5]


def test_whole_number_among_dates_is_a_year():
    rows = [{"region": "Iraq", "value": 5, "time": 2022}, {"region": "Iraq", "value": 6, "time": "2022-04"}]
    cs = normalise(rows)
    assert list(cs.used["time_label"]) == ["2022", "2022-04"]
    assert cs.used["time_pos"].iloc[0] == pytest.approx(2022.5, abs=0.01)


def test_fractional_number_among_dates_is_a_time_parse_error():
    rows = [{"region": "Iraq", "value": 5, "time": 2022.5}, {"region": "Iraq", "value": 6, "time": "2022-04"}]
    with pytest.raises(TimeParseError, match=r"^claim 0 .*time = 2022\.5.*fractional number among dates"):
        normalise(rows)


@pytest.mark.parametrize(
    "time, since, time_label, since_label",
    [("2022-02", "2021-08", "2022-02", "2021-08"), (1990, 1989, 1990, 1989)],
    ids=["periods", "numbers"],
)
def test_since_makes_a_ratio_claim(time, since, time_label, since_label):
    cs = normalise(
        [
            {"region": "Iraq", "low": 2, "time": time, "since": since},
            {"region": "Iraq", "value": 5000, "time": time},
        ]
    )
    assert list(cs.used["ratio"]) == [True, False]
    assert cs.used["time_label"].iloc[0] == time_label
    assert cs.used["since_label"].iloc[0] == since_label
    assert cs.used["since_label"].iloc[1] is None
    assert cs.used["since_pos"].iloc[0] < cs.used["time_pos"].iloc[0]


@pytest.mark.parametrize(
    "claims",
    [
        [{"region": "Iraq", "value": 5}, {"region": "Syria", "low": 1, "high": 2}],
        pd.DataFrame({"region": ["Iraq", "Syria"], "value": [5, 6], "time": [None, None]}),
        pd.DataFrame(
            {
                "region": ["Iraq", "Syria"],
                "value": [5, 6],
                "time": [math.nan, math.nan],
                "since": pd.array([None, None], dtype="str"),
            }
        ),
    ],
    ids=["no_time_column", "time_column_of_none", "nan_time_and_str_since"],
)
def test_undated_claims_have_none_labels_not_nan(claims):
    """Regression: pandas 3 string inference turned a missing label (None) into NaN."""
    cs = normalise(claims)
    assert all(v is None for v in cs.used["time_label"])
    assert all(v is None for v in cs.used["since_label"])
    assert cs.used["time_pos"].isna().all()
    assert not cs.used["ratio"].any()


# --------------------------------------------------------------------------- hierarchy

NESTED = {
    "World": ["Middle East", "Africa"],
    "Middle East": ["Iraq and Syria", "Yemen"],
    "Iraq and Syria": ["Iraq", "Syria"],
}


@pytest.mark.parametrize(
    "region, leaves, descendants",
    [
        (
            "World",
            ("Iraq", "Syria", "Yemen", "Africa"),
            ("Middle East", "Iraq and Syria", "Iraq", "Syria", "Yemen", "Africa"),
        ),
        ("Middle East", ("Iraq", "Syria", "Yemen"), ("Iraq and Syria", "Iraq", "Syria", "Yemen")),
        ("Iraq", ("Iraq",), ()),
        ("Atlantis", ("Atlantis",), ()),
    ],
)
def test_hierarchy_leaves_and_descendants(region, leaves, descendants):
    h = Hierarchy.from_mapping(NESTED)
    assert h.leaves(region) == leaves
    assert h.descendants(region) == descendants
    assert h.is_aggregate(region) == (region in NESTED)


def test_hierarchy_shared_members_are_listed_once():
    h = Hierarchy.from_mapping({"W": ["A", "B"], "A": ["x", "y"], "B": ["y", "z"]})
    assert h.leaves("W") == ("x", "y", "z")
    assert h.descendants("W") == ("A", "x", "y", "B", "z")
    assert h.names() == {"W", "A", "B", "x", "y", "z"}
    assert h.to_dict() == {"W": ["A", "B"], "A": ["x", "y"], "B": ["y", "z"]}


def test_hierarchy_none_is_empty_and_accepts_any_region():
    assert Hierarchy.from_mapping(None).members == {}
    cs = normalise([{"region": "iraq", "value": 5}], hierarchy=None)
    assert cs.used["region"].iloc[0] == "iraq"


def test_region_outside_a_given_hierarchy_is_a_leaf():
    cs = normalise([{"region": "Yemen", "value": 5}, {"region": " Iraq ", "value": 6}], hierarchy=HIER)
    assert list(cs.used["region"]) == ["Yemen", "Iraq"]


@pytest.mark.parametrize(
    "mapping, match",
    [
        ({"A": ["B"], "B": ["C"], "C": ["A"]}, r"cycle: A -> B -> C -> A"),
        ({"A": ["A"]}, r"cycle: A -> A"),
        ({"W": ["A"], "A": ["x", "B"], "B": ["A"]}, r"cycle: A -> B -> A"),
        ({"A": []}, r"aggregate 'A' has no members"),
        ({"A": ["x", "y", "x"]}, r"aggregate 'A' lists a member twice"),
        (["A", "B"], r"must be a mapping .* not list"),
        ({"A": "Iraq"}, r"must be a list of member names"),
        ({"A": ["x", 3]}, r"member 3 that is not a region name"),
        ({"A": ["x", " "]}, r"member '' that is not a region name"),
        ({"": ["x"]}, r"key '' is not a region name"),
    ],
    ids=[
        "cycle3",
        "self_cycle",
        "nested_cycle",
        "empty",
        "duplicate",
        "not_mapping",
        "string_members",
        "int_member",
        "blank_member",
        "blank_key",
    ],
)
def test_malformed_hierarchy_raises(mapping, match):
    with pytest.raises(HierarchyError, match=match):
        Hierarchy.from_mapping(mapping)
    with pytest.raises(HierarchyError, match=match):
        normalise([GOOD0], hierarchy=mapping)


# --------------------------------------------------------------------------- regressions


@pytest.mark.parametrize("value", ["2022-13", "2022-00", "2022-02-30"])
def test_out_of_range_month_or_day_is_rejected(value):
    with pytest.raises(ValueError):
        parse_time(value, numeric=False)


@pytest.mark.parametrize("mapping", [{"A": ["x", "x "]}, {"A": ["x"], " A": ["y"]}], ids=["member", "key"])
def test_names_equal_after_stripping_are_duplicates(mapping):
    with pytest.raises(HierarchyError):
        Hierarchy.from_mapping(mapping)
