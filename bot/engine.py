"""The engine: one LangChain (LCEL) retrieval chain that turns a question, with the conversation so far, into an
`Answer`. Every adapter (CLI, REPL, Discord) asks through it and never reaches past it.

    prepare (fold a follow-up into its context) -> retrieve (hybrid) -> answer (extractive | LLM) -> Answer

The engine is also the composition root: it builds the embedder, the store, the searcher and the answerer from
the settings (or takes them ready-made, as the tests do), and constructing it touches neither model nor index.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from langchain_core.runnables import Runnable, RunnableLambda

from bot.answering import Answerer
from bot.answering.factory import create_answerer
from bot.config import Settings
from bot.embeddings import Embedder, create_query_embedder
from bot.errors import EmptyIndexError, QuestionError
from bot.keyword import terms, words
from bot.retrieval import HybridRetriever, HybridSearcher, Retrieval
from bot.store import ChunkStore
from bot.types import Answer, DocumentRecord, Question, Turn

MAX_QUESTION_CHARS = 1000

# "and who leads the U.S. side?", "what about Japan?", "why does he matter?": these lean on the previous turn.
_FOLLOW_UP_OPENING = re.compile(r"^\s*(and|but|or|also|so|then|what about|how about|same for)\b", re.IGNORECASE)
_REFERRING_WORDS = frozenset("he she they it him her them his hers their its this that these those there".split())


def prepare_question(text: str, history: Sequence[Turn] = ()) -> Question:
    """Clean the question; for an elliptical follow-up, search with the previous question folded in."""
    question = " ".join(text.split())
    if not question:
        raise QuestionError("the question is empty; ask something about the corpus")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionError(f"the question is {len(question)} characters long; keep it under {MAX_QUESTION_CHARS}")
    own_terms = terms(question)
    previous = history[-1].question if history else ""
    follow_up = bool(previous) and (
        bool(_FOLLOW_UP_OPENING.match(question))
        or len(own_terms) <= 1
        or any(word in _REFERRING_WORDS for word in words(question))
    )
    if not follow_up:
        return Question(question, question, tuple(own_terms), history=tuple(history))
    context_terms = tuple(term for term in terms(previous) if term not in own_terms)
    return Question(question, f"{previous} {question}", tuple(own_terms), context_terms, tuple(history))


@dataclass(frozen=True)
class Request:
    """What an adapter asks: the question as typed, the conversation so far (oldest first), passages wanted."""

    question: str
    history: tuple[Turn, ...]
    k: int


@dataclass(frozen=True)
class _Prepared:
    request: Request
    question: Question
    started: float


@dataclass(frozen=True)
class _Retrieved:
    request: Request
    retrieval: Retrieval
    started: float
    retrieved: float


class Engine:
    """Cheap to construct: the model and the index open on first use (or on `warm_up`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: ChunkStore | None = None,
        answerer: Answerer | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or create_query_embedder(settings)
        self.store = store or ChunkStore(settings, self.embedder)
        self.searcher = HybridSearcher(self.store, self.embedder)
        self.answerer = answerer or create_answerer(settings, self.embedder)
        self._chain: Runnable[Request, Answer] = (
            RunnableLambda(self._prepare).with_config(run_name="prepare")
            | RunnableLambda(self._retrieve).with_config(run_name="retrieve")
            | RunnableLambda(self._answer).with_config(run_name="answer")
        )

    def ask(self, question: str, history: Sequence[Turn] = (), k: int | None = None) -> Answer:
        """Answer one question; `history` holds the earlier turns of the conversation, oldest first."""
        if not self.searcher.snapshot().documents:
            raise EmptyIndexError()
        return self._chain.invoke(Request(question, tuple(history), k or self.settings.top_k))

    def retrieve(self, question: Question, k: int) -> Retrieval:
        """The question with its search text embedded, and the `k` passages the hybrid retriever finds for it, all
        from one snapshot of the corpus."""
        question = replace(question, vector=self.embedder.embed_query(question.search_text))
        snapshot = self.searcher.snapshot()
        retriever = HybridRetriever(searcher=self.searcher, k=k, query_vector=question.vector, snapshot=snapshot)
        hits = tuple(document.metadata["hit"] for document in retriever.invoke(question.search_text))
        return Retrieval(question, hits, snapshot)

    def warm_up(self) -> None:
        """Open the index, then load the model and the keyword index, so the first question is as fast as the
        others (and an unreachable index is reported before the model loads)."""
        self.searcher.snapshot()
        vector = self.embedder.embed_query("warm up")
        # A search (not just an embedding) also opens Chroma's vector index, which the first query would pay for.
        self.searcher.search("warm up", 1, query_vector=vector)

    def documents(self) -> list[DocumentRecord]:
        """The indexed documents as the index holds them now (never a cached list), sorted by source."""
        return sorted(self.searcher.snapshot(fresh=True).documents.values(), key=lambda record: record.source)

    def _prepare(self, request: Request) -> _Prepared:
        started = time.perf_counter()
        return _Prepared(request, prepare_question(request.question, request.history), started)

    def _retrieve(self, prepared: _Prepared) -> _Retrieved:
        retrieval = self.retrieve(prepared.question, prepared.request.k)
        return _Retrieved(prepared.request, retrieval, prepared.started, time.perf_counter())

    def _answer(self, retrieved: _Retrieved) -> Answer:
        answer = self.answerer.answer(retrieved.retrieval)
        done = time.perf_counter()
        timings = {
            "retrieve": (retrieved.retrieved - retrieved.started) * 1000,
            "answer": (done - retrieved.retrieved) * 1000,
            "total": (done - retrieved.started) * 1000,
        }
        return replace(
            answer, question=retrieved.request.question, timings_ms=timings, retrieved=retrieved.retrieval.hits
        )
