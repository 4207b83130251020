"""Moderation: a blocklist refuses questions with a blocked term and masks blocked terms in answers.

The blocklist file has one term per line; blank lines and lines starting with ``#`` are
skipped. Matching ignores case and full/half width (「ＡＢＣ」 is 「abc」). A question containing
a term is refused before the model is called (``QuestionModeration``, an outer middleware). In
answers every occurrence is replaced by ``*`` of the same length, while the text streams
(``StreamMasker``), so neither a reply, a 「1」 part nor the answer page ever shows it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from chatgate.core.decisions import Ask, Handler, HandlerResult, Reply
from chatgate.core.messages import Inbound
from chatgate.errors import ConfigError

log = logging.getLogger(__name__)

MASK = "*"


def _fold_char(char: str) -> str:
    folded = unicodedata.normalize("NFKC", char).casefold()
    if len(folded) == 1:
        return folded
    lower = char.lower()
    return lower if len(lower) == 1 else char


def aligned_fold(text: str) -> str:
    """``text`` case-folded and width-normalised character by character: same length, so a
    match's offsets are also the offsets in ``text``."""
    return "".join(_fold_char(char) for char in text)


class Blocklist:
    """The blocked terms, compiled for searching."""

    def __init__(self, terms: Iterable[str]) -> None:
        folded = {aligned_fold(term.strip()) for term in terms}
        folded.discard("")
        # Longest first: at one position the longest term wins, as in the whole-text scan.
        ordered = sorted(folded, key=lambda t: (-len(t), t))
        self.terms: tuple[str, ...] = tuple(ordered)
        self.longest = len(ordered[0]) if ordered else 0
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def blocks(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(aligned_fold(text)) is not None

    def mask(self, text: str) -> str:
        return self.scan(text, len(text))[0]

    def scan(self, text: str, limit: int) -> tuple[str, int]:
        """Mask every match that starts before ``limit``: (masked text up to ``cut``, ``cut``).

        ``cut`` is ``limit``, or the end of a match running past it.
        """
        if self._pattern is None:
            cut = max(0, limit)
            return text[:cut], cut
        out: list[str] = []
        pos = 0
        for match in self._pattern.finditer(aligned_fold(text)):
            if match.start() >= limit:
                break
            out.append(text[pos : match.start()])
            out.append(MASK * (match.end() - match.start()))
            pos = match.end()
        cut = max(pos, limit, 0)
        out.append(text[pos:cut])
        return "".join(out), cut

    def masker(self) -> StreamMasker:
        return StreamMasker(self)


class StreamMasker:
    """Masks a streamed text chunk by chunk, with the same result as masking it whole.

    It holds back the last ``longest - 1`` characters, so a term split across chunks is
    still seen whole: every match starting before the held tail fits in what has arrived.
    """

    def __init__(self, blocklist: Blocklist) -> None:
        self._blocklist = blocklist
        self._pending = ""

    def feed(self, chunk: str) -> str:
        """Add ``chunk``; return the text that is final now (possibly empty)."""
        self._pending += chunk
        return self._drain(len(self._pending) - max(0, self._blocklist.longest - 1))

    def flush(self) -> str:
        """The rest: call once the stream has ended (or failed)."""
        return self._drain(len(self._pending))

    def _drain(self, limit: int) -> str:
        shown, cut = self._blocklist.scan(self._pending, limit)
        self._pending = self._pending[cut:]
        return shown


class QuestionModeration:
    """Outer middleware: a question for the model with a blocked term gets ``refusal`` instead."""

    def __init__(self, blocklist: Blocklist, refusal: str) -> None:
        self._blocklist = blocklist
        self._refusal = refusal

    async def __call__(self, handler: Handler, inbound: Inbound) -> HandlerResult:
        result = await handler(inbound)
        if isinstance(result, Ask) and self._blocklist.blocks(result.question):
            log.info("message %s refused: the question has a blocked term", inbound.dedup_key)
            return Reply(self._refusal)
        return result


def load_blocklist(path: str | Path) -> Blocklist:
    """Read a blocklist file; ``ConfigError`` if it cannot be read."""
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read blocklist file {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"blocklist file {source} is not UTF-8") from None
    terms = [line.strip() for line in lines]
    return Blocklist(t for t in terms if t and not t.startswith("#"))
