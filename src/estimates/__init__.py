"""estimates: Bayesian reconciliation of conflicting numbers.

>>> import estimates as est
>>> claims = est.load_example("isis-2022")
>>> result = est.reconcile(claims)  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import reconcile  # noqa: E402
from .datasets import example_hierarchy, load_example  # noqa: E402
from .errors import (  # noqa: E402
    ApproximationWarning,
    ClaimError,
    ConvergenceWarning,
    CoverageError,
    EmptyClaimsError,
    EstimatesError,
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
from .interpret import DEFAULT_PROB, Interpretation  # noqa: E402
from .many import ManyReconciliations, reconcile_many  # noqa: E402
from .phrases import ClaimParseError, parse_claim  # noqa: E402
from .plots import plot_claims, plot_sources, plot_timeline  # noqa: E402
from .results import Reconciliation  # noqa: E402
from .simulate import World, simulate  # noqa: E402

__all__ = [
    "DEFAULT_PROB",
    "ApproximationWarning",
    "ClaimError",
    "ClaimParseError",
    "ConvergenceWarning",
    "CoverageError",
    "EmptyClaimsError",
    "EstimatesError",
    "HierarchyError",
    "Interpretation",
    "InvalidRangeError",
    "ManyReconciliations",
    "MissingNumberError",
    "NonPositiveCountError",
    "OptionError",
    "Reconciliation",
    "TimeOrderError",
    "TimeParseError",
    "UnknownKindError",
    "UnknownRegionError",
    "World",
    "__version__",
    "example_hierarchy",
    "load_example",
    "parse_claim",
    "plot_claims",
    "plot_sources",
    "plot_timeline",
    "reconcile",
    "reconcile_many",
    "simulate",
]
