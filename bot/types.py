"""The values that flow through citebot: chunks on the way in, answers on the way out.

An `Answer` is a structure (text, citations, abstained); adapters format it at the edge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Chunk:
    """A span of one document: `document_text[start:end] == text` always holds."""

    id: str
    doc_id: str
    text: str
    title: str
    start: int
    end: int
    heading: str = ""
    position: int = 0
    page: int | None = None


def embedding_text(chunk: Chunk) -> str:
    """What the model and the keyword index see: the chunk with its title and heading for context."""
    context = " > ".join(part for part in (chunk.title, chunk.heading) if part)
    return f"{context}\n{chunk.text}" if context else chunk.text


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """One indexed document, keyed by the hash of its text; the same text under two paths is one record."""

    doc_id: str
    sources: tuple[str, ...]
    title: str
    chunks: int
    ingested_at: str
    ready: bool = True

    @property
    def source(self) -> str:
        """The path citations name: the first in sort order, so it is stable across runs."""
        return self.sources[0] if self.sources else ""


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A retrieved chunk with its fused relevance (higher is better) and dense similarity (cosine)."""

    chunk: Chunk
    score: float
    similarity: float
    source: str


@dataclass(frozen=True, slots=True)
class Citation:
    """A verbatim quote: `document_text[start:end] == quote`."""

    n: int
    source: str
    title: str
    start: int
    end: int
    quote: str
    score: float
    page: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.page is None:
            del data["page"]
        data["score"] = round(self.score, 4)
        return data


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier exchange of a conversation, for follow-up questions."""

    question: str
    answer: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...]
    abstained: bool
    timings_ms: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    retrieved: tuple[ScoredChunk, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The `citebot ask --json` contract of DESIGN.md (plus `note` when there is one)."""
        data: dict[str, Any] = {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "citations": [citation.to_json() for citation in self.citations],
            "timings_ms": {name: round(ms, 1) for name, ms in self.timings_ms.items()},
        }
        if self.note:
            data["note"] = self.note
        return data
