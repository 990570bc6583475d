"""Pool the model-true samples of the calibration study: coverage with cluster standard errors.

    python scripts/pool_calibration.py

Reads the rows that ``benchmarks/calibration.py`` saved in
``benchmarks/results`` (the full study and the extra model-true samples) and
prints, per sample and pooled, the model's 50% and 90% coverage of leaves,
aggregates and source biases. The standard error is the spread of the
per-problem coverages over the square root of the number of problems: the
cells of one problem share its sources' biases, so they are not independent
draws and the binomial error would understate it. Also prints the rank
histogram of the leaves (10 bins of the 99-draw ranks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
SAMPLES = {
    "first 60 (calibration-rows.csv.gz)": "calibration-rows.csv.gz",
    "--offset 500": "calibration-rows-model-true-offset500.csv.gz",
    "--offset 1000": "calibration-rows-model-true-offset1000.csv.gz",
}


def coverage(rows: pd.DataFrame, target: str, level: float) -> str:
    """Mean coverage of ``target`` at ``level`` with its cluster standard error and number of problems."""
    x = rows[(rows["target"] == target) & (rows["level"] == level)]
    per_problem = x.groupby("problem")["covered"].mean()
    se = per_problem.std(ddof=1) / np.sqrt(len(per_problem))
    return f"{x['covered'].mean():.3f} ± {se:.3f} ({len(per_problem)} problems)"


def main() -> None:
    parts = []
    for label, name in SAMPLES.items():
        d = pd.read_csv(RESULTS / name)
        d = d[(d["scenario"] == "model-true") & (d["method"] == "model")].assign(sample=label)
        parts.append(d)
    rows = pd.concat(parts, ignore_index=True)
    for label, d in [*((lab, rows[rows["sample"] == lab]) for lab in SAMPLES), ("pooled", rows)]:
        print(label)
        for level in (0.9, 0.5):
            cells = ", ".join(f"{t} {coverage(d, t, level)}" for t in ("leaf", "aggregate", "bias"))
            print(f"  {level:.0%}: {cells}")
    ranks = rows["rank"].dropna()
    counts = np.histogram(ranks, bins=10, range=(0, 100))[0]
    print(f"leaf ranks: {len(ranks)}, expected {len(ranks) / 10:.0f} per bin: {counts.tolist()}")


if __name__ == "__main__":
    main()
