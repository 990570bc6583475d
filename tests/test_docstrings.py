"""Docstrings of the public API: numpydoc conventions, each with an example that runs.

The examples themselves run as doctests (``--doctest-modules`` in
pyproject.toml); this file checks that every public object *has* them, and
that each docstring follows the numpydoc sections the API reference renders.
The public API is enumerated from the code (``__all__`` lists, the public
methods of the result classes, the classes of ``errors.py``), so a new public
object without a docstring fails here.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
from numpydoc.docscrape import NumpyDocString, get_doc_object
from numpydoc.validate import validate

import estimates as est
from estimates import baselines, errors, interpret

#: The numpydoc checks every public object must pass, one line each on what they catch.
ENFORCED = {
    "GL01": "the summary starts on the line of the opening quotes or the next",
    "GL02": "closing quotes on their own line",
    "GL03": "no double blank lines",
    "GL05": "no tabs",
    "GL06": "only numpydoc's section names (a typo'd section silently disappears from the docs)",
    "GL07": "sections in numpydoc's order",
    "GL08": "has a docstring",
    "GL09": "a deprecation notice comes first (nothing is deprecated yet)",
    "GL10": "reST directives with two colons",
    "SS01": "has a one-line summary",
    "SS02": "summary starts with a capital letter",
    "SS03": "summary ends with a period",
    "SS04": "summary without leading whitespace",
    "SS05": "a function's summary starts with an infinitive verb ('Return', not 'Returns')",
    "SS06": "summary fits on one line",
    "ES01": "an extended summary after the one-line summary",
    "PR01": "every parameter documented",
    "PR02": "no documented parameter that does not exist",
    "PR03": "parameters documented in signature order",
    "PR04": "every parameter has a type",
    "PR05": "parameter types do not end with a period",
    "PR06": "types spelled int/bool/str",
    "PR07": "every parameter has a description",
    "PR08": "parameter descriptions start with a capital letter",
    "PR09": "parameter descriptions end with a period",
    "PR10": "a space before the colon of 'name : type'",
    "RT01": "a function that returns something has a Returns section",
    "RT02": "a single return value is given by its type only",
    "RT03": "every return value has a description",
    "RT04": "return descriptions start with a capital letter",
    "RT05": "return descriptions end with a period",
    "YD01": "a generator has a Yields section",
    "SA02": "See Also descriptions end with a period",
    "SA03": "See Also descriptions start with a capital letter",
    "SA04": "every See Also entry has a description",
    "EX01": "has an Examples section",
}
# Not enforced:
# SA01 (a See Also section) - it is added where there is a related object to point to, not to every object.
# PR01-PR03 for an exception class that inherits its constructor - see test_docstring_follows_numpydoc.


def _exceptions_from(module) -> list[str]:
    return sorted(
        f"{module.__name__}.{name}"
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__
    )


def _public_members(cls: type) -> list[str]:
    """Public methods and properties defined on ``cls`` itself (not its dataclass fields)."""
    fields = set(getattr(cls, "__dataclass_fields__", {}))
    out = []
    for name, obj in vars(cls).items():
        if name.startswith("_") or name in fields:
            continue
        if isinstance(obj, (staticmethod, classmethod, property)) or inspect.isfunction(obj):
            out.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    return sorted(out)


_DATASETS: set[str] = set()  # every public function is checked, the datasets' loaders included
# Data, not functions or classes: documented by a ``#:`` comment (checked below).
_CONSTANTS = {"DEFAULT_PROB", "__version__"}


def public_api() -> list[str]:
    """Full dotted names of every public function, class, method and property."""
    names = set()
    for name in est.__all__:
        if name in _DATASETS or name in _CONSTANTS:
            continue
        obj = getattr(est, name)
        names.add(f"{obj.__module__}.{obj.__qualname__}")
    names.update(f"estimates.baselines.{name}" for name in baselines.__all__ if callable(getattr(baselines, name)))
    names.add("estimates.interpret.hedge_table")
    names.update(_exceptions_from(errors))
    names.add("estimates.many.group_seed")
    for cls in (est.Reconciliation, est.World, est.Interpretation, est.ManyReconciliations):
        names.update(_public_members(cls))
    return sorted(names)


API = public_api()


def test_the_enumeration_finds_the_api():
    # a guard against an enumeration that silently finds nothing
    for name in [
        "estimates.api.reconcile",
        "estimates.phrases.parse_claim",
        "estimates.phrases.ClaimParseError",
        "estimates.errors.ApproximationWarning",
        "estimates.results.Reconciliation.summary",
        "estimates.results.Reconciliation.load",
        "estimates.baselines.dersimonian_laird",
        "estimates.interpret.hedge_table",
        "estimates.simulate.World",
    ]:
        assert name in API


def _badly_documented(x, y):
    """Returns the sum"""
    return x + y


def test_the_checks_catch_a_bad_docstring():
    # a guard against a numpydoc upgrade that silently stops reporting
    codes = {code for code, _ in validate(get_doc_object(_badly_documented))["errors"]}
    assert {"SS03", "SS05", "ES01", "PR01", "RT01", "EX01"} <= codes


def test_baselines_all_lists_every_public_function():
    functions = {
        name
        for name, obj in vars(baselines).items()
        if inspect.isfunction(obj) and obj.__module__ == baselines.__name__ and not name.startswith("_")
    }
    assert functions <= set(baselines.__all__)


@pytest.mark.parametrize("name", API)
def test_docstring_follows_numpydoc(name):
    report = validate(name)
    enforced = set(ENFORCED)
    obj = _load(name)
    if inspect.isclass(obj) and issubclass(obj, BaseException) and "__init__" not in vars(obj):
        # an exception whose constructor is inherited: its parameters are
        # documented once, on the class that defines __init__ (ClaimError)
        enforced -= {"PR01", "PR02", "PR03"}
    failures = [f"{code}: {msg}" for code, msg in report["errors"] if code in enforced]
    assert not failures, f"{name}:\n  " + "\n  ".join(failures)


@pytest.mark.parametrize("name", API)
def test_examples_section_has_doctest_lines(name):
    obj = _load(name)
    doc = NumpyDocString(inspect.getdoc(obj) or "")
    examples = "\n".join(doc["Examples"])
    assert re.search(r"^\s*>>> ", examples, flags=re.MULTILINE), f"{name}: the Examples section has no '>>>' line"
    runnable = [
        line for line in examples.splitlines() if line.lstrip().startswith(">>> ") and "doctest: +SKIP" not in line
    ]
    assert runnable, f"{name}: every example line is skipped; at least one must run"


def test_default_prob_has_a_doc_comment():
    # Sphinx autodoc reads a constant's documentation from the `#:` comment above it
    lines = Path(interpret.__file__).read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("DEFAULT_PROB ="))
    assert lines[at - 1].startswith("#: "), lines[at - 1]


def _load(name: str):
    """The object of a dotted name: its module imported (``estimates.simulate`` is also a function), then attributes."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        break
    for part in parts[i:]:
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    return obj
