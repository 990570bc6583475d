"""Imports of the heavy dependencies, without their import-time notices.

ArviZ 0.2x prints a FutureWarning about its 1.0 refactor on import; it says
nothing about this library's use and would reach every user (and break test
suites that turn warnings into errors), so it is silenced here, once.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType


def quiet_import(name: str) -> ModuleType:
    """Import ``name`` (``pymc``, ``arviz``, ``nutpie`` ...) with ArviZ's refactor notice silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*ArviZ is undergoing a major refactor", category=FutureWarning)
        return importlib.import_module(name)
