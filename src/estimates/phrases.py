"""Text -> claim: read statements as people write them.

``parse_claim("somewhere between 9,000 to 18,000 fighters")`` gives a range.
What each hedge *means* (which kind, how wide a vague quantity is) comes from
the tables in :mod:`estimates.interpret`; this module only finds the words.

How it works: the text is normalised (dashes, spaces, case) keeping its
length, so spans point into the original; numbers are found as tokens
(digits with separators and scale words, number words via ``number-parser``,
vague quantities such as "several hundred"); years in date phrases are set
aside; then one pattern must account for every remaining number, or the text
is rejected as ambiguous.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import ClaimError
from .interpret import FRACTIONS, HEDGES, RATIO_WORDS, VAGUE, WORD_POINTS, bare_number_kind

__all__ = ["ClaimParseError", "parse_claim"]


class ClaimParseError(ClaimError):
    """A statement cannot be read as one claim.

    Raised by :func:`parse_claim` for a text with no number, with several
    unrelated numbers, or with a number that could be read two ways; by
    :func:`estimates.reconcile` for a ``claim`` text it cannot read. It is a
    :class:`~estimates.errors.ClaimError`, so ``errors="skip"`` keeps the
    row with a ``status`` instead.

    Examples
    --------
    >>> import estimates as est
    >>> est.parse_claim("a large number of fighters")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    estimates.phrases.ClaimParseError: 'a large number of fighters': holds no number. write the number, ...
    >>> try:
    ...     est.parse_claim("between 5 and 6 and 7")
    ... except est.ClaimParseError as exc:
    ...     print(exc.reason)
    'between 5 and 6 and 7': holds more than one number (7 besides the claim 'between 5 and 6')
    """


DECIMALS = (None, ".", ",")

_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_SPACES = "\u00a0\u2009\u202f\u2007\u2002\u2003"
_APOSTROPHES = "\u2019\u02bc"

_SCALES = {
    "k": 1e3,
    "thousand": 1e3,
    "hundred": 1e2,
    "million": 1e6,
    "mn": 1e6,
    "m": 1e6,
    "mio": 1e6,
    "billion": 1e9,
    "bn": 1e9,
    "b": 1e9,
}
_SCALE_WORDS = ("hundred", "thousand", "million", "billion")
_PLURAL_SCALES = {"tens": 10, "hundreds": 100, "thousands": 1e3, "millions": 1e6, "billions": 1e9}

_UNITS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "one": 1,
}  # fmt: skip

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
# a year in a date phrase: "in 2021", "since March 2020", "(2022)", "2014-15" season
_YEAR_CONTEXT = re.compile(
    rf"(?:\b(?:in|since|by|during|until|till|from|of|before|after|last|early|late|mid|"
    rf"spring|summer|autumn|fall|winter|{_MONTHS})\s+|\()"
    rf"((?:19|20)\d\d(?:\s*[-/]\s*(?:(?:19|20)\d\d|\d\d))?)\b(?!\s*(?:%|percent))"
)

#: Words taken as the unit counted, searched in the few words after the number.
UNIT_WORDS = (
    "fighters", "members", "militants", "troops", "soldiers", "people", "persons", "deaths",
    "casualties", "killed", "dead", "prisoners", "detainees", "attacks", "incidents", "refugees",
    "civilians", "men", "combatants", "personnel", "recruits", "followers", "supporters",
    "insurgents", "rebels", "jihadists", "terrorists", "victims", "displaced", "families",
    "children", "women", "cases", "events", "operatives", "guerrillas",
    "bombings", "strikes", "inmates", "volunteers", "cells", "votes", "households",
)  # fmt: skip


@dataclass
class _Tok:
    start: int
    end: int
    value: float  # point value (NaN for a vague range)
    low: float = math.nan  # vague range bounds
    high: float = math.nan
    scaled: bool = False  # carried its own scale word ("25k")
    mult: float = 1.0  # that scale
    percent: bool = False
    vague: str | None = None  # "range" (several hundred) or "point" (a dozen)
    is_date: bool = False


def _normalise(text: str) -> str:
    """Lower-case, one kind of dash, space and apostrophe; the same length as ``text``."""
    out = []
    for ch in text:
        if ch in _DASHES:
            out.append("-")
        elif ch in _SPACES:
            out.append(" ")
        elif ch in _APOSTROPHES:
            out.append("'")
        else:
            out.append(ch.lower())
    s = "".join(out)
    assert len(s) == len(text)
    return s


def _number_regex(decimal: str | None) -> re.Pattern[str]:
    if decimal == ",":
        group = r"[.' ]"
        frac = r"(?:,(\d+))?"
    else:
        group = r"[,' ]"
        frac = r"(?:\.(\d+))?"
    return re.compile(
        rf"(?<![\d.])(\d{{1,3}}(?:{group}\d{{3}})+|\d+){frac}(?![\d])"
        rf"(?:(?:\s*(thousand|hundred|million|billion|mn|bn|mio)\b)|(?:(k|m|b)\b))?"
        rf"(\s*(?:%|percent\b|per cent\b))?"
    )


def _literal(int_part: str, frac: str | None, decimal: str | None, text: str) -> float:
    digits = re.sub(r"[^\d]", "", int_part)
    if decimal is None and frac is not None and len(frac) == 3 and re.fullmatch(r"\d{1,3}", int_part):
        raise ClaimParseError(
            f"{text!r}: the number {int_part}.{frac} is ambiguous (1.082 is one thousand and "
            "eighty-two where a dot groups thousands, but just over one where it marks decimals)",
            hint="pass decimal='.' or decimal=',' to say which",
        )
    return float(f"{digits}.{frac}") if frac else float(digits)


def _find_numbers(s: str, text: str, decimal: str | None) -> list[_Tok]:
    toks: list[_Tok] = []
    taken = [False] * len(s)

    def claim(a: int, b: int) -> bool:
        if any(taken[a:b]):
            return False
        for i in range(a, b):
            taken[i] = True
        return True

    # 1. vague quantities and word points (before number words eat "hundred")
    plural = "|".join(_PLURAL_SCALES)
    scale_words = "|".join(_SCALE_WORDS)
    for m in re.finditer(rf"\b({plural}|dozens)\s+of\s+({plural})\b", s):
        lo, hi = VAGUE["dozens"] if m.group(1) == "dozens" else VAGUE["plural"]
        if m.group(1) != "dozens":
            lo, hi = lo * _PLURAL_SCALES[m.group(1)], hi * _PLURAL_SCALES[m.group(1)]
        mult = _PLURAL_SCALES[m.group(2)]
        if claim(m.start(), m.end()):
            toks.append(_Tok(m.start(), m.end(), math.nan, lo * mult, hi * mult, vague="range"))
    vague_words = "|".join(re.escape(k) for k in sorted(VAGUE, key=len, reverse=True) if k not in ("plural", "dozens"))
    for m in re.finditer(rf"\b({vague_words})\s+({scale_words}|dozen)\b", s):
        lo, hi = VAGUE[m.group(1)]
        mult = 12.0 if m.group(2) == "dozen" else _SCALES[m.group(2)]
        if claim(m.start(), m.end()):
            toks.append(_Tok(m.start(), m.end(), math.nan, lo * mult, hi * mult, vague="range"))
    for phrase, v in sorted(WORD_POINTS.items(), key=lambda kv: -len(kv[0])):
        for m in re.finditer(rf"\b{re.escape(phrase)}\b", s):
            if claim(m.start(), m.end()):
                toks.append(_Tok(m.start(), m.end(), v, vague="point"))
    for m in re.finditer(rf"\b({plural}|dozens)\b", s):
        if m.group(1) == "tens":
            continue  # "tens" alone is too vague to read
        if m.group(1) == "dozens":
            lo, hi = VAGUE["dozens"]
        else:
            lo, hi = (x * _PLURAL_SCALES[m.group(1)] for x in VAGUE["plural"])
        if claim(m.start(), m.end()):
            toks.append(_Tok(m.start(), m.end(), math.nan, lo, hi, vague="range"))

    # 2. digits, with separators, scale words and percent signs
    for m in _number_regex(decimal).finditer(s):
        a, b = m.span()
        if any(taken[a:b]):
            continue
        value = _literal(m.group(1), m.group(2), decimal, text)
        scale_word = m.group(3) or m.group(4)
        mult = _SCALES[scale_word] if scale_word else 1.0
        if claim(a, b):
            toks.append(_Tok(a, b, value * mult, scaled=bool(scale_word), mult=mult, percent=bool(m.group(5))))

    # 3. number words ("four thousand", "two hundred and fifty", "a thousand")
    word = r"(?:[a-z]+(?:-[a-z]+)?)"
    for m in re.finditer(rf"\b{word}(?:\s+{word})*\b", s):
        words = m.group(0).split()
        i0 = m.start()
        pos = []
        off = i0
        for w in words:
            j = s.index(w, off)
            pos.append((j, j + len(w)))
            off = j + len(w)
        run: list[int] = []
        for k, w in enumerate(words + [""]):
            if _is_number_word(w, words[k + 1] if k + 1 < len(words) else "", bool(run)):
                run.append(k)
                continue
            if run:
                for seg in _split_run([words[r] for r in run], run):
                    a, b = pos[seg[0]][0], pos[seg[-1]][1]
                    phrase = " ".join(words[r] for r in seg)
                    v = _words_value(phrase)
                    if v is not None and not any(taken[a:b]):
                        claim(a, b)
                        scales = [_SCALES[words[r]] for r in seg if words[r] in _SCALE_WORDS]
                        toks.append(_Tok(a, b, v, scaled=bool(scales), mult=scales[-1] if scales else 1.0))
                run = []
    toks.sort(key=lambda t: t.start)
    # 4. years in date phrases are not claims
    for m in _YEAR_CONTEXT.finditer(s):
        for t in toks:
            if m.start(1) <= t.start and t.end <= m.end(1) and not t.scaled and not t.percent:
                t.is_date = True
    return toks


def _is_number_word(w: str, nxt: str, in_run: bool) -> bool:
    parts = w.split("-")
    if nxt in ("third", "thirds", "quarter", "quarters", "half", "halves"):
        return False  # "two thirds" is a fraction, read with FRACTIONS
    if all(p in _UNITS for p in parts) and w:
        # a lone "one" is a pronoun far more often than a count
        return w != "one" or nxt in _SCALE_WORDS or in_run
    if w in _SCALE_WORDS:
        return True
    if w in ("a", "an"):
        return nxt in _SCALE_WORDS
    return w == "and" and in_run and (nxt in _UNITS or nxt.split("-")[0] in _UNITS)


def _split_run(words: list[str], idx: list[int]) -> list[list[int]]:
    """Split a run of number words at an "and" that joins two numbers, not one.

    "two hundred and fifty" is one number; "six thousand and eight thousand"
    is two: the part after "and" has a scale word at least as large as the
    last one before it.
    """
    order = {w: i for i, w in enumerate(_SCALE_WORDS)}
    segs: list[list[int]] = [[]]
    last_scale = -1
    for k, w in enumerate(words):
        if w == "and":
            rest = words[k + 1 :]
            nxt_and = rest.index("and") if "and" in rest else len(rest)
            after = [order[x] for x in rest[:nxt_and] if x in order]
            if after and max(after) >= last_scale:
                segs.append([])
                last_scale = -1
                continue
        if w in order:
            last_scale = max(last_scale, order[w])
        segs[-1].append(idx[k])
    return [seg for seg in segs if seg]


def _words_value(phrase: str) -> float | None:
    from number_parser import parse_number

    p = re.sub(r"^(a|an)\s+", "one ", phrase.strip())
    p = re.sub(r"\s+and$", "", p)
    v = parse_number(p)
    return None if v is None else float(v)


# ------------------------------------------------------------------------------ patterns


def _alt(phrases: Any) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


_N = r"@(\d+)@"
_CONNECT = r"\s*(?:-|to|and|or|until|through)\s*"


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    lo, hi, ab = _alt(HEDGES["at_least"]), _alt(HEDGES["at_most"]), _alt(HEDGES["about"])
    any_hedge = f"{lo}|{hi}|{ab}"
    up = r"increase|increased|rise|rose|risen|jump|jumped|growth|grew|grown|up|climbed|surged|higher|more"
    down = r"decrease|decreased|fall|fell|fallen|drop|dropped|decline|declined|down|lower|less|fewer|cut"
    fracs = _alt(FRACTIONS)
    verbs = _alt(RATIO_WORDS)
    p = [
        ("ratio_verb", rf"(?:(?P<h>{any_hedge})\s+)?(?:than\s+)?(?P<verb>{verbs})"),
        ("ratio_fold", rf"(?:(?P<h>{any_hedge})\s+)?(?:a\s+)?{_N}\s*-?\s*fold"),
        ("ratio_up", rf"(?:an?\s+)?(?:{up})\s+(?:of\s+|by\s+)?(?:(?P<h>{any_hedge})\s+)?{_N}"),
        ("ratio_up_after", rf"(?:an?\s+)?(?:(?P<h>{any_hedge})\s+)?{_N}\s*(?:{up})\b"),
        ("ratio_down_frac", rf"(?:{down})\s+(?:of\s+|by\s+)?(?:(?P<h>{any_hedge})\s+)?(?P<frac>{fracs})\b"),
        ("ratio_down", rf"(?:an?\s+)?(?:{down})\s+(?:of\s+|by\s+)?(?:(?P<h>{any_hedge})\s+)?{_N}"),
        ("ratio_down_after", rf"(?:an?\s+)?(?:(?P<h>{any_hedge})\s+)?{_N}\s*(?:{down})\b"),
        ("triple", rf"{_N}\s*-\s*{_N}\s*[-,]\s*{_N}"),
        ("pm", rf"{_N}\s*(?:plus or minus|\+/-|±)\s*{_N}"),
        (
            "range",
            rf"(?:(?P<h>{ab})\s+)?(?:(?:somewhere|anywhere)\s+)?(?:(?P<lead>between|from|ranging from|"
            rf"in the range of|in the range|range of|range from|estimated at)\s+)?{_N}{_CONNECT}{_N}",
        ),
        # one pattern per side, all hedges longest first: "no more than" is
        # not "more than", "not exceeding" is not "exceeding"
        ("before", rf"(?<![a-z])(?P<h>{_alt(HEDGES['at_least'] + HEDGES['at_most'] + HEDGES['about'])})\s*{_N}"),
        (
            "after",
            rf"{_N}\s*-?\s*(?P<h>{_alt(HEDGES['at_least_after'] + HEDGES['at_most_after'] + HEDGES['about_after'])})",
        ),
        ("bare", _N),
    ]
    return [(name, re.compile(rx)) for name, rx in p]


_COMPILED: list[tuple[str, re.Pattern[str]]] | None = None


def parse_claim(text: str, *, decimal: str | None = None) -> dict[str, Any]:
    """Read one statement as a claim.

    Finds the numbers in the text (digits, scale words, number words) and
    the hedge words around them, and returns the claim they make in the
    columns of the claims table. :func:`estimates.reconcile` reads the
    ``claim`` column this way; call it to see how a text will be read.

    Parameters
    ----------
    text : str
        The statement, e.g. ``"more than 7,000 fighters"``.
    decimal : {None, ".", ","}
        The decimal mark. ``None`` reads "." as decimal and "," as a thousands
        separator and rejects numbers such as "1.082" that could be either.

    Returns
    -------
    dict
        ``kind`` (range, at_least, at_most, about, exact), ``low``, ``high``,
        ``value`` (NaN where not stated), ``ratio`` (True for a relative claim:
        the numbers are N(time)/N(since)), ``span`` (start, end) of the matched
        words in ``text``, ``hedge`` (the word that decided the kind, or None),
        ``unit`` (the thing counted when named, or None) and ``text``.

    Raises
    ------
    ClaimParseError
        When the text holds no number, several unrelated numbers, or an
        ambiguous one.

    See Also
    --------
    estimates.interpret.hedge_table : Every hedge word and how it is read.

    Notes
    -----
    What each hedge word means is not decided here but read from the tables
    of :mod:`estimates.interpret`; this function only finds the words and
    numbers. Years in date phrases ("since August 2021") are set aside, so
    they do not count as a second number.

    Examples
    --------
    >>> from estimates import parse_claim
    >>> c = parse_claim("somewhere between 9,000 to 18,000 fighters")
    >>> c["kind"], c["low"], c["high"], c["unit"]
    ('range', 9000.0, 18000.0, 'fighters')
    >>> parse_claim("more than doubled")["kind"], parse_claim("more than doubled")["low"]
    ('at_least', 2.0)
    >>> parse_claim("10,000 or so")["kind"]
    'about'
    >>> parse_claim("1.082 fighters", decimal=",")["value"]  # the dot groups thousands
    1082.0
    """
    global _COMPILED
    if not isinstance(text, str) or not text.strip():
        raise ClaimParseError(f"{text!r}: there is no statement to read", hint="give text such as 'about 5,000'")
    if decimal not in DECIMALS:
        raise ClaimParseError(f"decimal={decimal!r} is not supported", hint="use None, '.' or ','")
    s = _normalise(text)
    toks = _find_numbers(s, text, decimal)
    live = [t for t in toks if not t.is_date]
    # skeleton: numbers become @i@ markers; map skeleton offsets back to text
    skel, back = [], []
    cur = 0
    for i, t in enumerate(live):
        skel.append(s[cur : t.start])
        back.extend(range(cur, t.start))
        mark = f"@{i}@"
        skel.append(mark)
        back.extend([t.start] * (len(mark) - 1) + [t.end - 1])
        cur = t.end
    skel.append(s[cur:])
    back.extend(range(cur, len(s)))
    sk = "".join(skel)
    if _COMPILED is None:
        _COMPILED = _patterns()
    for name, rx in _COMPILED:
        for m in rx.finditer(sk):
            if not _word_bounded(sk, m):
                continue
            used = [int(g) for g in re.findall(r"@(\d+)@", m.group(0))]
            out = _reading(name, m, [live[i] for i in used], text)
            if out is None:
                continue
            rest = [i for i in range(len(live)) if i not in used]
            if rest:
                others = ", ".join(text[live[i].start : live[i].end] for i in rest)
                raise ClaimParseError(
                    f"{text!r}: holds more than one number ({others} besides the claim "
                    f"{text[back[m.start()] : back[m.end() - 1] + 1]!r})",
                    hint="give one statement per row",
                )
            start, end = back[m.start()], back[m.end() - 1] + 1
            out.update(span=(start, end), unit=_unit(s, start, end), text=text)
            return out
    if not live:
        raise ClaimParseError(
            f"{text!r}: holds no number", hint="write the number, e.g. 'about 5,000' or 'between 6,000 and 8,000'"
        )
    raise ClaimParseError(f"{text!r}: no reading fits", hint="rephrase as e.g. 'about 5,000' or '6,000 to 8,000'")


def _word_bounded(sk: str, m: re.Match[str]) -> bool:
    a, b = m.span()
    before = sk[a - 1] if a > 0 else " "
    after = sk[b] if b < len(sk) else " "
    first, last = sk[a], sk[b - 1]
    ok_before = not (before.isalnum() and first.isalnum())
    ok_after = not (after.isalnum() and last.isalnum())
    return ok_before and ok_after


def _kind_of(hedge: str | None) -> str | None:
    if hedge is None:
        return None
    for kind in ("at_least", "at_most", "about"):
        if hedge in HEDGES[kind]:
            return kind
    return None


def _result(kind: str, low: float = math.nan, high: float = math.nan, value: float = math.nan, *, ratio: bool = False,
            hedge: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"kind": kind, "low": low, "high": high, "value": value, "ratio": ratio, "hedge": hedge}


def _point(kind: str, v: float, ratio: bool, hedge: str | None) -> dict[str, Any]:
    if kind == "at_least":
        return _result(kind, low=v, ratio=ratio, hedge=hedge)
    if kind == "at_most":
        return _result(kind, high=v, ratio=ratio, hedge=hedge)
    return _result(kind, value=v, ratio=ratio, hedge=hedge)


def _reading(name: str, m: re.Match[str], toks: list[_Tok], text: str) -> dict[str, Any] | None:
    gd = m.groupdict()
    hedge = gd.get("h")
    if name == "ratio_verb":
        v = RATIO_WORDS[gd["verb"]]
        return _point(_kind_of(hedge) or "about", v, True, hedge or gd["verb"])
    if name == "ratio_fold":
        (t,) = toks
        return _point(_kind_of(hedge) or "about", t.value, True, hedge or "fold")
    if name in ("ratio_up", "ratio_up_after", "ratio_down", "ratio_down_after"):
        (t,) = toks
        if not t.percent:
            return None
        p = t.value / 100.0
        v = 1.0 + p if name.startswith("ratio_up") else 1.0 - p
        if v <= 0:
            raise ClaimParseError(f"{text!r}: a fall of {t.value:g}% leaves nothing", hint="check the percentage")
        kind = _kind_of(hedge) or bare_number_kind(t.value)
        if name.startswith("ratio_down") and kind in ("at_least", "at_most"):
            kind = "at_most" if kind == "at_least" else "at_least"  # fell by more than 40%: ratio below 0.6
        return _point(kind, v, True, hedge or "%")
    if name == "ratio_down_frac":
        v = 1.0 - FRACTIONS[gd["frac"]]
        return _point(_kind_of(hedge) or "about", v, True, hedge or gd["frac"])
    if any(t.percent for t in toks):
        return None  # a bare percentage is not a count
    if name == "triple":
        a, b, c = (t.value for t in toks)
        if not (a <= b <= c):
            return None
        return _result("range", low=a, high=c, value=b, hedge="low-best-high")
    if name == "pm":
        a, b = (t.value for t in toks)
        if not b < a:
            return None
        return _result("range", low=a - b, high=a + b, hedge="plus or minus")
    if name == "range":
        t1, t2 = toks
        if t1.vague or t2.vague:
            return None
        a, b = t1.value, t2.value
        if not t1.scaled and t2.scaled and a * t2.mult <= b:
            a = a * t2.mult  # "20-25K", "six to eight thousand": the scale belongs to both
        connector = re.search(_CONNECT, m.group(0))
        lead = gd.get("lead")
        if connector and connector.group(0).strip() == "and" and not lead:
            return None  # "54 attacks and 12 bombings" is not a range
        if a > b:
            raise ClaimParseError(
                f"{text!r}: the range runs from {a:,g} down to {b:,g}",
                hint="write the smaller number first",
            )
        return _result("range", low=a, high=b, hedge=lead or (hedge and "about") or "-")
    (t,) = toks
    if t.vague == "range":
        kind = _kind_of(hedge)
        if kind == "at_least":
            return _result(kind, low=t.low, hedge=hedge)
        if kind == "at_most":
            return _result(kind, high=t.high, hedge=hedge)
        return _result("range", low=t.low, high=t.high, hedge=text[t.start : t.end].strip().lower())
    if name == "before":
        return _point(_kind_of(hedge), t.value, False, hedge)
    if name == "after":
        kind = next(k for k in ("about", "at_most", "at_least") if hedge in HEDGES[f"{k}_after"])
        return _point(kind, t.value, False, hedge)
    # a bare number
    if t.vague == "point":
        return _point("about", t.value, False, text[t.start : t.end].strip().lower())
    return _point(bare_number_kind(t.value), t.value, False, None)


def _unit(s: str, start: int, end: int) -> str | None:
    """The counted thing: a known unit word among the four words after the claim, else before it."""
    after = re.findall(r"[a-z][a-z'-]*", s[end:])[:4]
    before = re.findall(r"[a-z][a-z'-]*", s[:start])[-4:]
    for w in after + before[::-1]:
        if w in UNIT_WORDS:
            return w
    return None
