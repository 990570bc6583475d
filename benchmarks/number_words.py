"""Which library reads number words best? The measurement behind using number-parser.

Run: ``python benchmarks/number_words.py`` (text2num is optional:
``pip install text2num`` to include it). Prints, per library, how many of the
cases below come out as the expected number(s), and the failures.

Each case is a phrase and the numbers it holds, in order. Libraries are asked
to rewrite the phrase with digits (text2num's ``alpha2digit``,
number-parser's ``parse``); estimates is asked through ``parse_claim``.
"""

from __future__ import annotations

import math
import re
import sys

CASES: list[tuple[str, list[float]]] = [
    ("four thousand", [4000]),
    ("twenty-five", [25]),
    ("two hundred and fifty", [250]),
    ("seven thousand fighters", [7000]),
    ("more than seven thousand militants", [7000]),
    ("one thousand and fifty", [1050]),
    ("two thousand three hundred and fifty", [2350]),
    ("ninety-nine thousand nine hundred", [99900]),
    ("a thousand", [1000]),
    ("a hundred", [100]),
    ("three million", [3_000_000]),
    ("eleven hundred", [1100]),
    ("between six thousand and eight thousand", [6000, 8000]),
    ("between five hundred and eight hundred", [500, 800]),
    ("six to eight thousand", [6000, 8000]),
    ("from two thousand to three thousand", [2000, 3000]),
    ("fifty five", [55]),
    ("twelve", [12]),
]


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


def _with_text2num(phrase: str) -> list[float]:
    from text_to_num import alpha2digit

    return _numbers(alpha2digit(phrase, "en"))


def _with_number_parser(phrase: str) -> list[float]:
    from number_parser import parse

    return _numbers(parse(phrase))


def _with_estimates(phrase: str) -> list[float]:
    from estimates import parse_claim

    c = parse_claim(phrase)
    if c["kind"] == "range":
        return [c["low"], c["high"]]
    return [x for x in (c["low"], c["high"], c["value"]) if not math.isnan(x)]


def main() -> int:
    rows = []
    for name, fn in (
        ("text2num", _with_text2num),
        ("number-parser", _with_number_parser),
        ("estimates (number-parser on delimited spans)", _with_estimates),
    ):
        ok, fails = 0, []
        for phrase, want in CASES:
            try:
                got = fn(phrase)
            except ImportError:
                ok = None
                break
            except Exception as exc:  # noqa: BLE001 - a library's failure is a data point here
                got = [f"error: {type(exc).__name__}"]
            if got == want:
                ok += 1
            else:
                fails.append(f"{phrase!r} -> {got}")
        rows.append((name, ok, fails))
    print(f"| reader | correct of {len(CASES)} |")
    print("|---|---|")
    for name, ok, _ in rows:
        print(f"| {name} | {'not installed' if ok is None else ok} |")
    for name, ok, fails in rows:
        if ok is not None and fails:
            print(f"\n{name} misses:")
            for f in fails:
                print(f"  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
