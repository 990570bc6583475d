"""Named exceptions and warnings.

Every error about the input is a :class:`ClaimError` (a ``ValueError``) that
quotes the row, the column, the offending value and what to do about it.
Errors about the call itself (an option, the hierarchy, an empty table) are
the other subclasses of :class:`EstimatesError`. Every class here can be
caught as ``ValueError`` (errors) or ``UserWarning`` (warnings).

The examples call :func:`estimates.reconcile` with a bad table: the input is
checked before anything is sampled, so they raise at once.
"""

from __future__ import annotations

from typing import Any


class EstimatesError(ValueError):
    """Base class of every input error raised by ``estimates``.

    Catch it to handle any problem with what was passed in (a claim, an
    option, the hierarchy), and nothing else.

    See Also
    --------
    ClaimError : The subclass for errors about one row of the claims table.

    Examples
    --------
    >>> import estimates as est
    >>> try:
    ...     est.reconcile([{"region": "Syria", "low": 8000, "high": 6000}])
    ... except est.EstimatesError as exc:
    ...     print(type(exc).__name__)
    InvalidRangeError
    >>> issubclass(est.EstimatesError, ValueError)
    True
    """


class ClaimError(EstimatesError):
    """A claim (one input row) cannot be used.

    The message says which row (0-based) and which column hold what value,
    why it cannot be used and what to do about it:
    ``claim <row> (<context>): <column> = <value>: <reason>. <hint>``.

    Parameters
    ----------
    reason : str
        Short reason, used as ``status = "rejected: <reason>"`` when rows are
        skipped with ``errors="skip"``.
    row : int or None, optional
        Position of the row in the input (0-based), if the error is about a row.
    column : str or None, optional
        The column holding the offending value.
    value : Any, optional
        The offending value.
    hint : str, optional
        What to do about it, appended to the message.
    context : str, optional
        A few fields of the row (region, numbers) that help find it, shown
        after the row number.

    Attributes
    ----------
    row : int or None
        The ``row`` given.
    column : str or None
        The ``column`` given.
    value : Any
        The ``value`` given.
    reason : str
        The ``reason`` given.
    hint : str
        The ``hint`` given.

    See Also
    --------
    estimates.reconcile : Its ``errors="skip"`` keeps bad rows with a ``status`` instead of raising.

    Examples
    --------
    >>> import estimates as est
    >>> try:
    ...     est.reconcile([{"region": "Syria", "value": "lots"}])
    ... except est.ClaimError as exc:
    ...     print(exc.row, exc.column, exc.value, exc.reason, sep=" | ")
    0 | value | lots | is not a number

    The message is built from the parts:

    >>> raise est.ClaimError("is below low (8,000)", row=3, column="high", value=6000, hint="swap low and high")
    Traceback (most recent call last):
        ...
    estimates.errors.ClaimError: claim 3: high = 6000: is below low (8,000). swap low and high
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
    """``high`` is below ``low``.

    Also raised when a range gives a best ``value`` outside ``[low, high]``.
    A range whose two ends are equal is allowed.

    Examples
    --------
    >>> import estimates as est
    >>> est.reconcile([{"region": "Syria", "low": 8000, "high": 6000}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.InvalidRangeError: claim 0 (...): high = 6000: is below low (8,000). swap low and high, ...
    """


class NonPositiveCountError(ClaimError):
    """A count or ratio is zero or negative.

    Counts are read on the log scale, so every number a claim states must be
    positive.

    Examples
    --------
    >>> import estimates as est
    >>> est.reconcile([{"region": "Syria", "value": 0}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.NonPositiveCountError: claim 0 (region 'Syria', value 0): value = 0: must be positive. ...
    """


class MissingNumberError(ClaimError):
    """A number needed by the claim is missing or not a number.

    Raised for text or an infinite number where a number belongs, and for a
    row (or a table) with none of ``claim``, ``low``, ``high``, ``value``.
    Statements written as text belong in the ``claim`` column.

    Examples
    --------
    >>> import estimates as est
    >>> est.reconcile([{"region": "Syria", "value": "lots"}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.MissingNumberError: claim 0 (...): value = 'lots': is not a number. write plain numbers ...
    """


class UnknownKindError(ClaimError):
    """The ``kind`` column holds a kind the library does not know.

    The kinds are ``range``, ``at_least``, ``at_most``, ``about`` and
    ``exact``; an empty ``kind`` is inferred from ``low``/``high``/``value``.

    Examples
    --------
    >>> import estimates as est
    >>> est.reconcile([{"region": "Syria", "value": 5000, "kind": "maybe"}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.UnknownKindError: claim 0 (...): kind = 'maybe': is not a known kind. use one of range, ...
    """


class TimeParseError(ClaimError):
    """A ``time`` or ``since`` value cannot be read as a time.

    Times are dates, years (``2022``), months (``"2022-04"``) or plain
    numbers. Also raised when some claims of a quantity have a time and
    others have none, or ``since`` is given without ``time``.

    Examples
    --------
    >>> import estimates as est
    >>> est.reconcile([{"region": "Syria", "value": 5000, "time": "last spring"}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.TimeParseError: claim 0 (...): time = 'last spring': cannot be read as a time ...
    """


class TimeOrderError(ClaimError):
    """``since`` is not earlier than ``time``.

    A relative claim compares the count at ``time`` with the count at the
    earlier ``since``.

    Examples
    --------
    >>> import estimates as est
    >>> claim = {"region": "Syria", "claim": "more than doubled", "time": "2021", "since": "2022"}
    >>> est.reconcile([claim])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.TimeOrderError: claim 0 (region 'Syria'): since = '2022': is not earlier than time ('2021'). ...
    """


class CoverageError(ClaimError):
    """``coverage`` is outside the open interval (0, 1).

    A range's ``coverage`` is a probability: 0.95 for a 95% interval, not 95.

    Examples
    --------
    >>> import estimates as est
    >>> est.reconcile([{"region": "Syria", "low": 6000, "high": 8000, "coverage": 95}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.CoverageError: claim 0 (...): coverage = 95: is outside (0, 1). coverage is the probability ...
    """


class UnknownRegionError(ClaimError):
    """A region cannot be resolved against the hierarchy.

    Raised for a missing region, and for a name that matches a region of the
    hierarchy only when case and spaces are ignored (a likely typo). Other
    names are new leaf regions.

    Examples
    --------
    >>> import estimates as est
    >>> hierarchy = {"Iraq and Syria": ["Iraq", "Syria"]}
    >>> est.reconcile([{"region": "iraq", "value": 5000}], hierarchy=hierarchy)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.errors.UnknownRegionError: claim 0 (...): region = 'iraq': ... did you mean 'Iraq'? ...
    """


class HierarchyError(EstimatesError):
    """The hierarchy itself is malformed (cycle, empty aggregate, bad type).

    The hierarchy is checked before any claim is read; the message names the
    aggregate at fault.

    Examples
    --------
    >>> import estimates as est
    >>> est.reconcile([{"region": "Aleppo", "value": 5000}], hierarchy={"Syria": []})
    Traceback (most recent call last):
        ...
    estimates.errors.HierarchyError: aggregate 'Syria' has no members; list its members or remove it
    """


class EmptyClaimsError(EstimatesError):
    """There is no claim to reconcile.

    Raised for an empty table, a missing file, a table without a ``region``
    column, and when every row was rejected with ``errors="skip"``.

    Examples
    --------
    >>> import estimates as est
    >>> est.reconcile([])
    Traceback (most recent call last):
        ...
    estimates.errors.EmptyClaimsError: the claims table is empty; give at least one row with a region and a number
    """


class OptionError(EstimatesError):
    """An option passed to a public function is unknown or out of range.

    The message gives the option, its value and what it must be. Options are
    checked before any claim is read or anything is sampled.

    Examples
    --------
    >>> import estimates as est
    >>> est.reconcile([{"region": "Syria", "value": 5000}], prob=90)
    Traceback (most recent call last):
        ...
    estimates.errors.OptionError: prob=90 must be strictly between 0 and 1, e.g. 0.9
    """


class ConvergenceWarning(UserWarning):
    """The sampler did not converge well enough to trust the intervals.

    :func:`estimates.reconcile` warns when the largest R-hat, the smallest
    bulk ESS or the number of divergences fails its threshold; the message
    says which and what to try. The result is still returned, with
    ``result.diagnostics["converged"]`` False.

    See Also
    --------
    estimates.Reconciliation : Its ``diagnostics`` hold the numbers checked.

    Examples
    --------
    To stop instead of warning, turn the warning into an error:

    >>> import warnings
    >>> import estimates as est
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", est.ConvergenceWarning)
    ...     result = est.reconcile(est.load_example("isis-2022"))  # doctest: +SKIP

    The fit of the article example converges (the test suite supplies that fit
    as ``result``):

    >>> result.diagnostics["converged"]
    True
    """


class ApproximationWarning(UserWarning):
    """An approximate fit (``method="advi"``) failed its quality check.

    Also issued when the leave-one-out checks of some claims or sources are
    unreliable (Pareto ``k`` above 0.7) and no exact refit was left
    (``refits=``). The message says which and what to try.

    See Also
    --------
    estimates.Reconciliation : Its ``diagnostics`` hold the Pareto ``k`` of an approximate fit.

    Examples
    --------
    To stop instead of warning:

    >>> import warnings
    >>> import estimates as est
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", est.ApproximationWarning)
    ...     result = est.reconcile(est.load_example("isis-2022"), method="advi")  # doctest: +SKIP
    >>> issubclass(est.ApproximationWarning, UserWarning)
    True
    """
