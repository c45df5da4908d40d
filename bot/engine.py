"""The engine: one LangChain (LCEL) retrieval chain that turns a question, with the conversation so far, into an
`Answer`. Every adapter (CLI, REPL, Discord) asks through it and never reaches past it.

    prepare (the question alone and, after an earlier turn, with it folded in) -> retrieve (hybrid, per reading)
    -> answer (the best-supported reading; extractive | LLM) -> Answer
    (then the date steps of bot/chronology.py: dated passages for date questions, quotes in date order)

The engine is also the composition root: it builds the embedder, the store, the searcher and the answerer from
the settings (or takes them ready-made, as the tests do), and constructing it touches neither model nor index.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from langchain_core.runnables import Runnable, RunnableLambda

from bot.answering import Answerer
from bot.answering.extractive import ExtractiveAnswerer
from bot.answering.factory import create_answerer
from bot.chronology import with_dates
from bot.config import Settings
from bot.corpus import Corpus
from bot.embeddings import Embedder, create_query_embedder
from bot.errors import EmptyIndexError, QuestionError
from bot.keyword import terms
from bot.links import link_citations
from bot.retrieval import HybridRetriever, HybridSearcher, Retrieval
from bot.store import ChunkStore
from bot.timeframe import without_time_terms
from bot.types import MAX_QUESTION_CHARS, Answer, DocumentRecord, Question, Support, Turn

log = logging.getLogger(__name__)

# "tell me more", "go on", "what else?": quote what the conversation has not quoted yet.
_MORE = re.compile(
    r"^\s*(and\s+)?(tell me more|more|say more|go on|continue|keep going|what else|anything else|"
    r"elaborate|more please|and then|what more|more details?)\b[\s?.!]*(please)?[\s?.!]*$",
    re.IGNORECASE,
)


def clean_question(text: str) -> str:
    """The question with whitespace collapsed; empty or over-long questions are refused with a reason."""
    question = " ".join(text.split())
    if not question:
        raise QuestionError("the question is empty; ask something about the corpus")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionError(f"the question is {len(question)} characters long; keep it under {MAX_QUESTION_CHARS}")
    return question


# Words that tie a follow-up to the conversation ("and who leads the U.S. side?") and say nothing about the corpus.
_LINK = re.compile(r"^(?:(?:and|but|so|also|then|ok(?:ay)?|well|now)\b[\s,]*)+(?=\S)", re.IGNORECASE)


_TIER_RANK: dict[Support, int] = {"none": 0, "closest": 1, "answered": 2}
# The folded reading must be this much more confident to win a tie of tiers: it carries the previous question's
# words, which make any passage about the earlier topic look closer than it is.
FOLDED_READING_HANDICAP = 0.05


def readings(text: str, history: Sequence[Turn] = (), limit: int = 5) -> tuple[Question, ...]:
    """The ways to read a question in its conversation: on its own and, after an earlier turn, with the previous
    question folded in; "tell me more" reads as the previous question, continued. The engine keeps the reading
    the corpus supports best, so context helps "and who leads the U.S. side?" but cannot hijack "why Seoul?"."""
    question = clean_question(text)
    history = tuple(history)
    own_terms = tuple(terms(question))
    previous = next((turn.question for turn in reversed(history) if not _MORE.match(turn.question)), "")
    if previous and _MORE.match(question):
        return (Question(question, previous, tuple(terms(previous)), history=history, limit=limit, more=True),)
    alone = Question(question, _LINK.sub("", question), own_terms, history=history, limit=limit)
    if not previous:
        return (alone,)
    context_terms = tuple(term for term in terms(previous) if term not in own_terms)
    folded = Question(question, f"{previous} {question}", own_terms, context_terms, history, limit=limit)
    return (alone, folded)


@dataclass(frozen=True)
class Request:
    """What an adapter asks: the question as typed, the conversation so far (oldest first), passages wanted."""

    question: str
    history: tuple[Turn, ...]
    k: int


@dataclass(frozen=True)
class _Prepared:
    request: Request
    readings: tuple[Question, ...]
    started: float


@dataclass(frozen=True)
class _Retrieved:
    request: Request
    retrievals: tuple[Retrieval, ...]
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
        self.corpus = Corpus(self.store, settings.data_dir)
        self.searcher = HybridSearcher(self.store, self.corpus, self.embedder)
        self.extractive = ExtractiveAnswerer(embedder=self.embedder)
        self.answerer = answerer or create_answerer(settings, self.extractive)
        self._background: tuple[threading.Thread, threading.Event] | None = None
        self._chain: Runnable[Request, Answer] = (
            RunnableLambda(self._prepare).with_config(run_name="prepare")
            | RunnableLambda(self._retrieve).with_config(run_name="retrieve")
            | RunnableLambda(self._answer).with_config(run_name="answer")
        )

    def ask(self, question: str, history: Sequence[Turn] = (), k: int | None = None) -> Answer:
        """Answer one question; `history` holds the earlier turns of the conversation, oldest first. At most `k`
        sentences are quoted (default `top_k`), from at least `top_k` retrieved passages."""
        self.corpus.refresh()
        if not self.corpus.count():
            raise EmptyIndexError()
        return self._chain.invoke(Request(question, tuple(history), k or self.settings.top_k))

    def retrieve(self, question: Question, k: int) -> Retrieval:
        """The question with its search text embedded, and the `k` passages the hybrid retriever finds for it, with
        the keyword index as it was then."""
        question = replace(question, vector=self.embedder.embed_query(question.search_text))
        keyword = self.corpus.keyword_view()
        retriever = HybridRetriever(searcher=self.searcher, k=k, query_vector=question.vector, keyword=keyword)
        hits = tuple(document.metadata["hit"] for document in retriever.invoke(question.search_text))
        if any(hit.published for hit in hits):  # "in May" is answered by the documents' dates, not by the quotes
            question = without_time_terms(question, datetime.now(UTC))
        return Retrieval(question, hits, keyword, self.corpus)

    def warm_up(self) -> None:
        """Open the index and its local mirror, then load the models, so the first question is as fast as the
        others (and an unreachable index is reported before any model loads)."""
        self.corpus.refresh()
        self.extractive.warm_up()
        vector = self.embedder.embed_query("warm up")
        # A search (not just an embedding) also opens Chroma's vector index, which the first query would pay for.
        self.searcher.search("warm up", 1, query_vector=vector)

    def start_background(self) -> None:
        """For a long-running process: embed the corpus's words this machine has no vector for yet, in a
        background thread (questions embed the few they need meanwhile)."""
        if self._background is not None:
            return
        stop = threading.Event()
        thread = threading.Thread(target=self._warm_words, args=(stop,), name="citebot-word-vectors", daemon=True)
        self._background = (thread, stop)
        thread.start()

    def _warm_words(self, stop: threading.Event) -> None:
        try:
            self.corpus.warm_words(self.embedder, stop)
        except Exception:  # a cache: questions embed what they need without it
            log.warning("stopped embedding the corpus's words in the background", exc_info=True)

    def close(self) -> None:
        """Stop the background work and release the mirror's files."""
        if self._background is not None:
            thread, stop = self._background
            stop.set()
            thread.join(timeout=5)
            self._background = None
        self.corpus.close()

    def documents(self) -> list[DocumentRecord]:
        """The indexed documents as the index holds them now (never a cached list), sorted by source."""
        self.corpus.refresh(fresh=True)
        return sorted(self.corpus.records(), key=lambda record: record.source)

    def document_text(self, doc_id: str) -> tuple[str, bool] | None:
        """The text citations quote from, and whether it is complete (see `ChunkStore.document_text`)."""
        return self.store.document_text(doc_id)

    def ingesting(self) -> list[DocumentRecord]:
        """Documents being written by an ingestion right now (not yet answered from)."""
        return [record for record in self.store.documents(include_pending=True).values() if not record.ready]

    def _prepare(self, request: Request) -> _Prepared:
        started = time.perf_counter()
        return _Prepared(request, readings(request.question, request.history, request.k), started)

    def _retrieve(self, prepared: _Prepared) -> _Retrieved:
        # `k` caps the quotes shown; fewer passages than configured would only hide the sentence that answers
        depth = max(prepared.request.k, self.settings.top_k)
        retrievals = tuple(self.retrieve(question, depth) for question in prepared.readings)
        return _Retrieved(prepared.request, retrievals, prepared.started, time.perf_counter())

    def best_reading(self, retrievals: Sequence[Retrieval]) -> Retrieval:
        """The reading the corpus supports best: a higher tier first, then a higher confidence. A question that
        names something the corpus never mentions ("What colour do Lumen moths glow?") is read on its own: the
        previous question's words would only make unrelated passages look close."""
        if len(retrievals) == 1:
            return retrievals[0]
        judged = []
        for order, retrieval in enumerate(retrievals):
            analysis = self.extractive.analyse(retrieval)
            if order == 0 and not analysis.grounding.grounded:
                return retrieval
            tier = _TIER_RANK[self.extractive.support(analysis)]
            judged.append((tier, analysis.confidence - FOLDED_READING_HANDICAP * order, -order, retrieval))
        return max(judged, key=lambda item: item[:3])[3]

    def _answer(self, retrieved: _Retrieved) -> Answer:
        retrieval = self.best_reading(retrieved.retrievals)
        answer = with_dates(self.answerer.answer(retrieval), retrieval)
        done = time.perf_counter()
        timings = {
            "retrieve": (retrieved.retrieved - retrieved.started) * 1000,
            "answer": (done - retrieved.retrieved) * 1000,
            "total": (done - retrieved.started) * 1000,
        }
        answered = replace(answer, question=retrieved.request.question, timings_ms=timings, retrieved=retrieval.hits)
        return link_citations(answered, self.settings.public_url)
