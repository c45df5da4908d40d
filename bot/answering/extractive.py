"""The default answerer: no LLM, no key. It picks the sentences that answer the question and quotes them.

Every sentence of the retrieved passages is scored by how much of the question it covers (terms weighted by
their rarity in the corpus, with the passage's heading counting for the sentences under it), plus the passage's
similarity to the question. The best one or two become the answer, each quoted verbatim with its offsets.
When the best sentence covers too little of the question, the answerer abstains instead of guessing.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from bot.answering.citations import citation, compose, quotable_sentences
from bot.embeddings import Embedder
from bot.keyword import KeywordIndex, terms, words
from bot.retrieval import Retrieval
from bot.types import Answer, Question, ScoredChunk


@dataclass(frozen=True)
class ExtractiveSettings:
    """Weights and thresholds, calibrated on the development set (tests/data/devset.jsonl) and SQuAD's dev split."""

    similarity_weight: float = 0.35  # the passage's dense similarity to the question
    sentence_weight: float = 0.6  # the sentence's own dense similarity (when an embedder is given)
    heading_match_weight: float = 0.3  # the share of the question's words in the section heading
    rerank_depth: int = 12  # how many of the best sentences by terms are compared by meaning
    rank_weight: float = 0.1  # a bonus for passages the fused retrieval ranked first
    heading_weight: float = 0.5  # a question term found in the section heading counts this much
    context_weight: float = 0.4  # terms from the previous turn (follow-ups) count this much
    title_weight: float = 1.0  # a question term found in the document title counts this much
    answer_type_weight: float = 0.15  # "when" wants a date, "how many" a number, "who" a name
    # More sentences are quoted only while they score close to the best one, so most answers stay one or two
    # sentences long; on SQuAD's development split this covers 0.89 of the answers at under 600 quoted
    # characters on average (a looser ratio quotes more and covers less).
    extra_sentence_ratio: float = 0.6  # quote another sentence scoring at least this share of the best
    max_sentences: int = 5
    max_quote_chars: int = 800
    # Answer when the best sentence means nearly the same as the question, or covers enough of its terms;
    # never when even the best passage is off topic.
    # (tests/data/devset.jsonl: the best trade-off of evidence hits, abstentions and false abstentions.)
    answer_similarity: float = 0.35
    min_coverage: float = 0.8
    min_similarity: float = 0.2
    closest_similarity: float = 0.3  # on abstention, name passages at least this similar as "closest"


@dataclass(frozen=True)
class Candidate:
    hit: ScoredChunk
    rank: int
    start: int  # offsets into the document text
    end: int
    quote: str
    coverage: float
    score: float
    meaning: float = 0.0  # the sentence's dense similarity to the question (0 without an embedder)


# Sentence vectors are kept for chunks seen recently: popular passages are embedded once.
_SENTENCE_CACHE_SIZE = 20_000


class ExtractiveAnswerer:
    """`embedder` is optional: with it, the best sentences by terms are re-ranked by meaning too."""

    def __init__(self, settings: ExtractiveSettings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or ExtractiveSettings()
        self._embedder = embedder
        self._vectors: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def answer(self, retrieval: Retrieval) -> Answer:
        question, hits, keyword = retrieval.question, list(retrieval.hits), retrieval.snapshot.keyword
        candidates = self.candidates(question, hits, keyword)
        if not candidates or not self.supported(candidates[0], hits):
            return abstain(question.text, hits, self.settings.closest_similarity)
        chosen = self._choose(candidates)
        if not offers_answer_type(question, [c.quote for c in chosen]):
            # "When ...?" answered by sentences without any date: the passages are about it, but don't say.
            return abstain(question.text, hits, self.settings.closest_similarity)
        return compose(question.text, [(c.hit, c.start, c.end, c.quote) for c in chosen])

    def supported(self, best: Candidate, hits: list[ScoredChunk]) -> bool:
        """Whether the corpus answers: calibrated on development questions, never on held-out data."""
        s = self.settings
        if max(hit.similarity for hit in hits) < s.min_similarity:
            return False
        return best.meaning >= s.answer_similarity or best.coverage >= s.min_coverage

    def _rerank(self, question: Question, found: list[Candidate]) -> list[Candidate]:
        """Add each top sentence's similarity in meaning to the question, and sort again."""
        if self._embedder is None or not found:
            return found
        top = found[: self.settings.rerank_depth]
        query = question.vector if question.vector is not None else self._embedder.embed_query(question.search_text)
        vectors = self._sentence_vectors(top)
        meanings = vectors @ np.asarray(query, dtype=np.float32)
        reranked = [
            replace(c, meaning=float(m), score=c.score + self.settings.sentence_weight * float(m))
            for c, m in zip(top, meanings, strict=True)
        ]
        reranked.sort(key=lambda candidate: -candidate.score)
        return reranked + found[self.settings.rerank_depth :]

    def _sentence_vectors(self, candidates: list[Candidate]) -> np.ndarray:
        assert self._embedder is not None
        keys = [(c.hit.chunk.doc_id, c.start) for c in candidates]
        with self._lock:
            missing = [i for i, key in enumerate(keys) if key not in self._vectors]
        if missing:
            fresh = self._embedder.embed_documents([candidates[i].quote for i in missing])
            with self._lock:
                for i, vector in zip(missing, fresh, strict=True):
                    self._vectors[keys[i]] = vector
                while len(self._vectors) > _SENTENCE_CACHE_SIZE:
                    self._vectors.popitem(last=False)
        with self._lock:
            return np.stack([self._vectors[key] for key in keys])

    def candidates(self, question: Question, hits: list[ScoredChunk], keyword: KeywordIndex) -> list[Candidate]:
        """Every sentence of the passages, best first."""
        s = self.settings
        weights: dict[str, float] = {}
        for term in question.context_terms:
            weights[term] = s.context_weight * keyword.idf(term)
        for term in question.terms:
            weights[term] = keyword.idf(term)
        total = sum(weights.values())
        question_words = set(words(question.text))
        found: list[Candidate] = []
        for rank, hit in enumerate(hits):
            chunk = hit.chunk
            heading = chunk.heading.rsplit(" > ", 1)[-1]
            heading_terms = set(terms(heading))
            title_terms = set(terms(chunk.title))
            # A section whose heading asks the question ("### Why Seoul, not Beijing?" for "why Seoul?") answers it,
            # first of all in the sentence right under the heading.
            heading_match = len(question_words & set(words(heading))) / len(question_words) if question_words else 0
            for start, end, after_heading in quotable_sentences(chunk):
                quote = chunk.text[start:end]
                sentence_terms = set(terms(quote))
                covered = 0.0
                for term, weight in weights.items():
                    if term in sentence_terms:
                        covered += weight
                    elif term in heading_terms:
                        covered += s.heading_weight * weight
                    elif term in title_terms:
                        covered += s.title_weight * weight
                coverage = covered / total if total else 0.0
                score = coverage + s.similarity_weight * hit.similarity + s.rank_weight / (rank + 1)
                if offers_answer_type(question, [quote]):
                    score += s.answer_type_weight
                score += s.heading_match_weight * heading_match * (2 if after_heading else 1)
                found.append(Candidate(hit, rank, chunk.start + start, chunk.start + end, quote, coverage, score))
        found.sort(key=lambda candidate: -candidate.score)
        return self._rerank(question, found)

    def _choose(self, candidates: list[Candidate]) -> list[Candidate]:
        best = candidates[0]
        chosen = [best]
        for other in candidates[1:]:
            if (
                len(chosen) >= self.settings.max_sentences
                or other.score < self.settings.extra_sentence_ratio * best.score
            ):
                break
            if sum(len(c.quote) for c in chosen) + len(other.quote) > self.settings.max_quote_chars:
                continue
            chosen.append(other)
        return chosen


_YEAR = r"\b(1[0-9]{3}|20[0-9]{2})s?\b"
_MONTH = r"\b(January|February|March|April|May|June|July|August|September|October|November|December)\b"
_NUMBER = (
    r"\b\d[\d,.]*\b|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
    r"fifty|hundred|thousand|million|billion|dozen|half)\b"
)
_ANSWER_TYPES = [
    (re.compile(r"^\s*(when|what (year|date|day|month|time|century|decade))\b", re.I), re.compile(f"{_YEAR}|{_MONTH}")),
    (
        re.compile(r"\b(how (many|much|long|far|old|large|big|tall|often)|what (percentage|number|amount))\b", re.I),
        re.compile(_NUMBER, re.I),
    ),
    (re.compile(r"^\s*(who|whom)\b", re.I), re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")),
]


def answer_type(question: str) -> re.Pattern[str] | None:
    """A pattern the answer is likely to match, from the question's wording ("how many" -> a number)."""
    for asks, pattern in _ANSWER_TYPES:
        if asks.search(question):
            return pattern
    return None


def offers_answer_type(question: Question, quotes: list[str]) -> bool:
    """Whether the quotes hold something of the type the question wants that it does not already say."""
    wanted = answer_type(question.text)
    if wanted is None:
        return True
    question_words = set(words(question.search_text))
    return any(match.group(0).lower() not in question_words for quote in quotes for match in wanted.finditer(quote))


def abstain(question: str, hits: list[ScoredChunk], closest_similarity: float, reason: str = "") -> Answer:
    """The corpus does not answer: say so, and name the closest passages when they are on topic at all."""
    closest = [hit for hit in hits[:2] if hit.similarity >= closest_similarity]
    text = "The corpus doesn't say." if not reason else f"The corpus doesn't say ({reason})."
    citations = tuple(
        citation(n, hit, hit.chunk.start, hit.chunk.end, hit.chunk.text) for n, hit in enumerate(closest, start=1)
    )
    if len(citations) == 1:
        text += " The closest passage I found is [1], but it doesn't answer the question."
    elif citations:
        markers = " and ".join(f"[{citation.n}]" for citation in citations)
        text += f" The closest passages I found are {markers}, but they don't answer the question."
    return Answer(question=question, text=text, citations=citations, support="closest" if citations else "none")
