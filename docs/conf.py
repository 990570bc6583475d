"""Sphinx configuration of the estimates documentation site.

Built with ``make docs`` (``sphinx-build -W --keep-going``: every warning is an
error, so a dangling reference or a notebook cell that raises fails the
build). The notebooks in ``../notebooks`` (linked here as ``notebooks/``) are
executed by myst-nb during the build, with the defaults of their
``parameters`` cell.
"""

from __future__ import annotations

import os
from pathlib import Path

import estimates
from estimates.interpret import hedge_table

HERE = Path(__file__).parent

project = "estimates"
author = "the estimates developers"
copyright = "2026, the estimates developers"  # noqa: A001 - Sphinx's name
release = version = estimates.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinxarg.ext",
    "sphinx_copybutton",
]

exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "README.md"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# ---- strictness: a reference to an object of this package that does not
# exist is an error; types from other libraries are not linked (the build has
# no network, so no intersphinx inventories).
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(pandas|pd|numpy|np|matplotlib|xarray|arviz|az|pathlib|os|collections|typing)\b.*"),
    ("py:class", r"(DataFrame|Series|ndarray|Axes|Figure|Path|PathLike|InferenceData|Generator|Mapping|Sequence)"),
    ("py:class", r"(array-like|array_like|optional|callable|path-like|file-like|mapping|sequence|iterable)"),
    ("py:class", r"(default|of|or|and|None|True|False|str|int|float|bool|dict|list|tuple|object|any)"),
    ("py:class", r"\{.*|.*\}|'.*'|\".*\"|[0-9.]+"),
]

# ---- API reference
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autodoc_member_order = "bysource"
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = {"GL08", "EX01"}
# constants: their documentation is their value (tests/test_docstrings.py checks the rest in full)
numpydoc_validation_exclude = {r"\.DEFAULT_PROB$", r"\.BASELINES$", r"\.BASELINE_COLUMNS$", r"\.GROUP_COLUMNS$"}

# ---- notebooks: executed at build time; an exception in any cell fails the build
nb_execution_mode = os.environ.get("ESTIMATES_NB_EXECUTION", "cache")
nb_execution_cache_path = str(HERE / "_build" / ".jupyter_cache")
nb_execution_timeout = 900
nb_execution_raise_on_error = False  # a failing cell is a warning (with its traceback), and -W makes it fatal
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# ---- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"estimates {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False


def _hedges_page() -> str:
    """The hedge table of :mod:`estimates.interpret`, one row per reading, as Markdown."""
    table = hedge_table()
    lines = ["| kind | reading | phrases |", "|---|---|---|"]
    for (kind, reading), rows in table.groupby(["kind", "reading"], sort=False):
        phrases = ", ".join(f"`{p}`" for p in rows["phrase"])
        lines.append(f"| {kind} | {reading.replace('|', '/')} | {phrases} |")
    return "\n".join(lines) + "\n"


def _write_generated(app) -> None:  # noqa: ANN001 - Sphinx application
    out = HERE / "_generated"
    out.mkdir(exist_ok=True)
    text = _hedges_page()
    path = out / "hedges.md"
    if not path.exists() or path.read_text() != text:  # unchanged files keep Sphinx's cache
        path.write_text(text)


def setup(app):  # noqa: ANN001, ANN201 - Sphinx hook
    app.connect("builder-inited", _write_generated)
