"""The values that flow through citebot: chunks on the way in, answers on the way out.

An `Answer` is a structure (text, citations, support, confidence); adapters format it at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Support = Literal["answered", "closest", "none"]
"""`answered`: the quotes answer the question; `closest`: the corpus doesn't say exactly, the citations are the
closest sentences; `none`: nothing relevant."""

# What every answerer says when the corpus does not answer (a reason may follow in parentheses).
NO_ANSWER = "The corpus doesn't say."
# The longest question asked (Discord's /ask option enforces it too).
MAX_QUESTION_CHARS = 1000
# How many sentences an answer quotes at most: by default, and the most `-k`/`:k` may ask for.
DEFAULT_QUOTES = 3
MAX_QUOTES = 10

SUPPORT_LEVELS: tuple[Support, ...] = ("answered", "closest", "none")


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
class ChunkSpan:
    """Where one chunk of a document lies: `text[start:end]`, under `heading` (a path "A > B"), on `page`."""

    start: int
    end: int
    heading: str = ""
    page: int | None = None


@dataclass(frozen=True)
class DocumentContent:
    """What answering needs of a document beside its record: its text, its chunks' places by position, and the
    vector of each heading (or title) its chunks sit under, keyed by that heading's text."""

    text: str
    chunks: tuple[ChunkSpan, ...]
    headings: dict[str, np.ndarray] = field(default_factory=dict)
    complete: bool = True  # False: rebuilt from the chunks of an index written before texts were kept


@dataclass(frozen=True)
class ChunkSentences:
    """A chunk's quotable sentences as (start, end, right under a heading) offsets into `chunk.text`, one unit
    vector per sentence (each embedded on its own), and the vector of the chunk's heading (or its title)."""

    spans: tuple[tuple[int, int, bool], ...]
    vectors: np.ndarray
    heading: np.ndarray


@dataclass(frozen=True, slots=True)
class WebSource:
    """How one web source of a document was fetched, kept so a re-run asks only for what changed.

    `etag` and `last_modified` are the server's validators for a conditional request; `feed` and `entry` name the
    feed (or sitemap) entry that listed the page, and `version` that entry's update stamp when it was fetched.
    The record that holds this is written in the same write that makes its document ready, so after a crash the
    state never claims a page that is not whole in the index.
    """

    fetched: str  # when the current text was downloaded (ISO 8601, UTC)
    etag: str | None = None
    last_modified: str | None = None
    feed: str | None = None
    entry: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class FeedState:
    """The validators of a feed or sitemap as last fetched whole: every entry it listed then is in the index.

    Written only after a run took in all of its entries without a failure, so a conditional request that comes
    back 304 Not Modified proves there is nothing to fetch.
    """

    url: str
    fetched: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """One indexed document, keyed by the hash of its text; the same text under two paths is one record.

    `url` is set for web documents (its `source` is then the URL too); `published` is the publication date in
    ISO 8601 when known; `origin` says how it came in: `file`, `url`, `feed` or `sitemap`. `web` holds the fetch
    state of each web source (see `WebSource`); `author` comes from the page's metadata when it names one.
    """

    doc_id: str
    sources: tuple[str, ...]
    title: str
    chunks: int
    ingested_at: str
    ready: bool = True
    url: str | None = None
    published: str | None = None
    origin: str = "file"
    author: str | None = None
    web: dict[str, WebSource] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The path citations name: the first ingested of those still present (a copy of the same text added later
        under another path does not take the citations over)."""
        return self.sources[0] if self.sources else ""

    @property
    def fetched(self) -> str | None:
        """When the text of a web document was downloaded (the latest of its sources); None for files."""
        return max((state.fetched for state in self.web.values()), default=None)


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A retrieved chunk with its fused relevance (higher is better), dense similarity (cosine), and its
    sentences' vectors as ingestion stored them (None for an index written before they were)."""

    chunk: Chunk
    score: float
    similarity: float
    source: str
    url: str | None = None
    published: str | None = None
    sentences: ChunkSentences | None = None


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
    doc_id: str = ""
    url: str | None = None
    published: str | None = None
    link: str | None = None
    context: str | None = (
        None  # the heading a quote only makes sense under ("Is this a breakthrough?"), shown beside it
    )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "n": self.n,
            "source": self.source,
            "title": self.title,
            "start": self.start,
            "end": self.end,
            "quote": self.quote,
            "score": round(self.score, 4),
            "doc_id": self.doc_id,
            "url": self.url,
            "published": self.published,
            "link": self.link,
            "context": self.context,
        }
        if self.page is not None:
            data["page"] = self.page
        return data


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier exchange of a conversation, for follow-up questions.

    `quoted` holds the (doc_id, start) of the sentences the answer quoted, so "tell me more" can go on from there.
    """

    question: str
    answer: str = ""
    quoted: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...]
    support: Support
    confidence: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    retrieved: tuple[ScoredChunk, ...] = ()

    @property
    def abstained(self) -> bool:
        """True unless the quotes answer the question (`support` is `answered`)."""
        return self.support != "answered"

    def turn(self) -> Turn:
        """This answer as a turn of the conversation that follow-ups build on."""
        return Turn(self.question, self.text, tuple((c.doc_id, c.start) for c in self.citations))

    def to_json(self) -> dict[str, Any]:
        """The `citebot ask --json` contract (plus `note` when there is one)."""
        data: dict[str, Any] = {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "support": self.support,
            "confidence": round(self.confidence, 3),
            "citations": [citation.to_json() for citation in self.citations],
            "timings_ms": {name: round(ms, 1) for name, ms in self.timings_ms.items()},
        }
        if self.note:
            data["note"] = self.note
        return data


@dataclass(frozen=True)
class Question:
    """A question prepared for answering: `text` as typed (shown back as it is), `reading` as citebot reads it
    (chat shorthand spelled out, misspelled names corrected; `bot.reading`), `search_text` the reading with the
    previous turn folded in for elliptical follow-ups."""

    text: str
    search_text: str
    terms: tuple[str, ...]
    context_terms: tuple[str, ...] = ()
    history: tuple[Turn, ...] = field(default=())
    vector: np.ndarray | None = field(default=None, compare=False)  # the embedded search text, once retrieved
    limit: int = DEFAULT_QUOTES  # at most this many sentences are quoted (`-k`, `:k`)
    more: bool = False  # "tell me more": quote what the conversation has not quoted yet
    reading: str = ""  # empty: the text as typed
    typed: tuple[tuple[str, str], ...] = ()  # (a word as read, as it was typed) for the words read differently

    def __post_init__(self) -> None:
        if not self.reading:
            object.__setattr__(self, "reading", self.text)

    def as_typed(self, word: str) -> str:
        """How the question typed a word citebot read differently ("govt" for "government"), else the word."""
        return next((typed for read, typed in self.typed if read == word), word)
