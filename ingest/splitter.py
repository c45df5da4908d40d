"""Splitting that follows the document's structure: sections (headings), then sentences packed into chunks.

Chunks never cross a heading or a PDF page, leave out front matter, and are sized in the model's own word pieces
so that none is silently truncated (all-MiniLM-L6-v2 reads 256 word pieces, then stops). A sentence longer than
that on its own is cut at word boundaries. Every chunk keeps its offsets:
`document.text[chunk.start:chunk.end] == chunk.text`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from bot.text import Section, sections, sentence_spans
from bot.types import Chunk, embedding_text
from ingest.loaders import FRONT_MATTER, Document

__all__ = ["Splitter", "content_hash", "embedding_text"]

TokenCounter = Callable[[list[str]], list[int]]

# Room left for the [CLS]/[SEP] tokens and the heading line that `embedding_text` puts before the chunk.
_HEADER_BUDGET = 40


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Splitter:
    """`max_tokens` is the model's limit; chunks aim at `target_tokens` so a passage stays one idea."""

    count_tokens: TokenCounter
    max_tokens: int = 256
    target_tokens: int = 160

    def split(self, document: Document) -> list[Chunk]:
        doc_id = content_hash(document.text)
        budget = min(self.target_tokens, self.max_tokens - _HEADER_BUDGET)
        spans: list[tuple[Section, int, int]] = []
        for section in self._sections(document):
            for start, end in sentence_spans(document.text, section.start, section.end):
                spans.append((section, start, end))
        counts = self.count_tokens([document.text[start:end] for _, start, end in spans]) if spans else []
        pieces: list[tuple[Section, int, int, int]] = []
        for (section, start, end), tokens in zip(spans, counts, strict=True):
            pieces.extend((section, s, e, t) for s, e, t in self._fit(document.text, start, end, tokens, budget))
        chunks: list[Chunk] = []
        for section_pieces in _by_section(pieces):
            for group in _balanced_groups(section_pieces, budget):
                chunks.append(self._chunk(document, doc_id, group, len(chunks)))
        return chunks

    def _sections(self, document: Document) -> list[Section]:
        found = sections(document.text, plain_headings=not document.pages)
        front_matter = FRONT_MATTER.match(document.text)
        if front_matter:  # `title:` and `date:` describe the document; they are not text to quote
            body = front_matter.end()
            found = [Section(s.heading, max(s.start, body), s.end) for s in found if s.end > body]
        if not document.pages:
            return found
        # A PDF chunk stays on one page: cut each section at page boundaries.
        cut: list[Section] = []
        for section in found:
            for page_start, page_end, _ in document.pages:
                start, end = max(section.start, page_start), min(section.end, page_end)
                if start < end:
                    cut.append(Section(section.heading, start, end))
        return cut

    def _fit(self, text: str, start: int, end: int, tokens: int, budget: int) -> list[tuple[int, int, int]]:
        """The sentence itself, or word-boundary pieces of it that each fit the budget."""
        if tokens <= budget:
            return [(start, end, tokens)]
        parts = -(-tokens // budget)
        while True:
            bounds = _cut_at_spaces(text, start, end, parts)
            counts = self.count_tokens([text[s:e] for s, e in bounds])
            if max(counts) <= budget or parts >= end - start:
                return [(s, e, c) for (s, e), c in zip(bounds, counts, strict=True)]
            parts += 1

    @staticmethod
    def _chunk(document: Document, doc_id: str, group: list[tuple[Section, int, int, int]], position: int) -> Chunk:
        section, start, end = group[0][0], group[0][1], group[-1][2]
        page = next((number for s, e, number in document.pages if s <= start < e), None)
        return Chunk(
            id=f"{doc_id}:{position}",
            doc_id=doc_id,
            text=document.text[start:end],
            title=document.title,
            start=start,
            end=end,
            heading=section.heading,
            position=position,
            page=page,
        )


Piece = tuple[Section, int, int, int]  # (section, start, end, tokens)


def _by_section(pieces: list[Piece]) -> list[list[Piece]]:
    groups: list[list[Piece]] = []
    for piece in pieces:
        if groups and groups[-1][0][0] == piece[0]:
            groups[-1].append(piece)
        else:
            groups.append([piece])
    return groups


def _balanced_groups(pieces: list[Piece], budget: int) -> list[list[Piece]]:
    """Consecutive pieces in chunks of about equal size, none over budget (no tiny tail chunk)."""
    total = sum(piece[3] for piece in pieces)
    target = total / max(1, -(-total // budget))
    groups: list[list[Piece]] = [[]]
    size = 0
    for piece in pieces:
        if groups[-1] and (size + piece[3] > budget or size + piece[3] / 2 > target):
            groups.append([])
            size = 0
        groups[-1].append(piece)
        size += piece[3]
    return groups


def _cut_at_spaces(text: str, start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """`parts` roughly equal pieces of text[start:end], cut at whitespace where there is some."""
    bounds: list[tuple[int, int]] = []
    cursor = start
    for index in range(1, parts):
        target = start + (end - start) * index // parts
        space = text.rfind(" ", cursor + 1, target + 1)
        cut = space if space > cursor else target
        if cut <= cursor:
            continue
        piece_end = cut
        while piece_end > cursor and text[piece_end - 1].isspace():
            piece_end -= 1
        bounds.append((cursor, piece_end))
        cursor = cut
        while cursor < end and text[cursor].isspace():
            cursor += 1
    bounds.append((cursor, end))
    return [(s, e) for s, e in bounds if s < e]
