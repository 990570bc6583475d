"""Build the embedded example ``acw-strengths`` from Arnold's acw_battle_data.

Reads the American Civil War files in ``../shared/data/acw`` (Jeffrey B.
Arnold, *acw_battle_data*, data CC BY 4.0) and writes
``src/estimates/datasets/acw-strengths.csv``: one claim per (battle, side,
source) about the troop strength of that side in that battle. The output is
deterministic (fixed row order, integers written as integers), so
``tests/test_acw.py`` can check that the shipped file is exactly what this
script produces.

Usage::

    python scripts/build_acw_dataset.py              # write the shipped CSV
    python scripts/build_acw_dataset.py --check      # exit 1 if the shipped CSV differs
    python scripts/build_acw_dataset.py --data DIR --out PATH

How the table is built (the datasets README says the same in prose):

1. Strength claims from the five sources in ``acw/`` that give a troop strength
   per battle and side: Livermore (1900), Bodart (1908), Clodfelter (2008), the
   CWSAC (its 1993 report and the update, CWSAC II, taken as one source: the
   update's figure where it gives one, else the report's: the update repeats
   the report's figure in 79 of the 86 battle sides both give) and Wikipedia.
   Fox, Phisterer and Kennedy give casualties only. civilwar.org gives
   strengths but ``acw/`` has no cross-walk from its battle slugs to CWSAC
   ids, so it is left out rather than matched by guesswork. ``nps_forces.csv`` is left out: it is Arnold's
   rule-based combination of the other sources, not an independent source.
2. Each source's battles are mapped to CWSAC ids: CWSAC and CWSAC II use them
   already, Wikipedia through ``wikipedia_battles.csv``, the others through
   their ``*_to_cwsac.json`` cross-walk, keeping only entries with relation
   ``eq`` that map one source battle to one CWSAC battle (and no CWSAC battle
   reached twice): campaigns and sieges that span several CWSAC battles are
   dropped.
3. Only the Union and Confederate sides are kept (a few battles have a Native
   American side).
4. The subset: battles where *both* sides' strengths are given by at least
   ``MIN_SOURCES`` of the five sources.
5. Reading: a single number (or a min equal to the max) is ``kind="about"``:
   a historian's figure is an estimate however precise it looks (the library
   would read a bare 75,316 as an exact count). A min below the max is a
   ``range``; a min with no max is ``at_least``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "acw"
OUT = ROOT / "src" / "estimates" / "datasets" / "acw-strengths.csv"

#: Keep a battle when both sides' strengths come from at least this many sources.
MIN_SOURCES = 4

#: Side labels: the value in ``side`` and the short form in ``region``.
SIDES = {"US": ("Union", "US"), "Union": ("Union", "US"), "Confederate": ("Confederate", "CS")}

#: Sources in the order rows are written, with what each says its strength counts.
SOURCES = {
    "Livermore 1900": "troops engaged (Livermore's own reckoning of those who took part)",
    "Bodart 1908": "all troops available for the battle, engaged or not",
    "Clodfelter 2008": "strength as given (what is counted is not stated)",
    "CWSAC": "strength as given (what is counted is not stated)",
    "Wikipedia": "strength as given in the battle's infobox (what is counted is not stated)",
}

COLUMNS = [
    "claim_id",
    "region",
    "quantity",
    "source",
    "low",
    "high",
    "value",
    "kind",
    "battle_id",
    "battle",
    "side",
    "source_battle",
    "source_file",
    "source_column",
    "note",
]


def crosswalk(path: Path) -> dict[str, str]:
    """One-to-one ``eq`` entries of an ``*_to_cwsac.json`` file: source battle id -> CWSAC id."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    pairs = [
        (str(e["battles_from"][0]), str(e["battles_to"][0]))
        for e in entries
        if e["relation"] == "eq" and len(e["battles_from"]) == 1 and len(e["battles_to"]) == 1
    ]
    n_from = Counter(f for f, _ in pairs)
    n_to = Counter(t for _, t in pairs)
    return {f: t for f, t in pairs if n_from[f] == 1 and n_to[t] == 1}


def _rows(
    df: pd.DataFrame,
    source: str,
    file: str,
    id_col: str,
    lo_col: str,
    hi_col: str | None,
    to_cwsac: dict[str, str] | None,
) -> list[dict]:
    out = []
    for rec in df.to_dict("records"):
        side = SIDES.get(rec["belligerent"])
        lo = rec[lo_col]
        hi = rec[hi_col] if hi_col else lo
        key = str(rec[id_col])
        cwsac = key if to_cwsac is None else to_cwsac.get(key)
        if side is None or cwsac is None or pd.isna(lo):
            continue
        out.append(
            {
                "battle_id": cwsac,
                "side": side[0],
                "source": source,
                "lo": float(lo),
                "hi": float(hi),
                "source_battle": key,
                "source_file": file,
                "source_column": lo_col if hi_col is None else f"{lo_col}, {hi_col}",
            }
        )
    return out


def cwsac_rows(first: list[dict], update: list[dict]) -> list[dict]:
    """One CWSAC figure per battle and side: the update's (CWSAC II) where it gives one, else the 1993 report's.

    The update revises the report (it keeps the 1993 figure in most battles and
    changes a few), so the two are one source in two editions, not two
    sources; ``cwsac_note`` records what the other edition says.
    """
    old = {(r["battle_id"], r["side"]): r for r in first}
    new = {(r["battle_id"], r["side"]): r for r in update}
    out = []
    for key in sorted(set(old) | set(new)):
        if key in new:
            r = dict(new[key])
            if key not in old:
                r["cwsac_note"] = "CWSAC II (the 1993 report gives none)"
            elif (old[key]["lo"], old[key]["hi"]) == (r["lo"], r["hi"]):
                r["cwsac_note"] = "CWSAC II (the 1993 report gives the same)"
            else:
                r["cwsac_note"] = f"CWSAC II (the 1993 report gives {_number_text(old[key])})"
        else:
            r = dict(old[key])
            r["cwsac_note"] = "the 1993 report (CWSAC II gives none)"
        out.append(r)
    return out


def _number_text(r: dict) -> str:
    return f"{r['lo']:,.0f}" if r["lo"] == r["hi"] else f"{r['lo']:,.0f}-{r['hi']:,.0f}"


def raw_claims(data: Path) -> pd.DataFrame:
    """Every strength figure of the five sources that maps to one CWSAC battle, before the subset."""

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(data / name)

    wiki_ids = read("wikipedia_battles.csv")
    wiki = dict(zip(wiki_ids["battle_id"].astype(str), wiki_ids["cwsac_id"].astype(str), strict=True))
    rows = []
    rows += _rows(
        read("livermore_forces.csv"), "Livermore 1900", "livermore_forces.csv", "battle_id", "str", None,
        crosswalk(data / "livermore_to_cwsac.json"),
    )  # fmt: skip
    rows += _rows(
        read("bodart1908_forces.csv"), "Bodart 1908", "bodart1908_forces.csv", "battle_id", "strength", None,
        crosswalk(data / "bodart1908_to_cwsac.json"),
    )  # fmt: skip
    rows += _rows(
        read("clodfelter_forces.csv"), "Clodfelter 2008", "clodfelter_forces.csv", "battle_id", "strength", None,
        crosswalk(data / "clodfelter_to_cwsac.json"),
    )  # fmt: skip
    rows += cwsac_rows(
        _rows(read("cwsac_forces.csv"), "CWSAC", "cwsac_forces.csv", "battle", "strength_min", "strength_max", None),
        _rows(read("cws2_forces.csv"), "CWSAC", "cws2_forces.csv", "battle", "strength", None, None),
    )
    rows += _rows(
        read("wikipedia_forces.csv"), "Wikipedia", "wikipedia_forces.csv", "battle_id", "strength_min",
        "strength_max", wiki,
    )  # fmt: skip
    out = pd.DataFrame(rows)
    dup = out.duplicated(["battle_id", "side", "source"])
    if dup.any():
        raise ValueError(f"a source gives two strengths for one battle and side: {out[dup].to_dict('records')}")
    return out


def battle_names(data: Path) -> dict[str, str]:
    """CWSAC id -> a short battle name from its Wikipedia title ("First_Battle_of_Bull_Run" -> "First Bull Run")."""
    links = pd.read_csv(data / "nps_battles_to_wiki.csv")
    links = links[links["relation"] == "="]
    names = {}
    for cwsac, title in zip(links["cwsac_id"], links["wikipedia_title"], strict=True):
        name = str(title).replace("_", " ")
        for prefix in ("Battle of the ", "Battle of "):
            name = name.removeprefix(prefix)
        for ordinal in ("First", "Second", "Third"):
            name = name.replace(f"{ordinal} Battle of ", f"{ordinal} ")
        names[str(cwsac)] = name
    return names


def build(data: Path = DATA, min_sources: int = MIN_SOURCES) -> pd.DataFrame:
    """The claims table: battles whose both sides have at least ``min_sources`` strength figures."""
    raw = raw_claims(data)
    n = raw.groupby(["battle_id", "side"])["source"].nunique().unstack("side")
    n = n.reindex(columns=["Union", "Confederate"]).fillna(0)
    keep = sorted(n.index[(n >= min_sources).all(axis=1)])
    names = battle_names(data)
    sub = raw[raw["battle_id"].isin(keep)].copy()
    sub["_side"] = sub["side"].map({"Union": 0, "Confederate": 1})
    sub["_source"] = sub["source"].map({s: i for i, s in enumerate(SOURCES)})
    sub = sub.sort_values(["battle_id", "_side", "_source"], kind="stable")
    rows = []
    for i, rec in enumerate(sub.to_dict("records"), start=1):
        battle = names.get(rec["battle_id"], rec["battle_id"])
        short = "US" if rec["side"] == "Union" else "CS"
        lo, hi = rec["lo"], rec["hi"]
        row = {
            "claim_id": f"acw-{i:03d}",
            "region": f"{battle} ({short})",
            "quantity": "troops",
            "source": rec["source"],
            "low": None,
            "high": None,
            "value": None,
            "battle_id": rec["battle_id"],
            "battle": battle,
            "side": rec["side"],
            "source_battle": rec["source_battle"],
            "source_file": rec["source_file"],
            "source_column": rec["source_column"],
        }
        what = SOURCES[rec["source"]]
        if isinstance(rec.get("cwsac_note"), str):
            what = f"{rec['cwsac_note']}; {what}"
        if pd.isna(hi):
            row.update(low=lo, kind="at_least", note=f"{what}; a minimum with no maximum: at least")
        elif lo == hi:
            row.update(value=lo, kind="about", note=f"{what}; one number, read as about (an estimate, not a count)")
        elif lo < hi:
            row.update(low=lo, high=hi, kind="range", note=f"{what}; a min and a max, read as a range")
        else:
            raise ValueError(f"minimum above maximum: {rec}")
        rows.append(row)
    out = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("low", "high", "value"):
        x = pd.to_numeric(out[col])
        if not (x.dropna() == x.dropna().round()).all():
            raise ValueError(f"{col}: expected whole numbers of troops")
        out[col] = x.round().astype("Int64")
    return out


def render(df: pd.DataFrame) -> str:
    """The CSV text written to disk (``\\n`` line ends, integers without a decimal point)."""
    return df.to_csv(index=False, lineterminator="\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help=f"the acw/ folder (default {DATA})")
    p.add_argument("--out", type=Path, default=OUT, help=f"where to write the CSV (default {OUT})")
    p.add_argument("--check", action="store_true", help="do not write; exit 1 if --out differs from the build")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"{args.data} not found: the acw_battle_data files are read from ../shared/data/acw")
    df = build(args.data)
    text = render(df)
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'differs from the build'}")
        return 0 if same else 1
    with open(args.out, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    print(
        f"wrote {args.out}: {len(df)} claims, {df['battle_id'].nunique()} battles, "
        f"{df['region'].nunique()} battle sides, {df['source'].nunique()} sources"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
