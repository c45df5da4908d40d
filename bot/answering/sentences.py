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

import bisect
import itertools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.answering.asking import KINDS, near, offered, wanted_kind
from bot.answering.citations import quotable_sentences
from bot.answering.grounding import Grounding
from bot.answering.words import WordStore, WordVectors
from bot.embeddings import Embedder
from bot.keyword import STOP_WORDS, terms, words
from bot.retrieval import Retrieval
from bot.store import heading_key
from bot.text import sentence_spans
from bot.types import Chunk, ChunkSentences, Question, ScoredChunk, embedding_text

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


def embed_chunks(chunks: Sequence[Chunk], embedder: Embedder) -> tuple[np.ndarray, list[ChunkSentences]]:
    """Each chunk's vector and its sentences' vectors from one pass of the model over the chunk: a sentence's
    vector is the mean of its tokens' vectors there (in the context of the whole chunk); headings are embedded
    on their own, each distinct one once."""
    texts = [embedding_text(chunk) for chunk in chunks]
    passes = embedder.embed_tokens(texts)
    headings = list(dict.fromkeys(heading_key(chunk) for chunk in chunks))
    heading_vectors = dict(zip(headings, embedder.embed_documents(headings), strict=True)) if headings else {}
    vectors = []
    found = []
    for chunk, text, tokens in zip(chunks, texts, passes, strict=True):
        shift = len(text) - len(chunk.text)  # the title and heading before the chunk's own text
        spans = tuple(quotable_sentences(chunk))
        sentence_vectors = [tokens.mean_over(shift + start, shift + end) for start, end, _ in spans]
        matrix = (
            np.stack([v if v is not None else tokens.pooled for v in sentence_vectors])
            if spans
            else np.zeros((0, len(tokens.pooled)))
        )
        vectors.append(tokens.pooled)
        found.append(ChunkSentences(spans, matrix.astype(np.float32), heading_vectors[heading_key(chunk)]))
    return np.asarray(vectors, dtype=np.float32), found


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


# -- the question's wh-word --------------------------------------------------------------------------------------

QUESTION_TYPES = ("other", "who", "what", "when", "where", "why", "how", "which", "yes-no")
_YES_NO = re.compile(r"^\s*(is|are|was|were|do|does|did|can|could|will|would|has|have|had|should)\b", re.I)


def question_type(question: str) -> int:
    lowered = question.lower()
    for index, name in enumerate(QUESTION_TYPES[1:-1], start=1):
        if re.search(rf"\b{name}\b", lowered):
            return index
    return len(QUESTION_TYPES) - 1 if _YES_NO.match(question) else 0


def offers_answer_type(question: Question, quote: str) -> int:
    """1 when the quote states something of the kind the question asks for (`bot.answering.asking`) that the
    question does not already say, -1 when it states nothing of that kind, 0 when the question asks for no kind."""
    kind = wanted_kind(question.reading)
    if kind in _NO_KIND:
        return 0
    return 1 if offered(kind, quote, words(question.search_text)) else -1


_NO_KIND = frozenset({"other", "yes-no"})


# -- the documents the passages come from --------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentTerms:
    """A document's sentences as analyzed terms, for weighing the question's terms within the document: a term in
    every sentence of a story (its subject) tells its sentences apart less than one in a single sentence."""

    starts: tuple[int, ...]  # each sentence's offset in the document text
    sentences: tuple[frozenset[str], ...]
    title: frozenset[str]

    def count(self, term: str) -> int:
        return sum(term in sentence for sentence in self.sentences)

    def weight(self, term: str) -> float:
        """The term's inverse sentence frequency within the document (highest for a term it never uses)."""
        return math.log(1.0 + (len(self.sentences) + 1) / (self.count(term) + 0.5))

    def index_of(self, offset: int) -> int:
        """The index of the sentence that holds `offset`."""
        return max(0, bisect.bisect_right(self.starts, offset) - 1)


def document_terms(text: str, title: str) -> DocumentTerms:
    spans = sentence_spans(text)
    return DocumentTerms(
        starts=tuple(start for start, _ in spans),
        sentences=tuple(frozenset(terms(text[start:end])) for start, end in spans),
        title=frozenset(terms(title)),
    )


class DocumentTermsCache:
    """`DocumentTerms` of the documents the passages come from, by document id (ids name content, so an entry never
    goes stale), the most recently used kept."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._kept: OrderedDict[str, DocumentTerms] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, retrieval: Retrieval) -> dict[str, DocumentTerms]:
        """Terms of every document of the retrieval's passages: from the corpus's copy of the document, else (no
        corpus, as in unit tests) from the passages themselves."""
        doc_ids = list(dict.fromkeys(hit.chunk.doc_id for hit in retrieval.hits))
        found: dict[str, DocumentTerms] = {}
        with self._lock:
            for doc_id in doc_ids:
                if doc_id in self._kept:
                    self._kept.move_to_end(doc_id)
                    found[doc_id] = self._kept[doc_id]
        missing = [doc_id for doc_id in doc_ids if doc_id not in found]
        if not missing:
            return found
        documents = retrieval.corpus.documents(missing) if retrieval.corpus is not None else {}
        fresh = {}
        for doc_id in missing:
            document = documents.get(doc_id)
            if document is not None:
                fresh[doc_id] = document_terms(document.content.text, document.record.title)
            else:
                chunks = [hit.chunk for hit in retrieval.hits if hit.chunk.doc_id == doc_id]
                fresh[doc_id] = document_terms(_pieced(chunks), chunks[0].title)
        with self._lock:
            self._kept.update(fresh)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        found.update(fresh)
        return found


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
    # What is asked, against what the sentence states (`bot.answering.asking`).
    "asks",  # the kind of answer asked for (money, percent, count, duration, date, person, ...)
    "offers",  # 1: the sentence states one of that kind the question does not say; -1: none; 0: no kind asked
    "offers_count",  # how many it states
    "offers_near_focus",  # one lies near a focus term of the question in the sentence
    # The question's terms weighed within the sentence's own document: its subject (in the title, or in most of its
    # sentences) against what the question is after (the focus).
    "doc_coverage",  # the share of the question's within-document weight the sentence covers
    "doc_coverage_gap",  # ... minus the best candidate's
    "focus_terms",  # question terms that are not the document's subject
    "focus_coverage",  # the share of the focus's (corpus-wide idf) weight the sentence covers
    "focus_coverage_gap",
    "focus_absent",  # the share of the focus's weight the whole document never uses
    "document_position",  # the sentence's index in its document
    "title_share",  # the share of the sentence's terms that are in the document's title
    "novel_share",  # the share of the sentence's terms the question does not use
)
CATEGORICAL = ("question_type", "asks")
_COLUMN = {name: index for index, name in enumerate(FEATURES)}
# A question term in this share of a document's sentences (or in its title) is the document's subject.
SUBJECT_SHARE = 0.5
# ...in a document of at least this many sentences (in a note of one or two, every term is in most of them).
SUBJECT_SENTENCES = 4


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
    after_heading: bool  # the first sentence under its section heading
    vector: np.ndarray | None  # its meaning (None for a chunk stored without sentence vectors)
    features: np.ndarray


def candidates(
    retrieval: Retrieval,
    sentences: Sequence[ChunkSentences | None],
    grounding: Grounding,
    word_vectors: WordVectors | None = None,
    documents: DocumentTermsCache | None = None,
) -> list[Candidate]:
    """Every quotable sentence of the retrieved passages, with features (unscored, in passage order)."""
    question, hits, keyword = retrieval.question, retrieval.hits, retrieval.keyword
    reading = question.reading
    weights: dict[str, float] = {}
    for term in question.context_terms:
        weights[term] = 0.4 * keyword.idf(term)
    for term in question.terms:
        weights[term] = keyword.idf(term)
    total = sum(weights.values()) or 1.0

    def coverage(found: set[str] | frozenset[str]) -> float:
        return sum(weight for term, weight in weights.items() if term in found) / total

    question_words = set(words(reading))
    content = tuple(dict.fromkeys(word for word in words(reading) if _content_word(word)))
    stored = retrieval.corpus
    asked_vectors = word_vectors.vectors(content, stored) if word_vectors is not None and content else None
    pairs = set(itertools.pairwise(question.terms))
    searched_words = set(words(question.search_text))
    asked_type = float(question_type(reading))
    kind = wanted_kind(reading)
    asks = float(KINDS.index(kind))
    own_terms = [term for term in dict.fromkeys(question.terms)]
    by_document = (documents or DocumentTermsCache()).of(retrieval)
    query = question.vector
    rows: list[np.ndarray] = []
    places: list[tuple[ScoredChunk, int, int, int, int, str, str, bool, np.ndarray | None]] = []  # all but features
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
        document = by_document[chunk.doc_id]
        focus = _focus(own_terms, document)
        focus_weights = {term: keyword.idf(term) for term in focus}
        focus_total = sum(focus_weights.values()) or 1.0
        absent = sum(weight for term, weight in focus_weights.items() if not document.count(term)) / focus_total
        document_weights = {term: document.weight(term) for term in own_terms}
        document_total = sum(document_weights.values()) or 1.0
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
            kinds = offered(kind, quote, searched_words) if kind not in _NO_KIND else []
            focus_places = [
                match.span()
                for term in focus
                for match in re.finditer(r"[^\W_]+", quote)
                if term in terms(match.group(0))
            ]
            document_index = document.index_of(chunk.start + start)
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
                "words": float(len(quote.split())),
                "pronoun": float(pronoun),
                "position": float(index),
                "missing_weight": grounding.missing_weight,
                "unmatched_weight": grounding.unmatched_weight,
                "salient_missing": float(len(grounding.salient)),
                "question_terms": float(len(question.terms)),
                "question_type": asked_type,
                "asks": asks,
                "offers": 0.0 if kind in _NO_KIND else (1.0 if kinds else -1.0),
                "offers_count": float(len(kinds)),
                "offers_near_focus": float(bool(kinds) and near(kinds, focus_places, quote)),
                "doc_coverage": sum(w for term, w in document_weights.items() if term in own) / document_total,
                "focus_terms": float(len(focus)),
                "focus_coverage": sum(w for term, w in focus_weights.items() if term in own) / focus_total,
                "focus_absent": absent,
                "document_position": float(min(document_index, 30)),
                "title_share": len(own & document.title) / len(own) if own else 0.0,
                "novel_share": len(own - set(question.terms)) / len(own) if own else 0.0,
            }
            for name, value in values.items():
                row[_COLUMN[name]] = value
            rows.append(row)
            previous = quotes[index - 1] if index > 0 else ""
            vector = found_sentences.vectors[index] if found_sentences is not None else None
            places.append(
                (hit, rank, index, chunk.start + start, chunk.start + end, quote, previous, after_heading, vector)
            )
    if not rows:
        return []
    matrix = np.stack(rows)
    for name in ("cos", "coverage", "doc_coverage", "focus_coverage"):
        column = matrix[:, _COLUMN[name]]
        if name == "cos":
            matrix[:, _COLUMN["cos_gap"]] = column - column.max()
            matrix[:, _COLUMN["cos_rank"]] = np.minimum(np.argsort(np.argsort(-column)), 20)
            matrix[:, _COLUMN["cos_best"]] = column.max()
        elif name == "coverage":
            matrix[:, _COLUMN["coverage_gap"]] = column - column.max()
            matrix[:, _COLUMN["coverage_best"]] = column.max()
        else:
            matrix[:, _COLUMN[f"{name}_gap"]] = column - column.max()
    return [Candidate(*place, matrix[i]) for i, place in enumerate(places)]


def _pieced(chunks: Sequence[Chunk]) -> str:
    """The text of a document as far as `chunks` cover it, each at its offset (blanks elsewhere)."""
    text = ""
    for chunk in sorted(chunks, key=lambda chunk: chunk.start):
        if chunk.start >= len(text):
            text = text.ljust(chunk.start) + chunk.text
    return text


def _focus(question_terms: Sequence[str], document: DocumentTerms) -> list[str]:
    """The question's terms that are not the document's subject: not in its title, and in fewer than
    `SUBJECT_SHARE` of its sentences, when it has enough sentences to tell (terms the document never uses count as
    focus: it cannot answer them)."""
    size = len(document.sentences)
    if size < SUBJECT_SENTENCES:
        return [term for term in question_terms if term not in document.title]
    return [
        term for term in question_terms if term not in document.title and document.count(term) / size < SUBJECT_SHARE
    ]


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
