"""Hybrid retrieval: dense (Chroma) and keyword (BM25) rankings fused by reciprocal rank, near-duplicates collapsed.

`HybridSearcher` keeps a snapshot of the corpus (ready documents, their chunks and the BM25 index) and renews it
when the store's generation changes, so a running engine sees documents ingested after it started, by any
process, without a restart. A time expression in the question ("latest", "in May") narrows the passages by their
documents' publication dates (bot/timeframe.py). `HybridRetriever` exposes it to LangChain as a `BaseRetriever`.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from bot.embeddings import Embedder
from bot.keyword import KeywordIndex, terms, vocabulary, words
from bot.store import ChunkStore
from bot.timeframe import POOL_FACTOR, narrow, time_frame, time_terms
from bot.types import Chunk, ChunkSentences, DocumentRecord, Question, ScoredChunk, embedding_text

# Fusion: a convex combination of the two normalized scores (BM25 over its best, cosine min-max over the
# candidates). Tuned on SQuAD's development split, it beat reciprocal rank fusion (k=60) and both rankings alone at
# recall@1, @5 and @20 (bench/squad.py prints all three).
KEYWORD_WEIGHT = 0.65
# How many candidates each ranking contributes.
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 50
# Passages sharing this much of their word shingles are one passage said twice.
NEAR_DUPLICATE_JACCARD = 0.8


@dataclass
class CorpusSnapshot:
    generation: str = ""
    documents: dict[str, DocumentRecord] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    keyword: KeywordIndex = field(default_factory=lambda: KeywordIndex([]))
    position: dict[str, int] = field(default_factory=dict)  # chunk id -> index in `chunks`
    sentences: dict[str, ChunkSentences] = field(default_factory=dict)  # chunk id -> vectors stored at ingestion
    words: dict[str, np.ndarray] = field(default_factory=dict)  # the corpus's words -> their vectors (half precision)

    @functools.cached_property
    def dated(self) -> bool:
        """Whether any document has a publication date (time words in questions only mean something then)."""
        return any(document.published for document in self.documents.values())


@dataclass(frozen=True)
class Retrieval:
    """What one question found: the question (with its vector), the passages best first, and the corpus snapshot
    both came from, so keyword statistics and hits always agree."""

    question: Question
    hits: tuple[ScoredChunk, ...]
    snapshot: CorpusSnapshot


class HybridSearcher:
    """Searches one immutable `CorpusSnapshot` per question; a newer corpus is swapped in whole.

    Why no lock around readers: a reload (reopening the index, reading every document record, re-indexing the
    keywords) can take seconds on a large corpus, and questions must not wait for it. One thread reloads while
    the others keep answering from the snapshot they hold; the new snapshot replaces the old with a single
    assignment. Only the very first load blocks, since there is nothing to answer from before it.
    """

    def __init__(self, store: ChunkStore, embedder: Embedder, refresh_seconds: float = 1.0) -> None:
        self._store = store
        self._embedder = embedder
        self._refresh_seconds = refresh_seconds
        self._snapshot = CorpusSnapshot()
        self._loaded = False
        self._checked_at = -float("inf")
        self._reload = threading.Lock()  # one reloader at a time; readers never take it after the first load
        self._terms: dict[str, list[str]] = {}  # chunk id -> analyzed terms, so a refresh only analyzes new chunks

    def snapshot(self, fresh: bool = False) -> CorpusSnapshot:
        """The current corpus, renewed when another write happened (checked at most once per refresh period, or
        now when `fresh`). A failed check raises every time: a cached corpus is never passed off as current."""
        if not fresh and time.monotonic() - self._checked_at < self._refresh_seconds:
            return self._snapshot
        if not self._reload.acquire(blocking=fresh or not self._loaded):
            return self._snapshot  # another thread is reloading: answer from the snapshot we have
        try:
            now = time.monotonic()
            if fresh or now - self._checked_at >= self._refresh_seconds:
                generation = self._store.generation()
                if generation != self._snapshot.generation or not self._loaded:
                    self._snapshot = self._load(generation)
                    self._loaded = True
                self._checked_at = now
            return self._snapshot
        finally:
            self._reload.release()

    def _load(self, generation: str) -> CorpusSnapshot:
        previous = self._snapshot
        if previous.generation:
            self._store.refresh()  # an embedded index must reopen to search vectors another process wrote
        documents = self._store.documents()
        kept = [chunk for chunk in previous.chunks if chunk.doc_id in documents]
        known = {chunk.doc_id for chunk in kept}
        sentences = {chunk.id: previous.sentences[chunk.id] for chunk in kept if chunk.id in previous.sentences}
        vocabulary_of_new: set[str] = set()
        for chunk, found in self._store.chunks_of(doc_id for doc_id in documents if doc_id not in known):
            kept.append(chunk)
            vocabulary_of_new |= vocabulary(embedding_text(chunk))
            if found is not None:
                sentences[chunk.id] = found
        word_vectors = {**previous.words, **self._store.word_vectors(vocabulary_of_new - previous.words.keys())}
        chunks = sorted(kept, key=lambda chunk: (chunk.doc_id, chunk.position))
        current = {chunk.id for chunk in chunks}
        self._terms = {chunk_id: tokens for chunk_id, tokens in self._terms.items() if chunk_id in current}
        for chunk in chunks:
            if chunk.id not in self._terms:
                self._terms[chunk.id] = terms(embedding_text(chunk))
        keyword = KeywordIndex([self._terms[chunk.id] for chunk in chunks])
        return CorpusSnapshot(
            generation=generation,
            documents=documents,
            chunks=chunks,
            keyword=keyword,
            position={chunk.id: index for index, chunk in enumerate(chunks)},
            sentences=sentences,
            words=word_vectors,
        )

    def search(
        self,
        query: str,
        k: int,
        query_vector: np.ndarray | None = None,
        snapshot: CorpusSnapshot | None = None,
    ) -> list[ScoredChunk]:
        """The k best distinct passages for `query`, best first, from `snapshot` (default: the current one)."""
        snapshot = snapshot or self.snapshot()
        if not snapshot.chunks:
            return []
        now = datetime.now(UTC)
        # "latest", "in May": choose among more passages by publication date (when the corpus has dates at all).
        frame = time_frame(query, now) if snapshot.dated else None
        wanted = k if frame is None else k * POOL_FACTOR
        candidates = max(MIN_CANDIDATES, k * CANDIDATES_PER_RESULT)
        vector = self._embedder.embed_query(query) if query_vector is None else query_vector
        dense = [
            (chunk, similarity)
            for chunk, similarity in self._store.search(vector, candidates)
            if chunk.doc_id in snapshot.documents  # pending chunks of an unfinished ingestion are invisible
        ]
        dropped = time_terms(frame)
        query_terms = [term for term in terms(query) if term not in dropped]
        keyword = [(snapshot.chunks[i], score) for i, score in snapshot.keyword.search(query_terms, candidates)]
        fused = fuse(dense, keyword)
        by_id = {chunk.id: chunk for chunk, _ in dense + keyword}
        similarity = {chunk.id: sim for chunk, sim in dense}
        ordered = sorted(fused, key=lambda chunk_id: -fused[chunk_id])
        chosen: list[Chunk] = []
        shingles: list[set[tuple[str, ...]]] = []
        for chunk_id in ordered:
            chunk = by_id[chunk_id]
            own = _shingles(chunk.text)
            if any(_jaccard(own, other) >= NEAR_DUPLICATE_JACCARD for other in shingles):
                continue
            chosen.append(chunk)
            shingles.append(own)
            if len(chosen) == wanted:
                break
        missing = [chunk.id for chunk in chosen if chunk.id not in similarity]
        if missing:
            similarity.update(self._store.similarities(vector, missing))
        hits = [
            ScoredChunk(
                chunk=chunk,
                score=fused[chunk.id],
                similarity=similarity.get(chunk.id, 0.0),
                source=(document := snapshot.documents[chunk.doc_id]).source,
                url=document.url,
                published=document.published,
            )
            for chunk in chosen
        ]
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
    snapshot: CorpusSnapshot | None = None  # when the caller holds the snapshot it answers from

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [
            Document(
                page_content=hit.chunk.text,
                metadata={"source": hit.source, "title": hit.chunk.title, "score": hit.score, "hit": hit},
            )
            for hit in self.searcher.search(query, self.k, query_vector=self.query_vector, snapshot=self.snapshot)
        ]
