"""The ``estimates`` command.

``estimates demo`` reconciles the embedded example and prints the intervals
and sources (``--report report.html`` also writes the HTML report);
``estimates reconcile claims.csv -o intervals.csv`` does the same for a file
(``-`` reads standard input or writes standard output); ``estimates report
claims.csv -o report.html`` reconciles a file with the same options and
writes one self-contained HTML report. Output files are written atomically.
Bad input exits with status 2 and one line on standard error.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .results import format_number

EXIT_BAD_INPUT = 2


def format_table(df: pd.DataFrame, numeric: Sequence[str]) -> str:
    """A table as aligned text, numbers rounded for reading."""
    shown = df.copy()
    for c in numeric:
        if c in shown:
            shown[c] = [format_number(float(v)) for v in shown[c]]
    shown = shown.astype(object).where(shown.notna(), "")
    return shown.to_string(index=False)


def _print_result(result, out) -> None:  # noqa: ANN001
    from .results import TENSION_THRESHOLD

    iv = result.intervals
    prob = result.meta["options"]["prob"]
    print(f"Posterior medians and {prob:.0%} intervals (counts)", file=out)
    print(
        format_table(iv[["quantity", "region", "time", "median", "lower", "upper"]], ["median", "lower", "upper"]),
        file=out,
    )
    print("", file=out)
    print(
        "Sources: bias as a factor on the consensus (1 = unbiased), reliability as a factor on stated spreads",
        file=out,
    )
    print(
        format_table(
            result.sources,
            ["bias", "bias_lower", "bias_upper", "reliability", "reliability_lower", "reliability_upper", "influence"],
        ),
        file=out,
    )
    print("", file=out)
    print(
        f"Claims: leave-one-out tension (below {TENSION_THRESHOLD:g}: does not fit the rest, flagged)",
        file=out,
    )
    cl = result.claims
    cols = [c for c in ("claim_id", "region", "time", "source", "claim", "status", "tension", "flagged") if c in cl]
    shown = cl[cols].copy()
    if "claim" in shown:
        shown["claim"] = [t if not isinstance(t, str) or len(t) <= 40 else t[:39] + "..." for t in shown["claim"]]
    shown["tension"] = ["-" if pd.isna(t) else f"{t:.2g}" for t in cl["tension"]]
    print(format_table(shown, []), file=out)
    d = result.diagnostics
    print("", file=out)
    if d.get("approximate"):
        print(
            f"Diagnostics: APPROXIMATE (mean-field ADVI), {d['seconds']:.1f} s, Pareto k {d['pareto_k']:.2f} "
            "(above 0.7: far from the posterior); use --method nuts for intervals you report",
            file=out,
        )
        return
    print(
        f"Diagnostics: sampler {d['sampler']}, {d['seconds']:.1f} s (compile {d['compile_seconds']:.1f} s"
        f"{', reused' if d['cached'] else ''}{', loaded from disk' if d.get('from_disk') else ''}), "
        f"max R-hat {d['r_hat_max']:.3f}, "
        f"min bulk ESS {d['ess_bulk_min']:.0f}, divergences {d['divergences']}, "
        f"converged {d['converged']}",
        file=out,
    )
    lo = d.get("loo")
    if lo:
        print(
            f"Leave-one-out: {lo['claims_refit']} claim(s) refit exactly, {lo['claims_unreliable']} unreliable, "
            f"{lo['refits']} refit(s) in {lo['seconds']:.1f} s (max Pareto k {lo['pareto_k_max']:.2f}"
            + (f"; {lo['refit_divergences']} divergent draw(s) in the refits" if lo.get("refit_divergences") else "")
            + ")",
            file=out,
        )


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prob", type=float, default=None, help="probability of the intervals (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain (default 1000)")
    p.add_argument("--tune", type=int, default=500, help="NUTS tuning steps per chain (default 500)")
    p.add_argument("--chains", type=int, default=4, help="chains (default 4)")
    p.add_argument(
        "--target-accept",
        type=float,
        default=None,
        help="NUTS target acceptance rate; raise it (e.g. 0.95) when divergences are reported (default 0.8)",
    )
    p.add_argument(
        "--sampler",
        choices=("auto", "nutpie", "pymc", "numpyro", "nutpie-jax"),
        default="auto",
        help="NUTS implementation (default: nutpie if installed)",
    )
    p.add_argument("--robust", action="store_true", help="heavy-tailed claims: one wild claim cannot drag the rest")
    p.add_argument(
        "--method",
        choices=("nuts", "advi"),
        default="nuts",
        help="nuts (default) samples the posterior; advi is a fast approximation, labelled as such",
    )
    p.add_argument(
        "--refits",
        type=int,
        default=10,
        help="at most this many exact refits where leave-one-out weights are unreliable (default 10; 0: none)",
    )


def _input_args(p: argparse.ArgumentParser) -> None:
    """Options about reading a claims file, shared by ``reconcile`` and ``report``."""
    p.add_argument("--hierarchy", help="JSON file mapping each aggregate to its members")
    p.add_argument("--reference", help="a source taken as unbiased")
    p.add_argument("--decimal", choices=(".", ","), help="decimal mark of numbers in 'claim' texts")
    p.add_argument(
        "--errors",
        choices=("raise", "skip"),
        default="raise",
        help="on a bad row: stop (raise, default) or skip it and mark it rejected",
    )


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="estimates",
        description="Bayesian reconciliation of conflicting numbers.",
    )
    parser.add_argument("--version", action="version", version=f"estimates {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="reconcile the embedded example (the isis-2022 article) and print the tables",
        description="Reconcile the claims of the embedded example and print intervals and sources.",
    )
    demo.add_argument("--example", default="isis-2022", help="embedded example (default isis-2022)")
    demo.add_argument("--report", metavar="PATH", help="also write the HTML report (figures, tables) to PATH")
    _sampling_args(demo)

    par = sub.add_parser(
        "parse",
        help='show how a statement is read, e.g. estimates parse "more than 7,000"',
        description="Read a statement as a claim and print its interpretation.",
    )
    par.add_argument("text", nargs="+", help="the statement (quote it, or pass its words)")
    par.add_argument("--decimal", choices=(".", ","), help="decimal mark, for numbers such as 1.082")
    par.add_argument("--json", action="store_true", help="print the interpretation as JSON")

    rec = sub.add_parser(
        "reconcile",
        help="reconcile a claims CSV and write the intervals as CSV",
        description="Reconcile the claims in a CSV file (- for standard input) and write the intervals.",
    )
    rec.add_argument(
        "claims", help="claims CSV (the columns of estimates.reconcile's claims table), or - for standard input"
    )
    rec.add_argument("-o", "--output", default="-", help="intervals CSV to write (default -: standard output)")
    rec.add_argument("--sources-out", help="also write the sources table to this CSV")
    rec.add_argument("--claims-out", help="also write the claims table (with status and tension) to this CSV")
    rec.add_argument(
        "--by",
        nargs="+",
        metavar="COLUMN",
        help="reconcile each group of rows with the same values in these columns on its own (reconcile_many); "
        "the tables written carry these columns; exit status 1 if any group failed",
    )
    rec.add_argument(
        "--workers",
        type=int,
        default=1,
        help="with --by: run the groups in this many local worker processes (default 1: in this process)",
    )
    rec.add_argument("--groups-out", help="with --by: also write one row per group (status, error, diagnostics)")
    _input_args(rec)
    _sampling_args(rec)

    rep = sub.add_parser(
        "report",
        help="reconcile a claims CSV and write one self-contained HTML report",
        description="Reconcile the claims in a CSV file (- for standard input), as 'reconcile' does, and write "
        "an HTML report: summary, claims in tension with their quotes, figures, tables and diagnostics.",
    )
    rep.add_argument(
        "claims", help="claims CSV (the columns of estimates.reconcile's claims table), or - for standard input"
    )
    rep.add_argument("-o", "--output", required=True, metavar="PATH", help="the HTML file to write")
    _input_args(rep)
    _sampling_args(rep)

    cache = sub.add_parser(
        "cache",
        help="show where compiled models are cached on disk, or clear that cache",
        description="Compiled models are cached in this process (by layout) and on disk, under "
        "PyTensor's base_compiledir: its compiled C, Numba's compiled code and estimates' layout records. "
        "Show where, or clear the on-disk cache (the next run compiles from scratch).",
    )
    cache.add_argument(
        "--clear", action="store_true", help="delete the on-disk cache of compiled code (all three folders)"
    )
    return parser


def _read_claims_arg(arg: str) -> pd.DataFrame:
    if arg == "-":
        text = sys.stdin.read()
        if not text.strip():
            from .errors import EmptyClaimsError

            raise EmptyClaimsError("standard input is empty; pipe a claims CSV into 'estimates reconcile -'")
        return pd.read_csv(io.StringIO(text))
    path = Path(arg)
    if not path.exists():
        raise FileNotFoundError(f"claims file {arg!r} does not exist")
    return pd.read_csv(path)


def _write_csv(df: pd.DataFrame, dest: str) -> None:
    from .results import write_table_atomic

    if dest == "-":
        df.to_csv(sys.stdout, index=False)
    else:
        write_table_atomic(df, dest)


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"estimates: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``estimates`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    from .errors import EstimatesError

    old = warnings.showwarning
    warnings.showwarning = _one_line_warnings
    try:
        return _run(args)
    except (
        EstimatesError,
        FileNotFoundError,
        json.JSONDecodeError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
    ) as exc:
        print(f"estimates: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        warnings.showwarning = old


def _print_parse(args: argparse.Namespace) -> int:
    from .phrases import parse_claim

    text = " ".join(args.text)
    c = parse_claim(text, decimal=args.decimal)
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in c.items()}))
        return 0
    a, b = c["span"]
    rows = [
        ("text", text),
        ("matched", text[a:b]),
        ("kind", c["kind"] + (" (relative: N(time) / N(since))" if c["ratio"] else "")),
        ("low", format_number(c["low"])),
        ("high", format_number(c["high"])),
        ("value", format_number(c["value"])),
        ("hedge", c["hedge"] or ""),
        ("unit", c["unit"] or ""),
    ]
    for k, v in rows:
        if v != "":
            print(f"{k + ':':9}{v}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from .inference import cache_info

    info = cache_info()
    folders = [Path(f) for f in info["folders"]]
    if args.clear:
        import shutil

        for where in folders:
            shutil.rmtree(where, ignore_errors=True)
            print(f"cleared {where}")
        kernel = [Path(f) for f in info.get("kernel_files", [])]
        for f in kernel:
            f.unlink(missing_ok=True)
        if kernel:
            print(f"cleared the kernel's {len(kernel)} cache files in {kernel[0].parent}")
        return 0
    for where in folders:
        size = sum(f.stat().st_size for f in where.rglob("*") if f.is_file()) if where.exists() else 0
        print(f"on-disk cache: {where} ({size / 1e6:.0f} MB)")
    kernel = [Path(f) for f in info.get("kernel_files", [])]
    if kernel:
        size = sum(f.stat().st_size for f in kernel if f.exists())
        print(f"the kernel nutpie samples: {len(kernel)} files in {kernel[0].parent} ({size / 1e6:.1f} MB)")
    print("move it with PYTENSOR_FLAGS=base_compiledir=DIR (the kernel's files: NUMBA_CACHE_DIR=DIR)")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "parse":
        return _print_parse(args)
    if args.command == "cache":
        return _cache(args)
    import estimates as est

    kw = dict(
        random_seed=args.seed,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        sampler=args.sampler,
        robust=args.robust,
        method=args.method,
        refits=args.refits,
    )
    if args.prob is not None:
        kw["prob"] = args.prob
    if args.target_accept is not None:
        kw["target_accept"] = args.target_accept
    if args.command == "demo":
        t0 = time.perf_counter()
        claims = est.load_example(args.example)
        print(f"Reconciling {len(claims)} claims of the '{args.example}' example ...", file=sys.stderr)
        result = est.reconcile(claims, **kw)
        _print_result(result, sys.stdout)
        if args.report:
            path = result.report(args.report)
            print(f"Report written to {path}", file=sys.stdout)
        print(f"Total wall time {time.perf_counter() - t0:.1f} s", file=sys.stdout)
        return 0
    claims = _read_claims_arg(args.claims)
    hierarchy = None
    if args.hierarchy:
        path = Path(args.hierarchy)
        if not path.exists():
            raise FileNotFoundError(f"hierarchy file {args.hierarchy!r} does not exist")
        hierarchy = json.loads(path.read_text(encoding="utf-8"))
    common = dict(hierarchy=hierarchy, reference=args.reference, errors=args.errors, decimal=args.decimal, **kw)
    if args.command == "reconcile" and args.by:
        return _reconcile_groups(est, claims, args, common)
    result = est.reconcile(claims, **common)
    d = result.diagnostics
    if args.command == "report":
        path = result.report(args.output)
        print(
            f"estimates: {len(result.claims)} claims -> {len(result.intervals)} intervals; report written to {path}",
            file=sys.stderr,
        )
        return 0
    _write_csv(result.intervals, args.output)
    if args.sources_out:
        _write_csv(result.sources, args.sources_out)
    if args.claims_out:
        _write_csv(result.claims, args.claims_out)
    print(
        f"estimates: {len(result.claims)} claims -> {len(result.intervals)} intervals; "
        f"R-hat {d['r_hat_max']:.3f}, ESS {d['ess_bulk_min']:.0f}, divergences {d['divergences']}, "
        f"{d['seconds']:.1f} s",
        file=sys.stderr,
    )
    return 0


def _reconcile_groups(est: Any, claims: pd.DataFrame, args: argparse.Namespace, common: dict[str, Any]) -> int:
    """``estimates reconcile --by ...``: many groups, their tables stacked; status 1 if any group failed."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if args.workers < 1:
        from .errors import OptionError

        raise OptionError(f"--workers {args.workers}: give 1 (this process) or more worker processes")
    pool = (
        ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) if args.workers > 1 else None
    )
    try:
        runs = est.reconcile_many(claims, by=args.by, executor=pool, progress=False, **common)
    finally:
        if pool is not None:
            pool.shutdown()
    _write_csv(runs.intervals, args.output)
    if args.sources_out:
        _write_csv(runs.sources, args.sources_out)
    if args.claims_out:
        _write_csv(runs.claims, args.claims_out)
    if args.groups_out:
        _write_csv(runs.groups.assign(warnings=runs.groups["warnings"].map(" | ".join)), args.groups_out)
    print(f"estimates: {runs.summary()}", file=sys.stderr)
    return 0 if runs.failed.empty else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
