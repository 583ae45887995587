"""Drift flags: what a proposed rewrite lost or changed from its seed question.

Pure Python (no Django), used by the rewrite review page. A flag is a hint for the reviewer, not a
verdict, so the rules stay simple and predictable:

* ``number`` - every number in the seed must be in the proposal. Arabic numbers (``3``, ``1,000``,
  ``3.5``, ``50%``) and simple Chinese numerals are compared by value, so ``3`` and ``三``,
  ``50%`` and ``百分之五十``, ``第1张`` and ``第一张`` all match. In the seed a Chinese numeral counts
  only when it is clearly a quantity: two or more numeral characters (``十二``, ``三百``), one
  character before a measure word (``三只``, ``两个``, ``十张``), or after ``第``/``百分之``. A lone
  ``一`` counts only before 句/段/词/行 (``一句话`` is a format constraint; 一个, 一下, 一些 are
  too often just grammar); ``十分`` (very), ``千万`` (by all means), ``万一`` and two-digit runs
  such as ``七八`` (about seven or eight) are skipped. The proposal is read leniently (any numeral
  run; a lone 一 before any measure word), so a seed ``1`` is found in ``一只``.
* ``quoted`` - the text inside “…” ‘…’ "…" '…' 「…」 『…』 must appear unchanged (the quote marks
  themselves may change).
* ``entity`` - text in 《…》 book-title marks; capitalised Latin words and phrases (``Paris``,
  ``New York``); and Chinese names ending in 省/市/县/大学/学院/公司/集团/银行/医院/博物馆, taken
  as the two characters before the suffix plus the suffix (``北京市``, ``清华大学``) and skipping
  generic words (城市, 这家公司, …); the proposal keeps the name if it keeps those two characters
  (``北京`` for ``北京市``).
* ``latin`` - every other Latin-script token (acronyms ``GDP``, mixed case ``iPhone``, lower-case
  words); consecutive words separated by single spaces form one phrase (``RUNNING BIBLE``).
  Compared case-insensitively as a whole word or phrase.

Tokens inside a quoted or 《》 span are judged by that span only, so one changed quotation gives
one flag. Full-width ASCII (``３``, ``ＧＤＰ``) is folded to ASCII before anything is compared.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

NUMBER = "number"
QUOTED = "quoted"
LATIN = "latin"
ENTITY = "entity"


@dataclass(frozen=True)
class Drift:
    kind: str  # "number" | "quoted" | "latin" | "entity"
    token: str  # as written in the seed
    message: str


# Full-width ASCII -> ASCII, one character for one, so positions in the folded text are positions
# in the original (highlight() relies on it).
_FOLD = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20}


def _fold(text: str) -> str:
    return text.translate(_FOLD)


def _squash(text: str) -> str:
    """For containment checks: folded, casefolded, without whitespace."""
    return re.sub(r"\s+", "", _fold(text)).casefold()


# ---------------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------------

_ARABIC = re.compile(r"(?<![A-Za-z\d.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)%?|(?<![A-Za-z\d.,])\d+(?:\.\d+)?(?!\d)%?")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}
_CN_RUN = re.compile(r"(?P<percent>百分之)?(?P<run>[零〇一二两三四五六七八九十百千万]+)")
_MEASURE_WORDS = frozenset(
    "个只张件条位名种次本辆头匹棵朵块岁年月日号天周时分秒人元角米倍页章节部首篇座栋间家份杯瓶盒包袋片遍轮场届层排行列段句字幅台架把支根颗双对组项道题处点"
)
_FORMAT_MEASURE_WORDS = frozenset("句段词行")
_NOT_NUMBERS = frozenset({"千万", "万一", "一一", "万万"})


def _cn_value(run: str) -> int | None:
    """Value of a simple Chinese numeral: 三, 十二, 二十五, 三百零五, 两千, 一万; 二〇二三 as digits.
    None for what is not a plain number (七八 "seven or eight", a run too long to be one)."""
    if len(run) > 12:
        return None
    if all(char in _CN_DIGITS for char in run):
        if len(run) == 1:
            return _CN_DIGITS[run]
        return int("".join(str(_CN_DIGITS[char]) for char in run)) if len(run) >= 3 else None
    total = section = digit = 0
    for char in run:
        if char in _CN_DIGITS:
            digit = _CN_DIGITS[char]
        elif char == "万":
            total += (section + digit) * 10_000
            section = digit = 0
        else:
            section += (digit or 1) * _CN_UNITS[char]
            digit = 0
    return total + section + digit


def _canonical(number: str) -> str:
    """One spelling per value: "1,000" -> "1000", "3.50" -> "3.5", "050%" -> "50%"."""
    percent = number.endswith("%")
    digits = number.rstrip("%").replace(",", "")
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return number
    text = format(value.normalize(), "f") if value != value.to_integral_value() else str(int(value))
    return text + ("%" if percent else "")


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    surface: str
    key: str  # what is compared


def _arabic_numbers(folded: str) -> list[_Token]:
    return [
        _Token(m.start(), m.end(), m.group(0), _canonical(m.group(0).replace(" ", "")))
        for m in _ARABIC.finditer(folded)
    ]


def _chinese_numbers(folded: str, *, strict: bool) -> list[_Token]:
    tokens = []
    for match in _CN_RUN.finditer(folded):
        run = match["run"]
        before = folded[match.start() - 1: match.start()] if match.start() else ""
        after = folded[match.end(): match.end() + 1]
        measured = after in _MEASURE_WORDS
        if not (match["percent"] or before == "第"):
            if run in _NOT_NUMBERS or (run == "十" and after == "分"):
                continue
            # A lone 一 is a number only before a measure word (一只), and in the seed only before
            # one that makes a format constraint (一句话, 一段, 一个词, 一行): 一个/一下/一些 are
            # too often just grammar to flag.
            if run == "一" and not (after in _FORMAT_MEASURE_WORDS if strict else measured):
                continue
            if strict and len(run) == 1 and not measured:
                continue
        value = _cn_value(run)
        if value is None:
            continue
        key = f"{value}%" if match["percent"] else str(value)
        # Show the measure word with a lone numeral: "一句" says more to a reviewer than "一".
        end = match.end() + 1 if measured and len(run) == 1 else match.end()
        tokens.append(_Token(match.start(), end, folded[match.start():end], key))
    return tokens


def _numbers(folded: str, *, strict: bool, skip: list[tuple[int, int]]) -> list[_Token]:
    return _outside(_arabic_numbers(folded) + _chinese_numbers(folded, strict=strict), skip)


# ---------------------------------------------------------------------------------------------------
# Quotations, titles, Latin tokens, Chinese names
# ---------------------------------------------------------------------------------------------------

_QUOTES = re.compile(
    r"“(?P<a>[^”\n]{1,200})”|‘(?P<b>[^’\n]{1,200})’|「(?P<c>[^」\n]{1,200})」|『(?P<d>[^』\n]{1,200})』"
    r"|\"(?P<e>[^\"\n]{1,200})\"|(?<![A-Za-z])'(?P<f>[^'\n]{1,200})'(?![A-Za-z])"
)
_TITLE = re.compile(r"《(?P<title>[^》\n]{1,100})》")
_LATIN_WORD = r"[A-Za-z][A-Za-z0-9]*(?:['’&.-][A-Za-z0-9]+)*"
_LATIN = re.compile(_LATIN_WORD + r"(?: " + _LATIN_WORD + r")*")
_CAPITALISED = re.compile(r"[A-Z][a-z]+(?:['’.-][A-Za-z]+)*")
_CN_ORG = re.compile(r"(?P<stem>[\u4e00-\u9fff]{2})(?P<suffix>省|市(?![场民值面])|县|大学|学院|公司|集团|银行|医院|博物馆)")
_GENERIC_STEM_CHARS = frozenset("这那该个此哪什么的家在是了和与及或有各每本某其全外城都超门大小")


def _outside(tokens: list[_Token], spans: list[tuple[int, int]]) -> list[_Token]:
    """The tokens not inside any of the spans; spans are merged and searched by bisection, so a
    long rambling proposal costs n log n rather than tokens x spans."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    starts = [start for start, _ in merged]
    kept = []
    for token in tokens:
        index = bisect.bisect_right(starts, token.start) - 1
        if index < 0 or merged[index][1] < token.end:
            kept.append(token)
    return kept


def _quoted(folded: str) -> list[_Token]:
    tokens = []
    for match in _QUOTES.finditer(folded):
        content = next(group for group in match.groups() if group is not None)
        if content.strip():
            tokens.append(_Token(match.start(), match.end(), content, _squash(content)))
    return tokens


def _titles(folded: str) -> list[_Token]:
    return [_Token(m.start(), m.end(), m["title"], _squash(m["title"])) for m in _TITLE.finditer(folded)]


def _latin(folded: str, skip: list[tuple[int, int]]) -> list[tuple[_Token, str]]:
    """Latin tokens with their kind: capitalised words are entities, the rest Latin tokens."""
    tokens = [_Token(m.start(), m.end(), m.group(0), m.group(0).casefold()) for m in _LATIN.finditer(folded)]
    return [
        (token, ENTITY if all(_CAPITALISED.fullmatch(word) for word in token.surface.split(" ")) else LATIN)
        for token in _outside(tokens, skip)
    ]


def _chinese_names(folded: str, skip: list[tuple[int, int]]) -> list[_Token]:
    tokens = [
        _Token(m.start(), m.end(), m.group(0), m.group(0))
        for m in _CN_ORG.finditer(folded)
        if not set(m["stem"]) & _GENERIC_STEM_CHARS
    ]
    return _outside(tokens, skip)


def _has_latin(proposal_casefolded: str, key: str) -> bool:
    """The casefolded word or phrase is in the proposal as a whole word (GDP is not in GDPR)."""
    pattern = r"(?<![a-z0-9])" + re.escape(key).replace(r"\ ", r"\s+") + r"(?![a-z0-9])"
    return re.search(pattern, proposal_casefolded) is not None


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------


def _unique(tokens: list[_Token]) -> list[_Token]:
    """First occurrence of each surface form: a seed that repeats a token gets one flag for it."""
    seen: set[str] = set()
    return [t for t in tokens if not (t.surface in seen or seen.add(t.surface))]


def detect_drift(seed: str, proposal: str) -> list[Drift]:
    """What the proposal drops or changes from the seed: numbers, quotations, Latin-script tokens
    and named entities, in that order. An empty list means nothing was noticed."""
    seed_folded, proposal_folded = _fold(seed), _fold(proposal)
    proposal_squashed = _squash(proposal)
    proposal_casefolded = proposal_folded.casefold()
    drifts: list[Drift] = []

    quoted, titles = _quoted(seed_folded), _titles(seed_folded)
    protected = [(t.start, t.end) for t in quoted + titles]

    for token in _unique(quoted):
        if token.key not in proposal_squashed:
            drifts.append(Drift(QUOTED, token.surface, f"引号中的文字“{token.surface}”被改动或删除。"
                                f"/ Quoted text “{token.surface}” was changed or dropped."))
    for token in _unique(titles):
        if token.key not in proposal_squashed:
            drifts.append(Drift(ENTITY, token.surface, f"书名《{token.surface}》被改动或删除。"
                                f"/ Title 《{token.surface}》 was changed or dropped."))

    seed_latin = _latin(seed_folded, protected)
    latin_spans = [(t.start, t.end) for t, _ in seed_latin]
    # The seed's numbers are read strictly (only clear quantities), the proposal's leniently (any
    # numeral), so that neither "一下" in the seed nor "一只" for a seed "1" raises a false flag.
    proposal_latin = [(t.start, t.end) for t, _ in _latin(proposal_folded, [])]
    proposal_values = {t.key for t in _numbers(proposal_folded, strict=False, skip=proposal_latin)}
    seed_values = {t.key for t in _numbers(seed_folded, strict=False, skip=latin_spans)}
    # Numbers the proposal brought in: a missing seed number was probably changed into one of them.
    new = sorted({t.surface for t in _numbers(proposal_folded, strict=True, skip=proposal_latin)
                  if t.key not in seed_values})
    for token in _unique(_numbers(seed_folded, strict=True, skip=protected + latin_spans)):
        if token.key in proposal_values:
            continue
        if new:
            message = (f"数字 {token.surface} 被改动（改写中出现 {'、'.join(new)}）。"
                       f"/ Number {token.surface} was changed (the proposal has {', '.join(new)}).")
        else:
            message = f"数字 {token.surface} 被删除。/ Number {token.surface} was dropped."
        drifts.append(Drift(NUMBER, token.surface, message))

    seen_latin: set[str] = set()
    for token, kind in seed_latin:
        if token.surface in seen_latin:
            continue
        seen_latin.add(token.surface)
        if not _has_latin(proposal_casefolded, token.key):
            zh, en = ("专有名词", "Name") if kind == ENTITY else ("英文", "Latin-script token")
            drifts.append(Drift(kind, token.surface, f"{zh} {token.surface} 被改动或删除。"
                                f"/ {en} {token.surface} was changed or dropped."))

    for token in _unique(_chinese_names(seed_folded, protected)):
        # The name without its suffix is the same name: 北京市 -> 北京, 清华大学 -> 清华.
        if token.key[:2] not in proposal_squashed:
            drifts.append(Drift(ENTITY, token.surface, f"专有名词“{token.surface}”被改动或删除。"
                                f"/ Name “{token.surface}” was changed or dropped."))
    return drifts


def highlight(text: str, tokens: list[str]) -> list[tuple[str, bool]]:
    """Text cut into (segment, flagged) pieces, in order, where flagged pieces are occurrences of
    the tokens (Latin case-insensitively, full-width folded; a number or word is not matched inside
    a longer one). Joining the segments gives the text back; the page escapes each segment and
    wraps flagged ones in <mark>."""
    if not text:
        return []
    patterns = []
    for token in sorted({_fold(t).strip() for t in tokens if t and t.strip()}, key=len, reverse=True):
        pattern = re.escape(token)
        if re.match(r"[A-Za-z0-9]", token):
            pattern = r"(?<![A-Za-z0-9])" + pattern
        if re.search(r"[A-Za-z0-9]$", token):
            pattern += r"(?![A-Za-z0-9])"
        patterns.append(pattern)
    if not patterns:
        return [(text, False)]
    segments: list[tuple[str, bool]] = []
    position = 0
    for match in re.finditer("|".join(patterns), _fold(text), re.I):
        if match.start() == match.end():
            continue
        if match.start() > position:
            segments.append((text[position:match.start()], False))
        if segments and segments[-1][1] and match.start() == position:
            segments[-1] = (segments[-1][0] + text[match.start():match.end()], True)
        else:
            segments.append((text[match.start():match.end()], True))
        position = match.end()
    if position < len(text):
        segments.append((text[position:], False))
    return segments
