"""Reading what critics and rewriters reply: tolerant, but never inventing a score.

Pure Python (no Django), so the parser corpus runs without a database.

Critic replies
==============
``parse_critique`` tries, in order:

1. **Strict JSON** - the whole reply (stripped) is one JSON object with a rating key
   (``Rating``/``Score``/``评分``/``分数``/``打分``/``得分``, case-insensitive). A JSON integer 1-10
   gives status ``parsed``; key order does not matter (``{"Reason": ..., "Rating": 8}`` is valid
   JSON and is ``parsed``). A quoted (``"8"``) or whole decimal (``8.0``) value in an otherwise
   strict object gives ``recovered``. Anything else in the rating field (0, 11, -1, 7.5, "7-8",
   null) makes the reply ``unparsed`` at once: the critic answered in the agreed structure and
   its answer is not a score, so we do not go looking for another number elsewhere.
2. **Tolerant fallbacks** (status ``recovered``) collect *rating statements* from the reply,
   in two tiers:

   * tier 1, explicit: a rating field of any JSON object embedded in the reply (a fenced
     block, an object after some chatter, nested objects); a keyed statement such as
     ``"Rating": 8`` in broken JSON, ``Rating: 8/10``, ``**评分**：8``, ``【评分】：8``,
     ``评分为8分``, ``评分（满分10分）：8``, ``打分：8分``, ``Score: 8 out of 10``; and ``[[8]]``;
   * tier 2, loose: ``8/10``, ``8 out of 10``, ``给/打/评为 … 8分``, ``I'd give it an 8``, and
     a reply that starts with, or has a line consisting only of, ``8分``.

   Full-width digits, colons, slashes and brackets (``８``, ``：``, ``／``) are folded to ASCII
   before matching. A number is read with its sign and decimals, so ``-1`` and ``7.5`` are seen
   for what they are rather than as ``1`` and ``7``.

The ambiguity rule (exact)
--------------------------
Only the first tier that has any statement counts (a rating field or keyed statement outranks a
stray ``3/10`` in the reasoning). Every statement of that tier must name the same number (``8``,
``8.0``, ``"8"`` and ``８`` are the same number). If they do and the number is an integer 1-10 -
the critic restated its rating - the last statement is the rating. If two statements of that tier
name *different* numbers, in whatever forms (``评分：6`` ... ``最终评分：8``, two JSON objects,
a duplicated ``Rating`` key), the reply is ambiguous and ``unparsed``: we do not guess whether
the critic revised itself. An invalid number (0, 11, -1, 7.5, a range ``7-8``, a denominator
other than 10 as in ``80/100``) is a statement too, so it is never skipped in favour of a valid
one. No statement at all (prose only, empty reply) is ``unparsed``. Chinese-numeral ratings
(``评分：八分``) are not read.

In the strict path the same rule applies to the rating keys of the one object: ``{"Rating": 6,
"Rating": 8}`` (duplicated key) or ``{"Rating": 8, "评分": 7}`` is ``unparsed``.

The reason is the ``Reason``/``理由`` value when there is one (from the JSON object, or after
``Reason:``/``理由：`` up to the next rating statement), else the reply minus its explicit rating
statements, stripped; a loose statement inside a sentence (``我给这个回答打7分，因为……``) is left
in the prose. An unparsed reply keeps its whole stripped text as the reason, so a person sees
everything the critic said (both ratings, when they conflict).

Rewriter replies
================
``parse_rewrites`` accepts a JSON list of strings, a fenced JSON block, a JSON object holding a
list (``{"rewrites": [...]}``), a list with Chinese punctuation or quotes that JSON rejects, and
numbered (``1.`` ``1、`` ``1）`` ``(1)`` ``①`` ``第1条：``) or bulleted (``-`` ``*`` ``•``) lists,
one item per line; lines outside the list (an introduction, a closing remark) are ignored.
Anything else - typically the model answering the question - is an error with a bilingual message.
"""

from __future__ import annotations

import ast
import json
import re
import string
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# ---------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------

# Full-width ASCII (U+FF01..U+FF5E) -> ASCII, ideographic space -> space. One character for one
# character, so a match position in the folded text is the same position in the original: we match
# on the folded copy and cut reasons out of the original, keeping the critic's own punctuation.
_FOLD = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20}


def _fold(text: str) -> str:
    return text.translate(_FOLD)


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n?(.*?)```", re.S)

# ---------------------------------------------------------------------------------------------------
# Critic replies
# ---------------------------------------------------------------------------------------------------

PARSED = "parsed"
RECOVERED = "recovered"
UNPARSED = "unparsed"


@dataclass(frozen=True)
class CriticParse:
    rating: int | None
    reason: str
    status: str  # "parsed" | "recovered" | "unparsed"


_RATING_KEYS = frozenset(
    {"rating", "score", "final rating", "final score", "overall rating", "评分", "分数", "打分", "得分",
     "最终评分", "综合评分", "总评分", "总分", "评级"}
)
_REASON_KEYS = frozenset(
    {"reason", "reasons", "rationale", "explanation", "critique", "理由", "原因", "评分理由", "评价理由",
     "解释", "评价"}
)

_NUM = r"(?P<num>[+-]?\d+(?:\.\d+)?)(?!\d)"
# Between a key and its number: spaces, markdown bold, quotes, brackets, a colon, 为/是, is/of.
# One possessive run (Python 3.11+): a sequence of optional pieces here once made "Rating"
# followed by a few thousand spaces take a minute of regex backtracking.
_SEPARATOR = r"(?:[\s*_\"'“”‘’`\[\]【】:=]|为|是|\bis\b|\bof\b)*+"
# "分数" is left out on purpose: in prose it also means "fraction" ("分数为3/4"); it still counts
# as a key of a JSON object.
_KEYED = re.compile(
    r"(?<![A-Za-z])(?:final\s+rating|final\s+score|overall\s+rating|rating|score"
    r"|最终评分|综合评分|总评分|评分|打分|得分|总分|评级)(?![A-Za-z])"
    + r"(?:\s*[(（][^()（）\n]{0,12}[)）])?"  # "评分（满分10分）：8", "Rating (1-10): 8"
    + _SEPARATOR
    + _NUM
    + r"[\"'“”‘’*\]】]*(?:\s*/\s*(?P<den>\d+)|\s+out\s+of\s+(?P<den2>\d+))?\s*分?",
    re.I,
)
_DOUBLE_BRACKET = re.compile(r"\[\[\s*" + _NUM + r"\s*(?:/\s*(?P<den>\d+)\s*)?\]\]")
_LOOSE = [
    re.compile(r"(?<![\d.])" + _NUM + r"\s*/\s*(?P<den>10)(?!\d)"),
    re.compile(r"(?<![\d.])" + _NUM + r"\s+out\s+of\s+(?P<den>10)(?!\d)", re.I),
    re.compile(r"(?:给予|给出|给|打出|打|评为)[^\d\n。，,.；;！!？?]{0,8}?" + _NUM + r"\s*分(?!之)"),
    re.compile(r"\b(?:give|rate)\s+(?:it|this(?:\s+(?:answer|response))?)\s+(?:an?\s+|at\s+)?" + _NUM + r"\b", re.I),
    re.compile(r"\A[\s*#]*" + _NUM + r"\s*分(?!之)"),
    re.compile(r"^[ \t*#]*" + _NUM + r"\s*分[ \t*。.!！]*$", re.M),
]
# Right after a number: "7-8", "7~8", "7到8" is a range, not a score.
_RANGE_AFTER = re.compile(r"\s*(?:-|~|～|到|至)\s*\d")

_REASON_KEY = re.compile(
    r"(?<![A-Za-z])(?:reasons?|rationale|explanation|critique|评分理由|评价理由|理由|原因|解释)"
    r"[\"'“”‘’*\]】]*\s*[:=]\s*",
    re.I,
)


@dataclass(frozen=True)
class _Statement:
    start: int
    end: int
    value: Decimal | None  # None: a non-number in a rating field (null, "good", ...)
    valid: bool
    strict: bool = False  # a JSON integer in a JSON object
    reason: str | None = None  # the Reason of the JSON object it came from, if any


def _number(raw: str, *, denominator: str | None = None, range_follows: bool = False) -> tuple[Decimal | None, bool]:
    """The value of a rating number and whether it is a usable score (an integer 1-10)."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None, False
    if not value.is_finite():  # NaN and Infinity are valid JSON for Python, and no score
        return None, False
    valid = (
        not range_follows
        and (denominator is None or denominator == "10")
        and value == value.to_integral_value()
        and 1 <= value <= 10
    )
    return value, valid


def _value_statement(value: object, start: int, end: int, reason: str | None) -> _Statement:
    """A statement from the value of a rating field in a JSON object."""
    if isinstance(value, bool) or value is None:
        return _Statement(start, end, None, False, reason=reason)
    if isinstance(value, int):
        number, valid = _number(str(value))
        return _Statement(start, end, number, valid, strict=True, reason=reason)
    if isinstance(value, float):
        number, valid = _number(repr(value))
        return _Statement(start, end, number, valid, reason=reason)
    if isinstance(value, str):
        # "8", "8分", "8/10", "８"; anything else ("7-8", "good") is a rating that is not a score.
        match = re.fullmatch(r"\s*" + _NUM + r"(?:\s*/\s*(?P<den>\d+))?\s*分?\s*", _fold(value))
        if match:
            number, valid = _number(match["num"], denominator=match["den"])
            return _Statement(start, end, number, valid, reason=reason)
    return _Statement(start, end, None, False, reason=reason)


class _Pairs(dict):
    """A JSON object that remembers all its key/value pairs, so a duplicated "Rating" key with two
    values is seen (a plain dict would silently keep the last one)."""

    pairs: list[tuple[str, object]]


def _pairs_hook(pairs: list[tuple[str, object]]) -> _Pairs:
    obj = _Pairs(pairs)
    obj.pairs = pairs
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook)


def _reason_of(obj: _Pairs) -> str | None:
    for key, value in obj.pairs:
        if key.strip().casefold() in _REASON_KEYS:
            if isinstance(value, str):
                return value.strip()
            if isinstance(value, list):
                return "\n".join(str(item) for item in value).strip()
            return json.dumps(value, ensure_ascii=False)
    return None


def _object_statements(obj: _Pairs, start: int, end: int) -> list[_Statement]:
    reason = _reason_of(obj)
    return [
        _value_statement(value, start, end, reason)
        for key, value in obj.pairs
        if key.strip().casefold() in _RATING_KEYS
    ]


_MAX_JSON_ATTEMPTS = 500


def _embedded_objects(text: str) -> list[tuple[int, int, _Pairs]]:
    """JSON objects anywhere in the reply that have a rating key (outermost first; an object
    without one is looked into, for {"evaluation": {"Rating": 8}})."""
    found: list[tuple[int, int, _Pairs]] = []
    position = text.find("{")
    attempts = 0
    # A bound on decoding attempts: each may descend as deep as the nesting goes, and a reply
    # with hundreds of braces is not a critique in any of the accepted forms anyway.
    while position != -1 and attempts < _MAX_JSON_ATTEMPTS:
        attempts += 1
        try:
            obj, end = _DECODER.raw_decode(text, position)
        except (ValueError, RecursionError):  # deeply nested brackets exhaust the decoder
            obj, end = None, position + 1
        if isinstance(obj, _Pairs) and _object_statements(obj, position, end):
            found.append((position, end, obj))
            position = text.find("{", end)
        else:
            position = text.find("{", position + 1)
    return found


def _wrapped_start(text: str, start: int) -> int:
    """Where a keyed statement starts once the markup opening its key is counted in ("**评分",
    "【评分", "\"Rating"). Done here rather than in the regex: a leading run of such characters
    there would be re-scanned from every position of a long run of "*"."""
    while start > 0 and text[start - 1] in "*[【\"'“‘":
        start -= 1
    return start


def _keyed_statements(folded: str) -> list[_Statement]:
    statements = []
    for match in _KEYED.finditer(folded):
        range_follows = bool(_RANGE_AFTER.match(folded, match.end("num")))
        denominator = match["den"] or match["den2"]
        number, valid = _number(match["num"], denominator=denominator, range_follows=range_follows)
        statements.append(_Statement(_wrapped_start(folded, match.start()), match.end(), number, valid))
    for match in _DOUBLE_BRACKET.finditer(folded):
        number, valid = _number(match["num"], denominator=match["den"])
        statements.append(_Statement(match.start(), match.end(), number, valid))
    return statements


def _loose_statements(folded: str) -> list[_Statement]:
    statements: list[_Statement] = []
    for pattern in _LOOSE:
        for match in pattern.finditer(folded):
            if any(s.start < match.end() and match.start() < s.end for s in statements):
                continue  # the same words matched by another loose form
            range_follows = bool(_RANGE_AFTER.match(folded, match.end("num")))
            den = match.groupdict().get("den")
            number, valid = _number(match["num"], denominator=den, range_follows=range_follows)
            statements.append(_Statement(match.start(), match.end(), number, valid))
    return statements


def _decide(statements: list[_Statement]) -> _Statement | None:
    """The ambiguity rule: all statements must name one number, and it must be a score."""
    if not statements:
        return None
    values = {s.value for s in statements}
    if len(values) != 1 or not all(s.valid for s in statements):
        return None
    return max(statements, key=lambda s: s.start)  # the last one: restatements agree anyway


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


_CLEAN_EDGES = " \t\r\n,，;；:：、{}[]【】`*\"'"


def _clean(fragment: str) -> str:
    fragment = re.sub(r"```[A-Za-z0-9_-]*", "", fragment)
    previous = None
    while previous != fragment:
        previous = fragment
        fragment = fragment.strip(_CLEAN_EDGES)
    return fragment


def _keyed_reason(text: str, folded: str, statements: list[_Statement]) -> str | None:
    """The value after "Reason:"/"理由：" in the reply, up to the next rating statement."""
    match = _REASON_KEY.search(folded)
    if not match:
        return None
    start = match.end()
    end = min((s.start for s in statements if s.start >= start), default=len(text))
    if start < end and text[start] in "\"'":
        # A quoted value in JSON-ish text ends at the last quote that closes a value, so inner
        # unescaped quotes and chatter after the object are both left out.
        closers = list(re.finditer(r"[\"']\s*(?:[,}]|$)", text[start + 1:end]))
        if closers:
            end = start + 1 + closers[-1].start()
    reason = _clean(text[start:end])
    return reason or None


def _opens_line(text: str, position: int) -> bool:
    line_start = text.rfind("\n", 0, position) + 1
    return not text[line_start:position].strip(" \t*#")


def _reason_without(text: str, spans: list[tuple[int, int]]) -> str:
    """The reply minus the rating statements."""
    kept, position = [], 0
    for start, end in sorted(spans):
        if start > position:
            kept.append(text[position:start])
        position = max(position, end)  # spans may overlap: "Rating: [[8]]" is two statements
    kept.append(text[position:])
    parts = [_clean(part).lstrip("。.!！?？") for part in kept]
    return "\n".join(part.strip() for part in parts if part.strip())


def parse_critique(text: str) -> CriticParse:
    """Read a critic's reply: rating (an integer 1-10, or None), reason and how it was found.

    See the module docstring for the forms accepted and the exact rule for conflicting ratings."""
    stripped = (text or "").strip()
    if not stripped:
        return CriticParse(None, "", UNPARSED)

    # 1. Strict: the whole reply is one JSON object with a rating key.
    try:
        whole = _DECODER.decode(stripped)
    except (ValueError, RecursionError):  # deeply nested brackets exhaust the decoder
        whole = None
    if isinstance(whole, _Pairs):
        statements = _object_statements(whole, 0, len(stripped))
        if statements:
            chosen = _decide(statements)
            reason = _reason_of(whole)
            if chosen is None or chosen.value is None:
                return CriticParse(None, stripped, UNPARSED)
            status = PARSED if all(s.strict for s in statements) else RECOVERED
            return CriticParse(int(chosen.value), reason or "", status)

    # 2. Fallbacks over the reply, JSON objects first (their values are read by the JSON decoder,
    # so the regexes must not read them again: a "评分：6" inside a Reason string is not a rating).
    objects = _embedded_objects(text)
    tier1 = [s for start, end, obj in objects for s in _object_statements(obj, start, end)]
    folded = _fold(_mask(text, [(start, end) for start, end, _ in objects]))
    tier1 += _keyed_statements(folded)
    statements = tier1 or _loose_statements(folded)
    chosen = _decide(statements)

    # The Reason of a JSON object the rating came from, then a "Reason:"/"理由：" value, then the
    # reply minus its rating statements.
    reason = next((s.reason for s in reversed(statements) if s.reason is not None), None)
    if reason is None:
        reason = _keyed_reason(text, folded, statements)
    if chosen is None or chosen.value is None:
        return CriticParse(None, stripped, UNPARSED)
    if reason is None:
        # An explicit statement ("评分：8", "[[8]]") is cut out; a loose one inside a sentence
        # ("我给这个回答打8分，因为…") is part of the critic's prose and stays, unless it opens
        # its line ("8分。回答准确…").
        spans = [(s.start, s.end) for s in statements if statements is tier1 or _opens_line(folded, s.start)]
        reason = _reason_without(text, spans)
    return CriticParse(int(chosen.value), reason, RECOVERED)


# ---------------------------------------------------------------------------------------------------
# Rewriter replies
# ---------------------------------------------------------------------------------------------------

ERROR_EMPTY = "回复为空。/ The reply is empty."
ERROR_EMPTY_LIST = "改写列表为空。/ The list of rewrites is empty."
ERROR_NO_LIST = (
    "回复中没有找到改写列表（JSON 列表、编号列表或项目符号列表），模型可能直接回答了问题。"
    " / No list of rewrites found (a JSON list, a numbered or a bulleted list); the model may have"
    " answered the question instead."
)


@dataclass
class RewriteParse:
    rewrites: list[str]
    error: str  # "" when rewrites were found


_NUMBERED = re.compile(
    r"^\s*(?:\*\*)?(?:\d{1,2}\s*[.、)）:：](?!\d)|[(（]\s*\d{1,2}\s*[)）]|[①-⑳]|第\s*[\d一二三四五六七八九十]+\s*(?:条|个|种)?\s*[:：、.])"
    r"(?:\*\*)?(?P<item>.+)"
)
_BULLETED = re.compile(r"^\s*(?:[-*+]\s+|[•·▪●○◦‣]\s*)(?P<item>.+)")
# "改写1：", "Rewrite 2:", "**版本三**：" before the text of an item.
_ITEM_LABEL = re.compile(
    r"^(?:\*\*)?(?:改写|版本|问法|说法|rewrite|version|variant)\s*[\d一二三四五六七八九十]*\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?",
    re.I,
)
_QUOTE_PAIRS = {"「": "」", "『": "』", "“": "”", "\"": "\"", "'": "'", "‘": "’"}
_QUOTED_ITEMS = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|“([^”]*)”|「([^」]*)」|『([^』]*)』")


def _clean_item(item: str) -> str:
    item = item.strip()
    item = _ITEM_LABEL.sub("", item).strip()
    # A trailing list comma ("...?",) belongs to the list, not the item.
    item = re.sub(r"[,，;；]\s*$", "", item).strip()
    if item.startswith("**") and item.endswith("**") and len(item) > 4:
        item = item[2:-2].strip()
    while len(item) >= 2 and _QUOTE_PAIRS.get(item[0]) == item[-1]:
        item = item[1:-1].strip()
    return item


def _strings_from_json(value: object) -> list[str] | None:
    """The rewrites in a decoded JSON value: a list of strings (or of one-string objects), or such a
    list held by an object, one or two levels down ({"rewrites": [...]}, {"result": {"rewrites":
    [...]}}). None when it holds no list at all."""
    if isinstance(value, list):
        items: list[str] = []
        for element in value:
            if isinstance(element, str):
                items.append(element)
            elif isinstance(element, dict):
                texts = [v for v in element.values() if isinstance(v, str)]
                if len(texts) == 1:
                    items.append(texts[0])
        return items
    if isinstance(value, dict):
        # Looked into level by level, not recursively: a hostile reply can nest very deeply.
        for holder in [value] + [v for v in value.values() if isinstance(v, dict)]:
            for element in holder.values():
                if isinstance(element, list) and (items := _strings_from_json(element)):
                    return items
    return None


def _load_structure(text: str) -> object | None:
    """A JSON (or Python-literal: single quotes, trailing commas) list or object: the whole text,
    or the first bracketed value in it that reads as one (after an introduction, say)."""
    stripped = text.strip()
    candidates = [stripped] + [stripped[m.start():] for m in re.finditer(r"[\[{]", stripped)][:50]
    for candidate in candidates:
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate)
        except (ValueError, RecursionError):  # deeply nested brackets exhaust the decoder
            continue
        if isinstance(value, list | dict):
            return value
    for candidate in candidates:
        literal = _balanced(candidate)
        if not literal:
            continue
        try:
            # literal_eval reads literals only; it never runs code.
            value = ast.literal_eval(literal)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, list | dict):
            return value
    return None


def _balanced(text: str) -> str:
    """The leading bracketed span of text ("[...]" or "{...}"), ignoring brackets in quotes."""
    closer = {"[": "]", "{": "}"}.get(text[:1])
    if closer is None:
        return ""
    depth, quote = 0, ""
    for index, char in enumerate(text):
        if quote:
            if char == "\\":
                continue
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == text[0]:
            depth += 1
        elif char == closer:
            depth -= 1
            if depth == 0:
                return text[: index + 1]
    return ""


def _bracketed_quoted_items(text: str) -> list[str]:
    """["…"，"…"] or [“…”, “…”]: a list JSON rejects because of Chinese punctuation or quotes."""
    match = re.search(r"^\s*\[(.*)\]\s*$", text, re.S | re.M)
    if not match:
        return []
    items = []
    for quoted in _QUOTED_ITEMS.finditer(match.group(1)):
        item = next(group for group in quoted.groups() if group is not None)
        if quoted.group(1) is not None:
            try:
                item = json.loads(f'"{item}"')
            except ValueError:  # a stray backslash: keep the text as written
                pass
        items.append(item)
    return items


def _listed_items(text: str) -> list[str]:
    numbered, bulleted = [], []
    for line in text.splitlines():
        if match := _NUMBERED.match(line):
            numbered.append(match["item"])
        elif match := _BULLETED.match(line):
            bulleted.append(match["item"])
    return numbered or bulleted


def parse_rewrites(text: str) -> RewriteParse:
    """Read a rewriter's reply: the proposed rewrites in order, or an error saying why not."""
    if not text or not text.strip():
        return RewriteParse([], ERROR_EMPTY)

    sources: list[str] = [body for _, body in _FENCE.findall(text)] + [text]
    found: list[str] | None = None
    for source in sources:
        value = _load_structure(source)
        if value is not None:
            found = _strings_from_json(value)
        if not found:
            found = _bracketed_quoted_items(source) or None
        if found:
            break
    if not found:
        # Strip fences so "```\n1. …\n```" reads like the list it is.
        found = _listed_items(_FENCE.sub(lambda m: m.group(2), text))

    rewrites = [item for item in (_clean_item(raw) for raw in found) if item]
    if rewrites:
        return RewriteParse(rewrites, "")
    if found or re.search(r"\[\s*\]", text):
        return RewriteParse([], ERROR_EMPTY_LIST)
    return RewriteParse([], ERROR_NO_LIST)


# ---------------------------------------------------------------------------------------------------
# Deduplication
# ---------------------------------------------------------------------------------------------------

_ASCII_PUNCTUATION = frozenset(string.punctuation)


def normalise_for_dedup(text: str) -> str:
    """Text reduced to what makes two phrasings different words: NFKC (full-width letters and
    digits become ASCII), casefolded, without whitespace or punctuation (ASCII, CJK and full-width)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(
        char for char in text
        if not char.isspace() and char not in _ASCII_PUNCTUATION and not unicodedata.category(char).startswith("P")
    )


def dedupe_rewrites(seed: str, existing: list[str], proposals: list[str]) -> tuple[list[str], int]:
    """Proposals worth reviewing, in order, and how many were dropped: those identical after
    normalisation to the seed, an existing variant or an earlier proposal, and those with no
    words at all (empty or punctuation only)."""
    seen = {normalise_for_dedup(seed)} | {normalise_for_dedup(text) for text in existing}
    kept: list[str] = []
    dropped = 0
    for proposal in proposals:
        key = normalise_for_dedup(proposal)
        if not key or key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(proposal)
    return kept, dropped
