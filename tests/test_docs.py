"""The documentation site: the API reference lists the public API, and the
build (``make docs``: ``sphinx-build -W``) fails on a dangling reference or a
notebook cell that raises.

The build tests copy ``docs/`` into a temporary folder and build it with
notebook execution off (``ESTIMATES_NB_EXECUTION=off``), so they take seconds;
``make test`` builds the real site with every notebook executed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import estimates as est
from estimates import baselines

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"


def public_names() -> list[str]:
    names = [n for n in est.__all__ if n != "__version__"]
    names += [f"baselines.{n}" for n in baselines.__all__]
    names.append("interpret.hedge_table")
    return names


def documented_in_api_page() -> set[str]:
    """Names given to ``auto*`` directives in docs/api.rst, relative to ``estimates``."""
    module, names = "estimates", set()
    for line in (DOCS / "api.rst").read_text().splitlines():
        if m := re.match(r"\.\. (?:currentmodule|module):: (\S+)", line):
            module = m.group(1)
        elif m := re.match(r"\.\. auto(?:function|class|exception|data):: (\S+)", line):
            name = m.group(1) if m.group(1).startswith("estimates.") else f"{module}.{m.group(1)}"
            names.add(name.removeprefix("estimates."))
    return names


def test_api_reference_lists_every_public_object():
    missing = sorted(set(public_names()) - documented_in_api_page())
    assert not missing, f"public objects missing from docs/api.rst: {missing}"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs_and_have_parameters(path: Path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        f"{path.name}: clear the outputs before committing (the docs build executes it)"
    )
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code), (
        f"{path.name}: needs a code cell tagged 'parameters'"
    )
    assert "../shared" not in path.read_text(), f"{path.name} reads ../shared: users do not have it"


def _copy_docs(tmp_path: Path) -> Path:
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build", "jupyter_execute", "notebooks"))
    shutil.copytree(NOTEBOOKS, src / "notebooks")
    shutil.copytree(ROOT / "benchmarks" / "results", tmp_path / "benchmarks" / "results")  # pages include tables
    return src


def _build(src: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("sphinx")
    env = {**os.environ, "ESTIMATES_NB_EXECUTION": "off"}
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(src), str(tmp_path / "html")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def docs_copy(tmp_path_factory):
    pytest.importorskip("sphinx")
    return tmp_path_factory.mktemp("site")


def test_docs_build_cleanly_without_executing(docs_copy):
    src = _copy_docs(docs_copy / "clean")
    out = _build(src, docs_copy / "clean")
    assert out.returncode == 0, out.stderr[-3000:]


def test_a_dangling_reference_fails_the_build(docs_copy):
    src = _copy_docs(docs_copy / "dangling")
    page = src / "getting-started.md"
    page.write_text(page.read_text() + "\nSee [a page that does not exist](no-such-page.md).\n")
    out = _build(src, docs_copy / "dangling")
    assert out.returncode != 0
    assert "no-such-page.md" in out.stderr


def test_a_notebook_that_raises_fails_the_build(docs_copy):
    src = _copy_docs(docs_copy / "broken")
    nb = {
        "cells": [
            {"id": "title", "cell_type": "markdown", "metadata": {}, "source": ["# Broken on purpose"]},
            {
                "id": "boom",
                "cell_type": "code",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": ["raise RuntimeError('this notebook is broken')"],
            },
        ],
        # executed even though the build's default is off: myst-nb's per-notebook setting
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "mystnb": {"execution_mode": "force"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (src / "notebooks" / "99-broken.ipynb").write_text(json.dumps(nb))
    out = _build(src, docs_copy / "broken")
    assert out.returncode != 0
    assert "99-broken.ipynb: WARNING: Executing notebook failed" in out.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.stderr)  # the traceback comes with terminal colours
    assert "RuntimeError: this notebook is broken" in plain  # the cell's traceback is shown
