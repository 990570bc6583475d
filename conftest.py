"""Fixtures shared by the unit tests (tests/) and the doctests (src/estimates/).

One real fit, ``example_fit``, serves both: the slow tests use it by name,
and the doctests of :class:`estimates.Reconciliation` and the plot functions
get it as ``result`` (the same fit the class docstring shows being made), so
documentation examples show a real posterior without sampling again.
"""

from __future__ import annotations

import doctest
import re

import pytest
from _pytest.doctest import DoctestItem

import estimates as est

_USES_RESULT = re.compile(r"\bresult\b")


def _uses_result(item: pytest.Item) -> bool:
    """A doctest with a runnable (not skipped) example that mentions ``result``."""
    if not isinstance(item, DoctestItem):
        return False
    return any(_USES_RESULT.search(ex.source) and not ex.options.get(doctest.SKIP, False) for ex in item.dtest.examples)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # such a doctest needs the real fit: it is slow, so `-m "not slow"` (unit tests only) leaves it out
    for item in items:
        if _uses_result(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def example_fit():
    """The article example at default settings (the README's demo)."""
    return est.reconcile(est.load_example("isis-2022"))


@pytest.fixture(autouse=True)
def _doctest_result(request, doctest_namespace):
    """Give a doctest that uses ``result`` the shared fit of the article example.

    Only those doctests ask for ``example_fit``, so a run that collects none
    of them never samples.
    """
    if not _uses_result(request.node):
        yield
        return
    doctest_namespace["result"] = request.getfixturevalue("example_fit")
    yield
    doctest_namespace.pop("result", None)
