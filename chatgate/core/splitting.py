"""Split long text into parts under a UTF-8 byte limit, at the most natural boundary available.

WeChat drops (rather than truncates) a text message over ~2048 UTF-8 bytes, so every answer is
cut into parts that each fit. The split is lossless: ``"".join(parts) == text``.

Boundary choice, best first:

1. paragraph break (a whitespace run holding two or more line breaks),
2. line break,
3. sentence end: 。！？；… always; ASCII ``. ! ? ;`` when followed by whitespace or by a
   non-ASCII character (so ``3.14``, ``Node.js`` and ``a?b=1`` in URLs are not ends); closing
   quotes and brackets stay with their sentence, and a ``1.`` list marker is not a sentence end,
4. clause mark: ，、： always; ASCII ``,`` and ``:`` on the same terms as ASCII sentence ends,
5. any other whitespace,
6. a grapheme-ish boundary (see ``_grapheme_break_ok``), and last
7. a code-point boundary, when one grapheme is larger than the whole part.

Whitespace at a boundary ends the part before it, so a part after the first starts with
visible text, and a suffix such as 「回复1继续」 lands on its own line after a paragraph. The
exception: when the limit falls just before or inside a run of line breaks, the cut goes there
and the rest of the run opens the next part, rather than giving up the paragraph boundary.

Greedy with a floor: a boundary of kinds 1–5 is first looked for in the upper half of the part
(at least half the byte budget used), best kind first and furthest within a kind; only when the
upper half has none is the lower half searched. Without the floor one early paragraph break
would spend a whole message on a few words, and WeChat customer-service messages are scarce (5
per 48 h).
"""

from __future__ import annotations

import unicodedata

# Boundary kinds, best first; they index the candidate lists in _choose_end.
_PARAGRAPH, _LINE, _SENTENCE, _CLAUSE, _SPACE = range(5)
_KINDS = 5

# A code point needs up to 4 bytes, so a smaller budget could not always make progress.
_MIN_BUDGET = 4

_WIDE_SENTENCE_ENDS = frozenset("。！？；…")
_ASCII_SENTENCE_ENDS = frozenset(".!?;")
_WIDE_CLAUSE_MARKS = frozenset("，、：")
_ASCII_CLAUSE_MARKS = frozenset(",:")
_CLOSERS = frozenset("”’」』）》〉】〕］｝)]}\"'")
_PUNCTUATION = (
    _WIDE_SENTENCE_ENDS | _ASCII_SENTENCE_ENDS | _WIDE_CLAUSE_MARKS | _ASCII_CLAUSE_MARKS | _CLOSERS
)

_ZWJ = "\u200d"
_RUN_LOOKAHEAD = 8


def utf8_len(text: str) -> int:
    """Bytes ``text`` takes in UTF-8 (a lone surrogate counts as the 3 bytes it would take)."""
    return len(text.encode("utf-8", "surrogatepass"))


def split_text(text: str, max_bytes: int) -> list[str]:
    """Cut ``text`` into non-empty parts of at most ``max_bytes`` UTF-8 bytes each.

    ``"".join(parts) == text``; an empty text gives no parts. Raises ``ValueError`` when
    ``max_bytes`` is below 4 (the size of one code point).
    """
    _check_budget(max_bytes)
    parts: list[str] = []
    offset = 0
    while offset < len(text):
        part, offset = take_part(text, offset, max_bytes)
        parts.append(part)
    return parts


def take_part(text: str, start: int, max_bytes: int, suffix: str = "") -> tuple[str, int]:
    """The part of ``text`` that begins at ``start``, and the offset just after it.

    When the rest of the text fits in ``max_bytes`` it is returned whole (no suffix needed).
    Otherwise the part is chosen so that ``part + suffix`` fits in ``max_bytes``, at the same
    boundaries ``split_text`` uses (with ``suffix=""`` the two agree exactly). At the end of the
    text the answer is ``("", len(text))``.
    """
    if not 0 <= start <= len(text):
        raise ValueError(f"start {start} is outside the text (length {len(text)})")
    budget = max_bytes - utf8_len(suffix)
    _check_budget(budget)
    # Each character takes at least one byte, so the length check spares encoding a long rest.
    if len(text) - start <= max_bytes and utf8_len(text[start:]) <= max_bytes:
        return text[start:], len(text)
    end = _choose_end(text, start, budget)
    return text[start:end], end


def _check_budget(budget: int) -> None:
    if budget < _MIN_BUDGET:
        raise ValueError(
            f"a part needs room for at least {_MIN_BUDGET} bytes of text, got {budget}"
        )


def _char_len(char: str) -> int:
    code = ord(char)
    if code < 0x80:
        return 1
    if code < 0x800:
        return 2
    if code < 0x10000:
        return 3
    return 4


def _choose_end(text: str, start: int, budget: int) -> int:
    """Where a part starting at ``start`` should end; the rest is known not to fit."""
    used = 0
    limit = start
    floor: int | None = None
    while limit < len(text):
        size = _char_len(text[limit])
        if used + size > budget:
            break
        used += size
        limit += 1
        if floor is None and 2 * used >= budget:
            floor = limit
    if floor is None:
        floor = limit

    in_upper: list[int | None] = [None] * _KINDS
    anywhere: list[int | None] = [None] * _KINDS
    grapheme: int | None = None
    # Regional indicators pair up into flags counted from the part's start (itself cut between
    # pairs); the running count keeps a long run of flags linear.
    indicators = 0
    for pos in range(start + 1, limit + 1):
        indicators = indicators + 1 if _is_regional_indicator(text[pos - 1]) else 0
        if not _grapheme_break_ok(text, pos, indicators):
            continue
        grapheme = pos
        rank = _boundary_rank(text, start, pos, limit)
        if rank is not None:
            anywhere[rank] = pos
            if pos >= floor:
                in_upper[rank] = pos

    for candidates in (in_upper, anywhere):
        for found in candidates:
            if found is not None:
                return found
    return grapheme if grapheme is not None else limit


def _boundary_rank(text: str, start: int, pos: int, limit: int) -> int | None:
    """The kind of boundary between ``text[pos - 1]`` and ``text[pos]`` (``pos < len(text)``)."""
    prev, cur = text[pos - 1], text[pos]
    run_end = pos
    if cur.isspace():
        if pos != limit:
            return None  # the end of the whitespace run is the better boundary
        # The limit falls before or inside a whitespace run. A run with line breaks is worth
        # cutting there (the rest of it opens the next part), judged by a short look at the
        # whole run so that a blank line cut in two still counts as a paragraph break; for
        # plain spaces an earlier boundary reads better than a part opening with a space.
        while run_end < min(len(text), pos + _RUN_LOOKAHEAD) and text[run_end].isspace():
            run_end += 1
        if not _line_breaks(text[pos - 1 : run_end]):
            return None
    if prev.isspace() or run_end > pos:
        run_start = pos
        while run_start > start and text[run_start - 1].isspace():
            run_start -= 1
        if run_start == start:
            return None  # the part would hold nothing but whitespace
        return _whitespace_rank(text, start, run_start, run_end)
    if cur in _PUNCTUATION:
        return None  # keep runs like "？！" or "。」" together
    return _mark_rank(text, start, pos - 1, wide_only=cur.isascii())


def _whitespace_rank(text: str, start: int, run_start: int, run_end: int) -> int:
    breaks = _line_breaks(text[run_start:run_end])
    if breaks >= 2:
        return _PARAGRAPH
    if breaks == 1:
        return _LINE
    rank = _mark_rank(text, start, run_start - 1, wide_only=False)
    return _SPACE if rank is None else rank


def _mark_rank(text: str, start: int, last: int, *, wide_only: bool) -> int | None:
    """Whether ``text[last]`` (after skipping closers) ends a sentence or a clause.

    ``wide_only`` is set when ASCII text follows directly: an ASCII mark there is part of a
    token (``3.14``, ``example.com``, ``a,b``), not the end of a sentence.
    """
    while last > start and text[last] in _CLOSERS:
        last -= 1
    mark = text[last]
    if mark in _WIDE_SENTENCE_ENDS:
        return _SENTENCE
    if mark in _WIDE_CLAUSE_MARKS:
        return _CLAUSE
    if wide_only:
        return None
    if mark in _ASCII_SENTENCE_ENDS:
        return None if mark == "." and _is_list_marker(text, last) else _SENTENCE
    if mark in _ASCII_CLAUSE_MARKS:
        return _CLAUSE
    return None


def _is_list_marker(text: str, dot: int) -> bool:
    """Whether the ``.`` at ``dot`` ends a ``12.`` list number at the start of a line."""
    first = dot
    while first > 0 and text[first - 1].isdigit():
        first -= 1
    if first == dot:
        return False
    before = text[first - 1] if first > 0 else "\n"
    return before in "\n\r"


def _line_breaks(run: str) -> int:
    # splitlines knows every line separator, and treats "\r\n" as one.
    return sum(1 for line in run.splitlines(keepends=True) if line.splitlines() != [line])


def _grapheme_break_ok(text: str, pos: int, indicators: int) -> bool:
    """A cheap stand-in for Unicode grapheme segmentation (UAX #29); ``0 < pos``.

    ``indicators`` is how many regional indicators end just before ``pos``.

    Keeps together: CR LF; a base and its combining marks (including spacing marks and
    enclosing keycaps); ZWJ sequences; variation selectors, emoji skin-tone modifiers and tag
    characters with what they modify; flag pairs of regional indicators; Hangul jamo vowels and
    finals with what precedes them; and UTF-16 surrogate pairs left in a ``str``. Rarer rules
    (prepended marks, Indic conjuncts) are not modelled; a miss costs a slightly odd cut, never
    a lost or invalid character.
    """
    if pos >= len(text):
        return True
    prev, cur = text[pos - 1], text[pos]
    if prev == "\r" and cur == "\n":
        return False
    if cur == _ZWJ or prev == _ZWJ:
        return False
    code = ord(cur)
    if (
        0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
        or 0x1160 <= code <= 0x11FF  # Hangul jamo vowels and finals
        or (0xDC00 <= code <= 0xDFFF and 0xD800 <= ord(prev) <= 0xDBFF)
    ):
        return False
    if unicodedata.category(cur) in ("Mn", "Mc", "Me"):
        return False
    return not (_is_regional_indicator(cur) and indicators % 2 == 1)


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
