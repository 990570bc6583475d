"""The HTML report: well-formed, self-contained, escaped, complete; and the CLI that writes it."""

from __future__ import annotations

import html
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

import estimates as est
from estimates import cli, report

from .test_plots import QUOTE, fake_result

# Short runs for the CLI tests (they may not reach the ESS target; that warning is expected).
FAST = ["--draws", "300", "--tune", "300", "--chains", "2", "--seed", "5"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.doctype: str | None = None
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()


def check_html(text: str) -> _Checker:
    assert text.lower().startswith("<!doctype html>")
    assert "<html" in text and text.rstrip().endswith("</html>")
    p = _Checker()
    p.feed(text)
    p.close()
    assert p.doctype is not None and p.doctype.lower() == "doctype html"
    assert p.stack == [], f"unclosed: {p.stack}"
    return p


def check_self_contained(p: _Checker) -> list[str]:
    """No script, stylesheet link or remote resource; returns the image sources."""
    names = [t for t, _ in p.tags]
    assert "script" not in names and "link" not in names and "iframe" not in names
    images = [a.get("src") or "" for t, a in p.tags if t == "img"]
    assert all(src.startswith("data:image/png;base64,") for src in images)
    return images


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_report_of_fake_result(tmp_path):
    r = fake_result()
    out = r.report(tmp_path / "r.html")
    assert out == tmp_path / "r.html"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left
    text = out.read_text(encoding="utf-8")
    p = check_html(text)
    images = check_self_contained(p)
    # sources, Syria's timeline (claims in two periods), Iraq's and attacks' single cells
    assert len(images) == 4
    assert "url(" not in text and 'src="http' not in text
    # the flagged claim's quote, escaped; the raw markup never appears
    assert html.escape(QUOTE) in text
    assert "<b>&" not in text
    assert "Tension <strong>0.003</strong>" in text
    # diagnostics and the tables
    for key, shown in [("r_hat_max", "1.004"), ("ess_bulk_min", "812"), ("sampler", "fake"), ("converged", "yes")]:
        assert re.search(rf"<th>{key}</th><td>{re.escape(shown)}</td>", text), key
    assert "rejected: high (6,000) is below low (8,000)" in text
    assert text.count('<tr class="flag">') == 1  # the flagged row of the claims table
    assert "1 claim does not fit the rest" in text


def test_report_falls_back_to_tension_without_flagged_column(tmp_path):
    text = fake_result(with_flagged_column=False).report(tmp_path / "r.html").read_text(encoding="utf-8")
    assert html.escape(QUOTE) in text
    assert text.count('<tr class="flag">') == 1


def test_report_caps_figures_and_says_what_was_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "MAX_FIGURES", 2)
    text = report.write_report(fake_result(), tmp_path / "r.html").read_text(encoding="utf-8")
    assert len(check_self_contained(check_html(text))) == 2
    assert "2 more regions with claims are not drawn" in text


def test_report_replaces_atomically(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(fake_result(), target)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


@pytest.mark.slow
def test_report_of_real_fit(example_fit, tmp_path):
    r = example_fit
    text = r.report(tmp_path / "isis.html").read_text(encoding="utf-8")
    p = check_html(text)
    images = check_self_contained(p)
    assert 2 <= len(images) <= report.MAX_FIGURES
    flagged = r.claims["flagged"] if "flagged" in r.claims else r.claims["tension"] < 0.01
    for quote in r.claims.loc[flagged, "quote"]:
        assert html.escape(quote) in text
    assert f"<th>r_hat_max</th><td>{r.diagnostics['r_hat_max']:.4g}</td>" in text
    for claim in r.claims["claim"]:
        assert html.escape(claim) in text


# --------------------------------------------------------------------------- the command
class _quiet:
    def __enter__(self):
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", est.ConvergenceWarning)

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)


def test_report_command_needs_an_output(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "claims.csv"])
    assert exc.value.code == 2
    assert "-o/--output" in capsys.readouterr().err


@pytest.mark.slow
def test_report_command_writes_the_report(tmp_path, capsys):
    src = tmp_path / "claims.csv"
    src.write_text(
        "region,low,high,value,source,quote\n"
        'Syria,6000,8000,,UN,"between 6,000 and 8,000"\n'
        'Syria,8000,16000,,US,"up to <b>16,000</b> & more"\n'
        "Iraq,,,3000,UN,about 3000\n"
    )
    out = tmp_path / "report.html"
    with _quiet():
        code = cli.main(["report", str(src), "-o", str(out), *FAST])
    assert code == 0
    assert "report written to" in capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert len(check_self_contained(check_html(text))) >= 2
    assert "<b>16,000</b>" not in text
    assert "<th>divergences</th>" in text


@pytest.mark.slow
def test_demo_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo.html"
    with _quiet():
        code = cli.main(["demo", "--report", str(out), *FAST])
    assert code == 0
    assert f"Report written to {out}" in capsys.readouterr().out
    text = Path(out).read_text(encoding="utf-8")
    check_self_contained(check_html(text))
    assert "Iraq and Syria" in text


@pytest.mark.slow
def test_the_flagged_claim_is_drawn_and_quoted_in_the_report(planted_fits, tmp_path):
    """On a real fit with a flagged claim: the claim plot marks it, the report quotes it (escaped)."""
    import matplotlib.pyplot as plt

    res = planted_fits[False]
    wild_row = int(res.claims.index[res.claims["claim_id"] == "wild"][0])
    ax = res.plot_claims(region="R1", time="2020")
    drawn = {a.get_gid() for a in ax.get_children()}
    assert {
        f"claim:{r}" for r in res.claims.index[(res.claims["region"] == "R1") & (res.claims["time"] == 2020)]
    } <= drawn
    assert any(g and g.startswith("flag:") for g in drawn)
    plt.close("all")
    path = res.report(tmp_path / "planted.html")
    text = path.read_text(encoding="utf-8")
    check_html(text)
    assert "A &lt;wild&gt; claim &amp; more" in text and "A <wild> claim" not in text
    assert res.claims.loc[wild_row, "flagged"]
