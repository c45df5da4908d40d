"""Candidate sentences and what the sentence scorer knows about each one.

Every quotable sentence of the retrieved passages is a candidate. Its features describe how it relates to the
question: closeness in meaning (the sentence embedded on its own; its section heading; the sentence before it,
which a sentence opening with "He" or "They" leans on), the question terms it covers (weighted by rarity; with the
heading, title and previous sentence as context), the passage it comes from (similarity, fused score, rank),
whether it offers what the question asks for (a date for "when", a number for "how many"), and how much of the
question the passages do not mention at all (`bot.answering.grounding`).

Sentence vectors are computed at ingestion and kept with the chunk (`ChunkSentences`, read with each retrieved
passage); an index written before they existed gets them computed on first use and cached.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.answering.citations import quotable_sentences
from bot.answering.grounding import Grounding
from bot.answering.words import WordStore, WordVectors
from bot.embeddings import Embedder
from bot.keyword import STOP_WORDS, terms, words
from bot.retrieval import Retrieval
from bot.store import heading_key
from bot.types import Chunk, ChunkSentences, Question, ScoredChunk

PRONOUN_OPENING = re.compile(r"^(he|she|they|it|this|that|these|those|his|her|their|its|there)\b", re.IGNORECASE)


def embed_sentences(chunks: Sequence[Chunk], embedder: Embedder) -> list[ChunkSentences]:
    """Sentence and heading vectors for `chunks`, in one batch (each distinct heading embedded once)."""
    spans = [tuple(quotable_sentences(chunk)) for chunk in chunks]
    texts = [chunk.text[start:end] for chunk, found in zip(chunks, spans, strict=True) for start, end, _ in found]
    headings = list(dict.fromkeys(heading_key(chunk) for chunk in chunks))
    vectors = embedder.embed_documents(texts + headings) if texts or headings else np.zeros((0, 0))
    heading_vectors = dict(zip(headings, vectors[len(texts) :], strict=True))
    result = []
    cursor = 0
    for chunk, found in zip(chunks, spans, strict=True):
        result.append(ChunkSentences(found, vectors[cursor : cursor + len(found)], heading_vectors[heading_key(chunk)]))
        cursor += len(found)
    return result


class SentenceVectors:
    """`ChunkSentences` for retrieved passages: the stored ones that come with them, else (an index written before
    ingestion kept them) embedded and cached."""

    def __init__(self, embedder: Embedder | None, cache_size: int = 2_000) -> None:
        self._embedder = embedder
        self._cache: OrderedDict[str, ChunkSentences] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def get(self, hits: Sequence[ScoredChunk]) -> list[ChunkSentences | None]:
        chunks = [hit.chunk for hit in hits]
        found: list[ChunkSentences | None] = []
        missing: list[int] = []
        with self._lock:
            for index, hit in enumerate(hits):
                known = hit.sentences or self._cache.get(hit.chunk.id)
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
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
# The wh-word opens a question, or ends a casual one ("davos meeting when", "xi trump summit where 👀").
_ANSWER_TYPES = [
    (
        re.compile(r"^\s*when\b|\bwhen\W*$|\b(what|which) (year|date|day|month|time|century|decade)\b", re.I),
        re.compile(f"{_YEAR}|{_MONTH}|{_WEEKDAY}"),
    ),
    (
        re.compile(
            r"\b(how (many|much|long|far|old|large|big|tall|often|high)|what (percentage|number|amount))\b", re.I
        ),
        re.compile(_NUMBER, re.I),
    ),
    (re.compile(r"^\s*(who|whom)\b|\bwho\W*$", re.I), _NAME),
    (re.compile(r"^\s*where\b|\bwhere\W*$|\b(which|what) (city|cities|country|place|town)\b", re.I), _NAME),
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
    return _offers(answer_type(question.text), set(words(question.search_text)), quote)


def _offers(wanted: re.Pattern[str] | None, question_words: set[str], quote: str) -> int:
    if wanted is None:
        return 0
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
    "cos",  # the sentence's meaning (embedded on its own) against the question's
    "cos_gap",  # ... minus the best candidate's
    "cos_rank",  # ... its rank among the candidates
    "cos_heading",  # the heading (or title) of its section against the question
    "cos_previous",  # the sentence before it (what "He ..." leans on)
    "cos_next",  # the sentence after it
    "coverage",  # the share of the question's idf weight the sentence's terms cover
    "coverage_gap",
    "coverage_context",  # ... with the heading, the title, and for a leading pronoun the sentence before
    "coverage_previous",
    "coverage_next",
    "coverage_window",  # ... of the sentence with both neighbours
    "matched",  # question terms in the sentence
    "bigrams",  # question term pairs in the sentence, in order
    "exact_words",  # the share of the question's content words the sentence has, unstemmed
    "soft_coverage",  # the mean over the question's words of the closest word of the sentence (word vectors)
    "soft_coverage_min",  # ... the least covered question word
    "passage_similarity",
    "passage_score",
    "passage_rank",
    "heading_match",  # the share of the question's words in the section heading
    "after_heading",
    "answer_type",  # 1 offers what "when"/"how many"/"who" asks for, -1 lacks it, 0 no particular type
    "words",
    "pronoun",
    "position",
    "missing_weight",  # the share of the question's weight no passage mentions (grounding)
    "unmatched_weight",
    "salient_missing",
    "question_terms",
    "question_type",
    "cos_best",
    "coverage_best",
)
CATEGORICAL = ("question_type",)
_COLUMN = {name: index for index, name in enumerate(FEATURES)}


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
    retrieval: Retrieval,
    sentences: Sequence[ChunkSentences | None],
    grounding: Grounding,
    word_vectors: WordVectors | None = None,
) -> list[Candidate]:
    """Every quotable sentence of the retrieved passages, with features (unscored, in passage order)."""
    question, hits, keyword = retrieval.question, retrieval.hits, retrieval.keyword
    weights: dict[str, float] = {}
    for term in question.context_terms:
        weights[term] = 0.4 * keyword.idf(term)
    for term in question.terms:
        weights[term] = keyword.idf(term)
    total = sum(weights.values()) or 1.0

    def coverage(found: set[str]) -> float:
        return sum(weight for term, weight in weights.items() if term in found) / total

    question_words = set(words(question.text))
    content = tuple(dict.fromkeys(word for word in words(question.text) if _content_word(word)))
    stored = retrieval.corpus
    asked_vectors = word_vectors.vectors(content, stored) if word_vectors is not None and content else None
    pairs = set(itertools.pairwise(question.terms))
    wanted, searched_words = answer_type(question.text), set(words(question.search_text))
    asked_type = float(question_type(question.text))
    query = question.vector
    rows: list[np.ndarray] = []
    places: list[tuple[ScoredChunk, int, int, int, int, str, str]] = []  # a Candidate's fields but its features
    for rank, (hit, found_sentences) in enumerate(zip(hits, sentences, strict=True)):
        chunk = hit.chunk
        chunk_sentences = found_sentences or ChunkSentences(tuple(quotable_sentences(chunk)), np.zeros(0), np.zeros(0))
        if not chunk_sentences.spans:
            continue
        heading = chunk.heading.rsplit(" > ", 1)[-1]
        context_terms = set(terms(heading)) | set(terms(chunk.title))
        heading_match = len(question_words & set(words(heading))) / len(question_words) if question_words else 0.0
        if query is not None and found_sentences is not None:
            query32 = np.asarray(query, dtype=np.float32)
            meanings = np.asarray(found_sentences.vectors, dtype=np.float32) @ query32
            heading_meaning = float(np.asarray(found_sentences.heading, dtype=np.float32) @ query32)
        else:  # no embedder: the sentences are still candidates, judged without their meaning
            meanings, heading_meaning = np.zeros(len(chunk_sentences.spans)), 0.0
        quotes = [chunk.text[start:end] for start, end, _ in chunk_sentences.spans]
        analysed = [terms(quote) for quote in quotes]
        term_sets = [set(found_terms) for found_terms in analysed]
        last = len(quotes) - 1
        for index, (start, end, after_heading) in enumerate(chunk_sentences.spans):
            quote = quotes[index]
            own = term_sets[index]
            before = term_sets[index - 1] if index > 0 else set()
            after = term_sets[index + 1] if index < last else set()
            pronoun = bool(PRONOUN_OPENING.match(quote))
            sentence_words = [word for word in words(quote) if _content_word(word)]
            row = np.zeros(len(FEATURES), dtype=np.float32)
            values = {
                "cos": float(meanings[index]),
                "cos_heading": heading_meaning,
                "cos_previous": float(meanings[index - 1]) if index > 0 else 0.0,
                "cos_next": float(meanings[index + 1]) if index < last else 0.0,
                "coverage": coverage(own),
                "coverage_context": coverage(own | context_terms | (before if pronoun else set())),
                "coverage_previous": coverage(before),
                "coverage_next": coverage(after),
                "coverage_window": coverage(own | before | after),
                "matched": float(sum(term in own for term in question.terms)),
                "bigrams": float(len(pairs & set(itertools.pairwise(analysed[index])))),
                "exact_words": len(set(content) & set(sentence_words)) / len(content) if content else 0.0,
                **_soft_coverage(asked_vectors, sentence_words, word_vectors, stored),
                "passage_similarity": hit.similarity,
                "passage_score": hit.score,
                "passage_rank": float(rank),
                "heading_match": heading_match,
                "after_heading": float(after_heading),
                "answer_type": float(_offers(wanted, searched_words, quote)),
                "words": float(len(quote.split())),
                "pronoun": float(pronoun),
                "position": float(index),
                "missing_weight": grounding.missing_weight,
                "unmatched_weight": grounding.unmatched_weight,
                "salient_missing": float(len(grounding.salient)),
                "question_terms": float(len(question.terms)),
                "question_type": asked_type,
            }
            for name, value in values.items():
                row[_COLUMN[name]] = value
            rows.append(row)
            previous = quotes[index - 1] if index > 0 else ""
            places.append((hit, rank, index, chunk.start + start, chunk.start + end, quote, previous))
    if not rows:
        return []
    matrix = np.stack(rows)
    cos, covered = matrix[:, _COLUMN["cos"]], matrix[:, _COLUMN["coverage"]]
    matrix[:, _COLUMN["cos_gap"]] = cos - cos.max()
    matrix[:, _COLUMN["cos_rank"]] = np.minimum(np.argsort(np.argsort(-cos)), 20)
    matrix[:, _COLUMN["coverage_gap"]] = covered - covered.max()
    matrix[:, _COLUMN["cos_best"]] = cos.max()
    matrix[:, _COLUMN["coverage_best"]] = covered.max()
    return [Candidate(*place, matrix[i]) for i, place in enumerate(places)]


def _content_word(word: str) -> bool:
    return word not in STOP_WORDS and len(word) > 2


def _soft_coverage(
    asked: np.ndarray | None,
    sentence_words: list[str],
    word_vectors: WordVectors | None,
    stored: WordStore | None,
) -> dict[str, float]:
    """For each of the question's content words, how close the sentence's closest word comes: mean and least."""
    offered = word_vectors.vectors(sentence_words, stored) if word_vectors is not None and sentence_words else None
    if asked is None or offered is None:
        return {"soft_coverage": 0.0, "soft_coverage_min": 0.0}
    closest = (asked @ offered.T).max(axis=1)
    return {"soft_coverage": float(closest.mean()), "soft_coverage_min": float(closest.min())}
