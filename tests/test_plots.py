"""Figures: claim glyphs, flags, notes, chosen cells and errors, on a fake posterior and a real fit."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

import estimates as est
from estimates import plots
from estimates._deps import quiet_import
from estimates.results import INTERVAL_COLUMNS, Reconciliation

QUOTE = 'A blog said "<b>&" about 30,000 fighters'
NAN = float("nan")


def fake_result(*, with_flagged_column: bool = True, prob: float = 0.9, seed: int = 1) -> Reconciliation:
    """A hand-made result: known claims, a posterior of known medians, no MCMC.

    Cells (rows of ``intervals``, same order as the posterior's last axis):
    fighters in Syria and Iraq at 2021-08 and 2022-02, attacks in Syria at
    2022-02. Claims about fighters in Syria at 2022-02: two ranges, an
    at-least, a flagged "about" with a quote holding ``<b>&``, and a
    relative claim; one at-most in 2021-08; in Iraq one used and one
    rejected claim; one exact count of attacks.
    """
    az = quiet_import("arviz")
    rng = np.random.default_rng(seed)
    cells = pd.DataFrame(
        {
            "quantity": ["fighters"] * 4 + ["attacks"],
            "region": ["Syria", "Syria", "Iraq", "Iraq", "Syria"],
            "time": ["2021-08", "2022-02", "2021-08", "2022-02", "2022-02"],
        }
    )
    medians = np.array([4000.0, 9000.0, 2500.0, 3000.0, 50.0])
    log_count = np.log(medians) + rng.normal(0.0, 0.25, size=(2, 200, len(medians)))
    counts = np.exp(log_count.reshape(-1, len(medians)))
    lo, med, hi = np.quantile(counts, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=0)
    intervals = cells.assign(
        time=cells["time"].astype(object),
        mean=counts.mean(0),
        median=med,
        sd=counts.std(0, ddof=1),
        lower=lo,
        upper=hi,
    )[INTERVAL_COLUMNS]
    rows = [
        # region, quantity, claim, low, high, value, kind, time, since, source, quote, status, tension
        ("Syria", "fighters", "between 6,000 and 8,000", 6000, 8000, NAN, "range", "2022-02", None, "UN", None, 0.6),
        ("Syria", "fighters", "8,000 to 16,000", 8000, 16000, NAN, "range", "2022-02", None, "US", None, 0.4),
        ("Syria", "fighters", "more than 4,000", 4000, NAN, NAN, "at_least", "2022-02", None, "UN", None, 0.9),
        ("Syria", "fighters", "about 30,000", NAN, NAN, 30000, "about", "2022-02", None, "Blog", QUOTE, 0.003),
        ("Syria", "fighters", "more than doubled", 2, NAN, NAN, "at_least", "2022-02", "2021-08", "UN", None, 0.5),
        ("Syria", "fighters", "up to 5,000", NAN, 5000, NAN, "at_most", "2021-08", None, "US", None, 0.7),
        ("Iraq", "fighters", "8,000 to 6,000", NAN, NAN, NAN, None, "2022-02", None, "UN", None, NAN),
        ("Iraq", "fighters", "about 3,000", NAN, NAN, 3000, "about", "2022-02", None, "UN", None, 0.8),
        ("Syria", "attacks", "54 attacks", NAN, NAN, 54, "exact", "2022-02", None, "RIC", None, 0.9),
    ]
    claims = pd.DataFrame(
        rows,
        columns=[
            "region",
            "quantity",
            "claim",
            "low",
            "high",
            "value",
            "kind",
            "time",
            "since",
            "source",
            "quote",
            "tension",
        ],
    )
    claims.insert(0, "claim_id", [f"c{i}" for i in range(len(claims))])
    claims["status"] = "used"
    claims.loc[6, "status"] = "rejected: high (6,000) is below low (8,000)"
    claims["predicted_lower"] = claims["low"].fillna(claims["value"]) * 0.7
    claims["predicted_upper"] = claims["high"].fillna(claims["value"]) * 1.4
    if with_flagged_column:
        claims["flagged"] = claims["tension"] < 0.01
    sources = pd.DataFrame(
        {
            "quantity": ["fighters", "fighters", "fighters", "attacks"],
            "source": ["UN", "US", "Blog", "RIC"],
            "n_claims": [4, 2, 1, 1],
            "bias": [0.9, 1.3, 2.5, 1.0],
            "bias_lower": [0.6, 0.8, 1.2, 0.5],
            "bias_upper": [1.2, 2.0, 5.0, 2.0],
            "reliability": [1.1, 1.2, 1.3, 1.2],
            "reliability_lower": [1.0, 1.0, 1.0, 1.0],
            "reliability_upper": [1.5, 1.6, 1.9, 1.7],
        }
    )
    diagnostics = {
        "r_hat_max": 1.004,
        "ess_bulk_min": 812.0,
        "divergences": 0,
        "converged": True,
        "sampler": "fake",
        "seconds": 0.5,
    }
    return Reconciliation(
        intervals=intervals,
        sources=sources,
        claims=claims,
        diagnostics=diagnostics,
        idata=az.from_dict(posterior={"log_count": log_count}),
        meta={"options": {"prob": prob}},
    )


def claim_rows(ax: Axes) -> list[int]:
    """Rows of result.claims drawn on ``ax`` (one artist each, gid ``claim:<row>``)."""
    gids = [a.get_gid() for a in ax.get_children()]
    return sorted(int(g.split(":")[1]) for g in gids if g and g.startswith("claim:"))


def gids(ax: Axes, prefix: str) -> list[str]:
    return [g for a in ax.get_children() if (g := a.get_gid()) and g.startswith(prefix)]


def texts(ax: Axes) -> str:
    return " | ".join(a.get_text() for a in ax.get_children() if hasattr(a, "get_text"))


@pytest.fixture(autouse=True)
def _agg_and_close():
    matplotlib.use("Agg")  # never open a window, whatever the environment
    yield
    plt.close("all")


@pytest.fixture(params=[True, False], ids=["flagged-column", "tension-only"])
def fake(request):
    return fake_result(with_flagged_column=request.param)


# --------------------------------------------------------------------------- plot_claims
def test_plot_claims_draws_each_used_count_claim_of_the_cell_once(fake):
    ax = plots.plot_claims(fake, "Syria", "2022-02", quantity="fighters")
    assert isinstance(ax, Axes)
    # two ranges, the at-least and the flagged point; not the relative claim (row 4),
    # nor the 2021-08 claim, nor other regions or quantities
    assert claim_rows(ax) == [0, 1, 2, 3]
    assert gids(ax, "flag:") == ["flag:3"]
    assert "tension 0.003" in texts(ax)
    assert "1 relative claim not shown" in texts(ax)
    # the posterior interval of the cell is drawn: a line spanning lower..upper
    iv = fake.intervals.iloc[1]
    spans = [tuple(line.get_xdata()) for line in ax.get_lines()]
    assert (pytest.approx(iv["lower"]), pytest.approx(iv["upper"])) in spans
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel().startswith("fighters")


def test_plot_claims_glyphs_follow_the_kind(fake):
    ax = plots.plot_claims(fake, "Syria", "2022-02", quantity="fighters")
    by_row = {int(a.get_gid().split(":")[1]): a for a in ax.get_lines() if (a.get_gid() or "").startswith("claim:")}
    assert list(by_row[0].get_xdata()) == [6000, 8000]  # range: low..high
    x_at_least = list(by_row[2].get_xdata())
    assert x_at_least[0] == 4000 and x_at_least[1] > 4000 and by_row[2].get_marker() == ">"
    assert list(by_row[3].get_xdata()) == [30000] and by_row[3].get_marker() == "o"
    # the flagged point keeps its source's colour inside a red ring; a flagged range would get a red halo
    ring = next(a for a in ax.get_lines() if a.get_gid() == "flag-ring:3")
    assert list(ring.get_xdata()) == [30000] and ring.get_markerfacecolor() == "none"
    assert ring.get_markeredgecolor() == plots.FLAG_COLOUR
    assert by_row[3].get_markeredgecolor() == by_row[3].get_color() != plots.FLAG_COLOUR
    assert not by_row[0].get_path_effects()
    # one colour per source: both UN claims share it, US differs
    assert by_row[0].get_color() == by_row[2].get_color() != by_row[1].get_color()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"UN", "US", "Blog"} <= set(legend)


def test_plot_claims_fills_in_the_cell_with_most_claims(fake):
    ax = plots.plot_claims(fake)
    assert claim_rows(ax) == [0, 1, 2, 3]
    # Iraq: 2022-02 has a used claim (the rejected row 6 is not drawn), 2021-08 none
    assert claim_rows(plots.plot_claims(fake, "Iraq")) == [7]
    assert claim_rows(plots.plot_claims(fake, "Iraq", "2021-08")) == []
    assert claim_rows(plots.plot_claims(fake, quantity="attacks")) == [8]
    # the method on the result delegates here
    assert claim_rows(fake.plot_claims("Syria", "2021-08")) == [5]


def test_plot_claims_draws_into_the_given_axes(fake):
    fig, (a1, a2) = plt.subplots(1, 2)
    n_figs = len(plt.get_fignums())
    out = plots.plot_claims(fake, "Syria", "2022-02", quantity="fighters", ax=a2)
    assert out is a2
    assert len(plt.get_fignums()) == n_figs
    assert claim_rows(a1) == [] and claim_rows(a2) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"region": "Narnia"}, "unknown region 'Narnia'; choose one of: 'Syria', 'Iraq'"),
        ({"region": "Syria", "time": "1999"}, "unknown time '1999'"),
        ({"quantity": "tanks"}, "unknown quantity 'tanks'; choose one of: 'fighters', 'attacks'"),
        ({"region": "Iraq", "quantity": "attacks"}, "unknown region 'Iraq' for quantity 'attacks'"),
    ],
)
def test_unknown_choices_raise_option_error_listing_valid_ones(fake, kwargs, message):
    with pytest.raises(est.OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plots.plot_claims(fake, **kwargs)


def test_unknown_choices_raise_in_timeline_and_sources(fake):
    with pytest.raises(est.OptionError, match="'Syria', 'Iraq'"):
        plots.plot_timeline(fake, "Narnia")
    with pytest.raises(est.OptionError, match="'fighters', 'attacks'"):
        plots.plot_sources(fake, quantity="tanks")


def test_numeric_time_argument_matches_numeric_labels():
    r = fake_result()
    r.intervals["time"] = [2021, 2022, 2021, 2022, 2022]
    r.claims["time"] = [2022, 2022, 2022, 2022, 2022, 2021, 2022, 2022, 2022]
    r.claims["since"] = [None, None, None, None, 2021, None, None, None, None]
    assert claim_rows(plots.plot_claims(r, "Syria", 2022.0, quantity="fighters")) == [0, 1, 2, 3]
    assert claim_rows(plots.plot_claims(r, "Syria", "2021", quantity="fighters")) == [5]


# --------------------------------------------------------------------------- plot_timeline
def test_plot_timeline_bands_from_draws_and_all_claims_of_the_region(fake):
    ax = plots.plot_timeline(fake, "Syria", quantity="fighters")
    assert isinstance(ax, Axes)
    assert claim_rows(ax) == [0, 1, 2, 3, 5]
    assert gids(ax, "flag:") == ["flag:3"]
    assert "1 relative claim not shown" in texts(ax)
    assert ax.get_yscale() == "log"
    # the median line goes through the posterior medians of the two cells, in order
    median = next(line for line in ax.get_lines() if line.get_label() == "posterior median")
    np.testing.assert_allclose(median.get_ydata(), fake.intervals["median"].iloc[:2], rtol=1e-9)
    # two nested bands: 50% inside the 90%
    bands = [c for c in ax.collections if c.get_label() in ("50% interval", "90% interval")]
    assert sorted(b.get_label() for b in bands) == ["50% interval", "90% interval"]
    # an at-most claim points down: its second count is below its bound
    at_most = next(line for line in ax.get_lines() if line.get_gid() == "claim:5")
    assert at_most.get_ydata()[0] == 5000 and at_most.get_ydata()[1] < 5000
    # the 2022-02 claims are spread out around their period, the 2021-08 one sits on its own
    xs = {
        int(line.get_gid()[6:]): line.get_xdata()[0]
        for line in ax.get_lines()
        if (line.get_gid() or "")[:6] == "claim:"
    }
    assert len({xs[r] for r in (0, 1, 2, 3)}) == 4
    assert xs[5] < min(xs[r] for r in (0, 1, 2, 3))


def test_plot_timeline_single_period_and_ax(fake):
    fig, ax = plt.subplots()
    out = plots.plot_timeline(fake, quantity="attacks", ax=ax)
    assert out is ax
    assert claim_rows(ax) == [8]
    assert "relative" not in texts(ax)


# --------------------------------------------------------------------------- plot_sources
def test_plot_sources_one_interval_per_row_on_a_log_axis(fake):
    ax = plots.plot_sources(fake)
    assert isinstance(ax, Axes)
    assert sorted(gids(ax, "source:")) == [f"source:{i}" for i in range(4)]
    assert ax.get_xscale() == "log"
    assert "bias factor" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert any("UN" in t and "fighters" in t for t in labels)  # several quantities: named
    assert any(line.get_xdata()[0] == 1.0 and line.get_linestyle() == "--" for line in ax.get_lines())
    only = plots.plot_sources(fake, quantity="attacks")
    assert gids(only, "source:") == ["source:3"]


# --------------------------------------------------------------------------- a real fit
def _count_claims(result, region, time=None, quantity="fighters") -> int:
    c = result.claims
    m = (c["status"] == "used") & (c["region"] == region) & (c["quantity"] == quantity) & c["since"].isna()
    if time is not None:
        m &= c["time"] == time
    return int(m.sum())


@pytest.mark.slow
def test_real_fit_plots(example_fit):
    r = example_fit
    for region, time in [("Iraq and Syria", "2022-02"), ("Afghanistan", "2022-02"), ("Iraq", "2021-08")]:
        ax = r.plot_claims(region, time, quantity="fighters")
        assert isinstance(ax, Axes)
        assert len(claim_rows(ax)) == _count_claims(r, region, time)
    ax = r.plot_claims("Afghanistan")
    assert "1 relative claim not shown" in texts(ax)
    for region in ["Iraq and Syria", "Afghanistan", "Syria"]:
        ax = r.plot_timeline(region, quantity="fighters")
        assert len(claim_rows(ax)) == _count_claims(r, region)
    ax = r.plot_timeline("North-east Syria")  # attacks: the only quantity there
    assert claim_rows(ax) == [8]
    ax = r.plot_sources()
    assert len(gids(ax, "source:")) == len(r.sources)


def test_plot_claims_reads_time_as_the_claims_table_does(fake):
    # a claim's "2022-2" is the period labelled "2022-02"; so is the plot's time=
    ax = plots.plot_claims(fake, "Syria", "2022-2", quantity="fighters")
    assert claim_rows(ax) == [0, 1, 2, 3]
    with pytest.raises(est.OptionError, match="unknown time '2022-13'"):
        plots.plot_claims(fake, "Syria", "2022-13", quantity="fighters")
