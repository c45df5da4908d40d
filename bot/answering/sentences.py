"""Candidate sentences and what the sentence scorer knows about each one.

Every quotable sentence of the retrieved passages is a candidate. Its features describe how it relates to the
question: closeness in meaning (the sentence embedded on its own; its section heading; the sentence before it,
which a sentence opening with "He" or "They" leans on), the question terms it covers (weighted by rarity; with the
heading, title and previous sentence as context), the passage it comes from (similarity, fused score, rank),
whether it offers what the question asks for (a date for "when", a number for "how many"), and how much of the
question the passages do not mention at all (`bot.answering.grounding`).

Sentence vectors are computed at ingestion and kept with the chunk (`ChunkSentences`); an index written before
they existed gets them computed on first use and cached.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.answering.citations import quotable_sentences
from bot.answering.grounding import Grounding
from bot.embeddings import Embedder
from bot.keyword import KeywordIndex, terms, words
from bot.types import Chunk, ChunkSentences, Question, ScoredChunk

PRONOUN_OPENING = re.compile(r"^(he|she|they|it|this|that|these|those|his|her|their|its|there)\b", re.IGNORECASE)


def heading_text(chunk: Chunk) -> str:
    """The section heading a chunk sits under (its last level), else the document title."""
    return chunk.heading.rsplit(" > ", 1)[-1] or chunk.title


def embed_sentences(chunks: Sequence[Chunk], embedder: Embedder) -> list[ChunkSentences]:
    """Sentence and heading vectors for `chunks`, in one batch."""
    spans = [tuple(quotable_sentences(chunk)) for chunk in chunks]
    texts = [chunk.text[start:end] for chunk, found in zip(chunks, spans, strict=True) for start, end, _ in found]
    headings = [heading_text(chunk) or chunk.text[:200] for chunk in chunks]
    vectors = embedder.embed_documents(texts + headings) if texts or headings else np.zeros((0, 0))
    result = []
    cursor = 0
    for index, found in enumerate(spans):
        result.append(ChunkSentences(found, vectors[cursor : cursor + len(found)], vectors[len(texts) + index]))
        cursor += len(found)
    return result


class SentenceVectors:
    """`ChunkSentences` for retrieved chunks: stored ones when ingestion kept them, else embedded and cached."""

    def __init__(self, embedder: Embedder | None, cache_size: int = 20_000) -> None:
        self._embedder = embedder
        self._cache: OrderedDict[str, ChunkSentences] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def get(self, chunks: Sequence[Chunk], stored: dict[str, ChunkSentences]) -> list[ChunkSentences | None]:
        found: list[ChunkSentences | None] = []
        missing: list[int] = []
        with self._lock:
            for index, chunk in enumerate(chunks):
                known = stored.get(chunk.id) or self._cache.get(chunk.id)
                found.append(known)
                if known is None:
                    missing.append(index)
        if missing and self._embedder is not None:
            fresh = embed_sentences([chunks[i] for i in missing], self._embedder)
            with self._lock:
                for i, sentences in zip(missing, fresh, strict=True):
                    found[i] = sentences
                    self._cache[chunks[i].id] = sentences
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return found


# -- what the question asks for ---------------------------------------------------------------------------------

_YEAR = r"\b(1[0-9]{3}|20[0-9]{2})s?\b"
_MONTH = r"\b(January|February|March|April|May|June|July|August|September|October|November|December)\b"
_WEEKDAY = r"\b(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|yesterday|today|tomorrow)\b"
_NUMBER = (
    r"\b\d[\d,.]*\b|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
    r"fifty|hundred|thousand|million|billion|dozen|half)\b"
)
_ANSWER_TYPES = [
    (
        re.compile(r"^\s*(when|what (year|date|day|month|time|century|decade))\b|\bwhat day\b", re.I),
        re.compile(f"{_YEAR}|{_MONTH}|{_WEEKDAY}"),
    ),
    (
        re.compile(
            r"\b(how (many|much|long|far|old|large|big|tall|often|high)|what (percentage|number|amount))\b", re.I
        ),
        re.compile(_NUMBER, re.I),
    ),
    (re.compile(r"^\s*(who|whom)\b", re.I), re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")),
]

QUESTION_TYPES = ("other", "who", "what", "when", "where", "why", "how", "which", "yes-no")
_YES_NO = re.compile(r"^\s*(is|are|was|were|do|does|did|can|could|will|would|has|have|had|should)\b", re.I)


def answer_type(question: str) -> re.Pattern[str] | None:
    """A pattern the answer is likely to match, from the question's wording ("how many" -> a number)."""
    for asks, pattern in _ANSWER_TYPES:
        if asks.search(question):
            return pattern
    return None


def offers_answer_type(question: Question, quote: str) -> int:
    """1 when the quote holds something of the type the question wants that the question does not already say,
    -1 when it holds nothing of that type, 0 when the question wants no particular type."""
    wanted = answer_type(question.text)
    if wanted is None:
        return 0
    question_words = set(words(question.search_text))
    offered = any(match.group(0).lower() not in question_words for match in wanted.finditer(quote))
    return 1 if offered else -1


def question_type(question: str) -> int:
    lowered = question.lower()
    for index, name in enumerate(QUESTION_TYPES[1:-1], start=1):
        if re.search(rf"\b{name}\b", lowered):
            return index
    return len(QUESTION_TYPES) - 1 if _YES_NO.match(question) else 0


# -- candidates and their features ----------------------------------------------------------------------------

FEATURES = (
    "cos",
    "cos_gap",
    "cos_rank",
    "cos_heading",
    "cos_previous",
    "coverage",
    "coverage_gap",
    "coverage_context",
    "matched",
    "passage_similarity",
    "passage_score",
    "passage_rank",
    "heading_match",
    "after_heading",
    "answer_type",
    "words",
    "pronoun",
    "position",
    "missing_weight",
    "unmatched_weight",
    "salient_missing",
    "question_terms",
    "question_type",
    "cos_best",
    "coverage_best",
)
CATEGORICAL = ("question_type",)


@dataclass(frozen=True)
class Candidate:
    """One sentence that could answer: offsets into the document text, and its row of features."""

    hit: ScoredChunk
    rank: int
    index: int  # the sentence's position among its chunk's quotable sentences
    start: int
    end: int
    quote: str
    previous: str  # the sentence before it in the chunk ("" for the first)
    features: np.ndarray


def candidates(
    question: Question,
    hits: Sequence[ScoredChunk],
    sentences: Sequence[ChunkSentences | None],
    keyword: KeywordIndex,
    grounding: Grounding,
) -> list[Candidate]:
    """Every quotable sentence of the hits, with features (unscored, in passage order)."""
    weights: dict[str, float] = {}
    for term in question.context_terms:
        weights[term] = 0.4 * keyword.idf(term)
    for term in question.terms:
        weights[term] = keyword.idf(term)
    total = sum(weights.values()) or 1.0
    question_words = set(words(question.text))
    query = question.vector
    rows: list[list[float]] = []
    found: list[Candidate] = []
    for rank, (hit, chunk_sentences) in enumerate(zip(hits, sentences, strict=True)):
        if chunk_sentences is None or not chunk_sentences.spans:
            continue
        chunk = hit.chunk
        heading = chunk.heading.rsplit(" > ", 1)[-1]
        context_terms = set(terms(heading)) | set(terms(chunk.title))
        heading_match = len(question_words & set(words(heading))) / len(question_words) if question_words else 0.0
        meanings = (
            chunk_sentences.vectors @ np.asarray(query, dtype=np.float32)
            if query is not None
            else np.zeros(len(chunk_sentences.spans))
        )
        heading_meaning = float(chunk_sentences.heading @ query) if query is not None else 0.0
        previous_terms: set[str] = set()
        previous_quote = ""
        for index, (start, end, after_heading) in enumerate(chunk_sentences.spans):
            quote = chunk.text[start:end]
            sentence_terms = set(terms(quote))
            pronoun = bool(PRONOUN_OPENING.match(quote))
            own = sum(weight for term, weight in weights.items() if term in sentence_terms)
            context = sentence_terms | context_terms | (previous_terms if pronoun else set())
            with_context = sum(weight for term, weight in weights.items() if term in context)
            rows.append(
                [
                    float(meanings[index]),
                    0.0,
                    0.0,
                    heading_meaning,
                    float(meanings[index - 1]) if index > 0 else 0.0,
                    own / total,
                    0.0,
                    with_context / total,
                    float(sum(term in sentence_terms for term in question.terms)),
                    hit.similarity,
                    hit.score,
                    float(rank),
                    heading_match,
                    float(after_heading),
                    float(offers_answer_type(question, quote)),
                    float(len(quote.split())),
                    float(pronoun),
                    float(index),
                    grounding.missing_weight,
                    grounding.unmatched_weight,
                    float(len(grounding.salient)),
                    float(len(question.terms)),
                    float(question_type(question.text)),
                    0.0,
                    0.0,
                ]
            )
            found.append(
                Candidate(hit, rank, index, chunk.start + start, chunk.start + end, quote, previous_quote, np.empty(0))
            )
            previous_terms = sentence_terms
            previous_quote = quote
    if not rows:
        return []
    matrix = np.asarray(rows, dtype=np.float32)
    column = {name: i for i, name in enumerate(FEATURES)}
    cos, coverage = matrix[:, column["cos"]], matrix[:, column["coverage"]]
    matrix[:, column["cos_gap"]] = cos - cos.max()
    matrix[:, column["cos_rank"]] = np.minimum(np.argsort(np.argsort(-cos)), 20)
    matrix[:, column["coverage_gap"]] = coverage - coverage.max()
    matrix[:, column["cos_best"]] = cos.max()
    matrix[:, column["coverage_best"]] = coverage.max()
    return [
        Candidate(c.hit, c.rank, c.index, c.start, c.end, c.quote, c.previous, matrix[i]) for i, c in enumerate(found)
    ]
