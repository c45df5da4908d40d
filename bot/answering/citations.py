"""The citation toolkit both answerers share: which sentences of a chunk may be quoted, `[n]` markers, and
turning quotes into an `Answer` whose every marker has a citation and every citation a marker.

Everything here works on offsets into the document text, so a citation's quote is always `text[start:end]`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.text import is_attribution, is_heading_line, sentence_spans
from bot.types import NO_ANSWER, Answer, Chunk, Citation, ScoredChunk, Support

BULLET_CHARS = "-•*✓–—·> \t"


def quotable_sentences(chunk: Chunk) -> list[tuple[int, int, bool]]:
    """The chunk's sentences worth quoting, as (start, end, right under a heading) offsets into `chunk.text`.

    Bullet marks are trimmed off; headings (marked up, or plain lines that read as one, such as a document's
    opening "Key Facts"), the title line and source attributions are left out (they are labels, not statements).
    """
    heading = chunk.heading.rsplit(" > ", 1)[-1]
    sentences = []
    after_heading = False
    for start, end in sentence_spans(chunk.text):
        while start < end and chunk.text[start] in BULLET_CHARS:
            start += 1
        quote = chunk.text[start:end]
        if is_attribution(quote):
            continue
        if not quote or quote.startswith("#") or quote in (heading, chunk.title):
            after_heading = bool(heading) and (quote.startswith("#") or quote == heading)
            continue
        if is_heading_line(chunk.text, start, end):
            after_heading = True
            continue
        sentences.append((start, end, after_heading))
        after_heading = False
    return sentences


def citation(n: int, hit: ScoredChunk, start: int, end: int, quote: str, context: str | None = None) -> Citation:
    """Citation `n` of `quote`, which is `document_text[start:end]` of the hit's document (`context`: the heading
    it only makes sense under)."""
    return Citation(
        n=n,
        source=hit.source,
        title=hit.chunk.title,
        start=start,
        end=end,
        quote=quote,
        score=hit.similarity,
        page=hit.chunk.page,
        doc_id=hit.chunk.doc_id,
        url=hit.url,
        published=hit.published,
        context=context,
    )


def with_markers(sentence: str, numbers: Sequence[int]) -> str:
    """ "... summit." + [1, 2] -> "... summit [1][2]." (the markers sit inside the sentence they support)."""
    markers = "".join(f"[{n}]" for n in numbers)
    stripped = sentence.rstrip()
    if stripped and stripped[-1] in ".!?" and not stripped.endswith(".."):
        return f"{stripped[:-1]} {markers}{stripped[-1]}"
    return f"{stripped} {markers}"


def compose(
    question: str,
    quotes: Sequence[tuple[ScoredChunk, int, int, str]],
    support: Support = "answered",
    confidence: float = 0.0,
    lead: str = "",
) -> Answer:
    """An answer made of the quotes themselves, each marked with its citation number, after an optional lead."""
    sentences = [lead] if lead else []
    citations = []
    for n, (hit, start, end, quote) in enumerate(quotes, start=1):
        citations.append(citation(n, hit, start, end, quote))
        sentences.append(with_markers(quote, [n]))
    return Answer(
        question=question,
        text=" ".join(sentences),
        citations=tuple(citations),
        support=support,
        confidence=confidence,
    )


def decline(question: str, confidence: float = 0.0, reason: str = "") -> Answer:
    """Nothing relevant: "The corpus doesn't say.", with what is missing when known."""
    text = NO_ANSWER if not reason else f"{NO_ANSWER[:-1]} ({reason})."
    return Answer(question=question, text=text, citations=(), support="none", confidence=confidence)
