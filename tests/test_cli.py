"""The ``estimates`` command: reconcile, stdin/stdout, atomic output, bad input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from estimates import cli

CSV = "region,low,high,value,source\nSyria,6000,8000,,UN\nSyria,8000,16000,,US\nIraq,,,3000,UN\n"
# the same claims as people write them
CSV_TEXT = (
    'region,claim,source\nSyria,"between 6,000 and 8,000",UN\nSyria,"8,000 to 16,000",US\nIraq,"about 3,000",UN\n'
)
FAST = ["--draws", "300", "--tune", "300", "--chains", "2", "--seed", "5"]


def test_help_everywhere():
    for argv in (["--help"], ["demo", "--help"], ["reconcile", "--help"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 0


@pytest.mark.slow
def test_reconcile_file_to_file_with_hierarchy(tmp_path, capsys):
    src = tmp_path / "claims.csv"
    src.write_text(CSV)
    hier = tmp_path / "h.json"
    hier.write_text(json.dumps({"Iraq and Syria": ["Iraq", "Syria"]}))
    out = tmp_path / "iv.csv"
    sources = tmp_path / "src.csv"
    with _no_convergence_noise():
        code = cli.main(
            [
                "reconcile",
                str(src),
                "-o",
                str(out),
                "--hierarchy",
                str(hier),
                "--sources-out",
                str(sources),
                *FAST,
            ]
        )
    assert code == 0
    iv = pd.read_csv(out)
    # the aggregate is not claimed but both its leaves are modelled: reported as their sum
    assert set(iv["region"]) == {"Syria", "Iraq", "Iraq and Syria"}
    assert list(iv.columns) == ["quantity", "region", "time", "mean", "median", "sd", "lower", "upper"]
    assert set(pd.read_csv(sources)["source"]) == {"UN", "US"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.slow
def test_reconcile_stdin_to_stdout(monkeypatch, capsys):
    """Text claims piped in: the phrase parser reads them, intervals come out."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(CSV_TEXT))
    with _no_convergence_noise():
        code = cli.main(["reconcile", "-", "-o", "-", *FAST])
    assert code == 0
    out = capsys.readouterr().out
    iv = pd.read_csv(io.StringIO(out))
    assert len(iv) == 2


@pytest.mark.parametrize(
    "csv,expected",
    [
        ("region,low,high\nSyria,8000,6000\n", "claim 0"),
        ("region,low,high\nSyria,-5,6000\n", "must be positive"),
        ("region,claim\nSyria,lots of fighters\n", "holds no number"),
        ("region,low,kind\nSyria,7000,guess\n", "not a known kind"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, csv, expected):
    src = tmp_path / "bad.csv"
    src.write_text(csv)
    out = tmp_path / "iv.csv"
    code = cli.main(["reconcile", str(src), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("estimates: error:") and expected in err
    assert len(err.splitlines()) == 1
    assert not out.exists()  # nothing half-written


def test_missing_file_is_a_one_line_error(capsys):
    assert cli.main(["reconcile", "no-such-file.csv"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    """If writing fails midway the previous file is untouched and no temporary file remains."""
    from estimates import results

    dest = tmp_path / "iv.csv"
    dest.write_text("old\n")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        results.write_table_atomic(pd.DataFrame({"a": [1, 2]}), dest)
    assert dest.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [dest]


def test_module_entry_point_prints_version():
    proc = subprocess.run(
        [sys.executable, "-m", "estimates.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout.startswith("estimates ")


class _no_convergence_noise:
    """Short CLI runs may not reach ESS 400; that warning is expected here."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        import estimates

        warnings.simplefilter("ignore", estimates.ConvergenceWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def test_parse_prints_the_interpretation(capsys):
    assert cli.main(["parse", "more than 7,000 fighters"]) == 0
    out = capsys.readouterr().out
    assert "kind:    at_least" in out and "low:     7,000" in out and "unit:    fighters" in out


def test_parse_json_and_errors(capsys):
    assert cli.main(["parse", "--json", "more", "than", "doubled"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["kind"] == "at_least" and got["low"] == 2.0 and got["ratio"] is True and got["high"] is None
    assert cli.main(["parse", "1.082"]) == 2
    assert "decimal" in capsys.readouterr().err
    assert cli.main(["parse", "--decimal", ",", "1.082"]) == 0
    assert "1,082" in capsys.readouterr().out


def test_cache_command_shows_and_clears_the_on_disk_cache(tmp_path, capsys, monkeypatch):
    """``estimates cache`` names every folder of compiled code; ``--clear`` deletes them all (private ones here)."""
    from estimates import inference

    folders = [tmp_path / "compiledir", tmp_path / "numba", tmp_path / "estimates"]
    for i, where in enumerate(folders):
        (where / "sub").mkdir(parents=True)
        (where / "sub" / "mod.so").write_bytes(b"x" * 2_000_000 * (i + 1))
    kernel = [tmp_path / "pycache" / f"_callbacks._logp-33.py311.{ext}" for ext in ("nbi", "1.nbc")]
    kernel[0].parent.mkdir()
    for f in kernel:
        f.write_bytes(b"x" * 150_000)
    (tmp_path / "pycache" / "_callbacks.cpython-311.pyc").write_bytes(b"x")  # not the kernel's: kept
    info = {
        "compiledir": str(folders[0]),
        "folders": [str(f) for f in folders],
        "models_in_process": 0,
        "kernel_files": [str(f) for f in kernel],
    }
    monkeypatch.setattr(inference, "cache_info", lambda: info)
    assert cli.main(["cache"]) == 0
    out = capsys.readouterr().out
    for i, where in enumerate(folders):
        assert f"{where} ({2 * (i + 1)} MB)" in out
    assert f"2 files in {kernel[0].parent} (0.3 MB)" in out
    assert cli.main(["cache", "--clear"]) == 0
    assert not any(where.exists() for where in folders)
    assert not any(f.exists() for f in kernel)
    assert (tmp_path / "pycache" / "_callbacks.cpython-311.pyc").exists()


def test_cache_info_names_the_folders_the_engines_write():
    """The folders ``--clear`` deletes are where PyTensor, Numba and the layout records really live."""
    import pytensor

    from estimates import _nutpie, inference

    base = pytensor.config.base_compiledir
    folders = inference.cache_info()["folders"]
    assert folders == [str(pytensor.config.compiledir), str(base / "numba"), str(_nutpie.records_dir())]
    from pytensor.link.numba.cache import NUMBA_CACHE_PATH

    assert str(NUMBA_CACHE_PATH) in folders
    pytest.importorskip("nutpie")
    from estimates import _callbacks

    _callbacks.callbacks()  # compiled (or loaded) now, so their files exist
    kernel = inference.cache_info()["kernel_files"]
    assert kernel and all(Path(f).exists() for f in kernel)
    assert {Path(f).suffix for f in kernel} == {".nbi", ".nbc"}
