"""Hybrid retrieval: dense (Chroma) and keyword (BM25) rankings fused, near-duplicates collapsed.

`HybridSearcher` asks the index for the nearest chunks and the machine's keyword index (`bot.corpus`) for the best
keyword matches, keeps the chunks of documents the mirror holds (ready, whole), and reads the vectors and sentences
of the passages it returns, and nothing else, from the index. A time expression in the question ("latest", "in
May") narrows the passages by their documents' publication dates (bot/timeframe.py). `HybridRetriever` exposes it
to LangChain as a `BaseRetriever`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from bot.corpus import Corpus
from bot.embeddings import Embedder
from bot.keyword import KeywordView, terms, words
from bot.store import ChunkStore, sentences_of
from bot.timeframe import POOL_FACTOR, narrow, time_frame, time_terms
from bot.types import Chunk, Question, ScoredChunk

# Fusion: a convex combination of the two normalized scores (BM25 over its best, cosine min-max over the
# candidates). Tuned on SQuAD's development split, it beat reciprocal rank fusion (k=60) and both rankings alone at
# recall@1, @5 and @20 (bench/squad.py prints all three).
KEYWORD_WEIGHT = 0.65
# How many candidates each ranking contributes.
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 50
# Passages sharing this much of their word shingles are one passage said twice.
NEAR_DUPLICATE_JACCARD = 0.8


@dataclass(frozen=True)
class Retrieval:
    """What one question found: the question (with its vector), the passages best first, the keyword index as it
    was when they were found (so term statistics and hits agree), and the corpus they came from (None in tests
    that build passages by hand)."""

    question: Question
    hits: tuple[ScoredChunk, ...]
    keyword: KeywordView
    corpus: Corpus | None = None
    confidence_cap: float = 1.0  # an answer from this retrieval is at most this confident (see `Engine.best_reading`)


class HybridSearcher:
    """Searches the index and the machine's mirror of it; see the module docstring."""

    def __init__(self, store: ChunkStore, corpus: Corpus, embedder: Embedder) -> None:
        self._store = store
        self.corpus = corpus
        self._embedder = embedder

    def search(
        self,
        query: str,
        k: int,
        query_vector: np.ndarray | None = None,
        keyword: KeywordView | None = None,
    ) -> list[ScoredChunk]:
        """The k best distinct passages for `query`, best first (`keyword`: the view to search, default now's)."""
        corpus = self.corpus
        if keyword is None:
            corpus.refresh()
            keyword = corpus.keyword_view()
        now = datetime.now(UTC)
        # "latest", "in May": choose among more passages by publication date (when the corpus has dates at all).
        frame = time_frame(query, now) if corpus.dated else None
        wanted = k if frame is None else k * POOL_FACTOR
        candidates = max(MIN_CANDIDATES, k * CANDIDATES_PER_RESULT)
        vector = self._embedder.embed_query(query) if query_vector is None else query_vector
        nearest = self._store.search(vector, candidates)
        dropped = time_terms(frame)
        matched = keyword.search([term for term in terms(query) if term not in dropped], candidates)
        # Only chunks of documents the mirror holds: ready and whole (a chunk of a document being written, or
        # removed since the keyword index was read, is left out).
        chunks = corpus.chunks([chunk_id for chunk_id, _ in nearest + matched])
        dense = [(chunks[chunk_id], similarity) for chunk_id, similarity in nearest if chunk_id in chunks]
        lexical = [(chunks[chunk_id], score) for chunk_id, score in matched if chunk_id in chunks]
        fused = fuse(dense, lexical)
        similarity = {chunk.id: sim for chunk, sim in dense}
        chosen: list[Chunk] = []
        shingles: list[set[tuple[str, ...]]] = []
        for chunk_id in sorted(fused, key=lambda chunk_id: -fused[chunk_id]):
            chunk = chunks[chunk_id]
            own = _shingles(chunk.text)
            if any(_jaccard(own, other) >= NEAR_DUPLICATE_JACCARD for other in shingles):
                continue
            chosen.append(chunk)
            shingles.append(own)
            if len(chosen) == wanted:
                break
        stored = self._store.stored_chunks([chunk.id for chunk in chosen])
        documents = corpus.documents(chunk.doc_id for chunk in chosen)
        query32 = np.asarray(vector, dtype=np.float32)
        hits = []
        for chunk in chosen:
            record, document = stored.get(chunk.id), documents.get(chunk.doc_id)
            if record is None or document is None:
                continue  # removed while this question was asked
            hits.append(
                ScoredChunk(
                    chunk=chunk,
                    score=fused[chunk.id],
                    similarity=similarity.get(chunk.id, float(record.vector @ query32)),
                    source=document.record.source,
                    url=document.record.url,
                    published=document.record.published,
                    sentences=sentences_of(chunk, record, document.content.headings),
                )
            )
        return hits if frame is None else narrow(hits, frame, k, now)


def fuse(dense: list[tuple[Chunk, float]], keyword: list[tuple[Chunk, float]]) -> dict[str, float]:
    """Chunk id -> fused score in [0, 1]: KEYWORD_WEIGHT * BM25/best + the rest * min-max-scaled cosine."""
    fused: dict[str, float] = {}
    if keyword:
        best = keyword[0][1]
        for chunk, score in keyword:
            fused[chunk.id] = KEYWORD_WEIGHT * score / best
    if dense:
        top, low = dense[0][1], dense[-1][1]
        spread = max(top - low, 1e-6)
        for chunk, similarity in dense:
            fused[chunk.id] = fused.get(chunk.id, 0.0) + (1 - KEYWORD_WEIGHT) * (similarity - low) / spread
    return fused


def _shingles(text: str, size: int = 3) -> set[tuple[str, ...]]:
    tokens = words(text)
    if len(tokens) < size:
        return {tuple(tokens)}
    return {tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def _jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


class HybridRetriever(BaseRetriever):
    """The hybrid searcher as a LangChain retriever: documents carry the `ScoredChunk` in their metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: HybridSearcher
    k: int = 5
    query_vector: np.ndarray | None = None  # when the caller has embedded the query already
    keyword: KeywordView | None = None  # when the caller holds the keyword view it answers from

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [
            Document(
                page_content=hit.chunk.text,
                metadata={"source": hit.source, "title": hit.chunk.title, "score": hit.score, "hit": hit},
            )
            for hit in self.searcher.search(query, self.k, query_vector=self.query_vector, keyword=self.keyword)
        ]
