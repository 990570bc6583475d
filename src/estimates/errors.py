"""Named exceptions and warnings.

Every error about the input is a :class:`ClaimError` (a ``ValueError``) that
quotes the row, the column, the offending value and what to do about it.
"""

from __future__ import annotations

from typing import Any


class EstimatesError(ValueError):
    """Base class of every input error raised by ``estimates``."""


class ClaimError(EstimatesError):
    """A claim (one input row) cannot be used.

    Attributes
    ----------
    row : int or None
        Position of the row in the input (0-based), if the error is about a row.
    column : str or None
        The column holding the offending value.
    value : Any
        The offending value.
    reason : str
        Short reason, used as ``status = "rejected: <reason>"`` when rows are
        skipped with ``errors="skip"``.
    """

    def __init__(
        self,
        reason: str,
        *,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
        hint: str = "",
        context: str = "",
    ) -> None:
        self.reason = reason
        self.row = row
        self.column = column
        self.value = value
        self.hint = hint
        where = []
        if row is not None:
            where.append(f"claim {row}")
        if context:
            where.append(f"({context})")
        head = " ".join(where)
        detail = reason
        if column is not None:
            detail = f"{column} = {value!r}: {reason}"
        msg = f"{head}: {detail}" if head else detail
        if hint:
            msg = f"{msg}. {hint}"
        super().__init__(msg)


class InvalidRangeError(ClaimError):
    """``high`` is below ``low``."""


class NonPositiveCountError(ClaimError):
    """A count or ratio is zero or negative."""


class MissingNumberError(ClaimError):
    """A number needed by the claim is missing or not a number."""


class UnknownKindError(ClaimError):
    """The ``kind`` column holds a kind the library does not know."""


class TimeParseError(ClaimError):
    """A ``time`` or ``since`` value cannot be read as a time."""


class TimeOrderError(ClaimError):
    """``since`` is not earlier than ``time``."""


class CoverageError(ClaimError):
    """``coverage`` is outside the open interval (0, 1)."""


class UnknownRegionError(ClaimError):
    """A region cannot be resolved against the hierarchy."""


class HierarchyError(EstimatesError):
    """The hierarchy itself is malformed (cycle, empty aggregate, bad type)."""


class EmptyClaimsError(EstimatesError):
    """There is no claim to reconcile."""


class OptionError(EstimatesError):
    """An option passed to a public function is unknown or out of range."""


class ConvergenceWarning(UserWarning):
    """The sampler did not converge well enough to trust the intervals."""


class ApproximationWarning(UserWarning):
    """An approximate fit (``method="advi"``) failed its quality check."""
