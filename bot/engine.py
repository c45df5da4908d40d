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
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda

from bot.answering import Answerer
from bot.answering.citations import quotable_sentences
from bot.answering.extractive import ExtractiveAnswerer
from bot.answering.factory import create_answerer
from bot.answering.models import AnswerModels
from bot.answering.sentences import Candidate
from bot.chronology import with_dates
from bot.config import Settings
from bot.corpus import Corpus
from bot.embeddings import Embedder, create_query_embedder
from bot.errors import CitebotError, EmptyIndexError, QuestionError
from bot.keyword import terms
from bot.links import link_citations
from bot.reading import QuestionReader
from bot.retrieval import HybridRetriever, HybridSearcher, Retrieval
from bot.store import ChunkStore
from bot.timeframe import without_time_terms
from bot.types import DEFAULT_QUOTES, MAX_QUESTION_CHARS, Answer, DocumentRecord, Question, Support, Turn

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
    if not re.search(r"[^\W_]", question):
        raise QuestionError(f"“{question[:40]}” has no words in it; ask something about the corpus")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"the question is {len(question):,} characters long; ask it in at most {MAX_QUESTION_CHARS:,}"
        )
    return question


# Words that tie a follow-up to the conversation ("and who leads the U.S. side?") and say nothing about the corpus.
_LINK = re.compile(r"^(?:(?:and|but|so|also|then|ok(?:ay)?|well|now)\b[\s,]*)+(?=\S)", re.IGNORECASE)


# A question refers back to the conversation when it opens with a link word or a fragment ("and who leads the U.S.
# side?", "what about rare earths?", "on everything or just some stuff?"), or points at something said before ("why
# him tho", "which one went the worst"), or is too short to stand alone ("when?").
_OPENS_ON_CONTEXT = re.compile(
    r"^\W*(and|but|so|also|then|ok(ay)?|well|now|what about|how about|what else|on|for|like|with|about|in|at|wait)\b"
    r"|\b(he|she|him|her|his|hers)\b",
    re.IGNORECASE,
)
_POINTS_BACK = re.compile(
    r"\b(they|them|their|theirs|it|its|this|that|these|those|there|both|each other|the same|such|the two|one|ones)\b",
    re.IGNORECASE,
)
_QUESTION_WORDS = frozenset("what who whom whose when where why how which is are was were the a an did does do".split())


def folding_handicap(question: Question) -> float | None:
    """Whether a question leans on the conversation before it (see `_OPENS_ON_CONTEXT`, `_POINTS_BACK`), so that
    earlier turns may make its answer more confident than the question alone supports; and then how much more
    confident the reading with the previous question folded in must be to win a tie of tiers:
    `FOLDED_READING_HANDICAP` when the question plainly leans on the conversation (it opens with a link word or
    a fragment, names a person only by pronoun, or is too short to stand alone: "and who leads the U.S. side?",
    "why him tho", "when?"); `WEAKLY_FOLDED_HANDICAP` when it only points back with a word like "their" or "it"
    and has words enough of its own ("which cities have hosted their meetings?" usually means the corpus's
    protagonists, whatever was asked last), so the conversation wins only with a better tier; None when it
    stands alone."""
    own = [word for word in re.findall(r"[^\W_]+", question.reading.lower()) if word not in _QUESTION_WORDS]
    if _OPENS_ON_CONTEXT.search(question.reading) or len(own) <= 2:
        return FOLDED_READING_HANDICAP
    if _POINTS_BACK.search(question.reading):
        return WEAKLY_FOLDED_HANDICAP
    return None


_TIER_RANK: dict[Support, int] = {"none": 0, "closest": 1, "answered": 2}
# The folded reading must be this much more confident to win a tie of tiers: it carries the previous question's
# words, which make any passage about the earlier topic look closer than it is.
FOLDED_READING_HANDICAP = 0.05
# A confidence is at most 1, so with this handicap the folded reading wins only by reaching a better tier.
WEAKLY_FOLDED_HANDICAP = 1.0
# ...and is at most this much more confident than the question read alone.
FOLDED_READING_GAIN = 0.3


def readings(
    text: str, history: Sequence[Turn] = (), limit: int = DEFAULT_QUOTES, reader: QuestionReader | None = None
) -> tuple[Question, ...]:
    """The ways to read a question in its conversation: on its own and, after an earlier turn, with the previous
    question folded in; "tell me more" reads as the previous question, continued. The engine keeps the reading
    the corpus supports best, so context helps "and who leads the U.S. side?" but cannot hijack "why Seoul?".
    Each is read as people write (`bot.reading`: chat shorthand spelled out, misspelled names corrected)."""
    reader = reader or QuestionReader()
    question = clean_question(text)
    history = tuple(history)
    read = reader.read(question)
    own_terms = tuple(terms(read.text))
    typed = read.changed
    previous = next((turn.question for turn in reversed(history) if not _MORE.match(turn.question)), "")
    previous_read = reader.read(previous).text if previous else ""
    if previous and _MORE.match(question):
        return (
            Question(
                question,
                previous_read,
                tuple(terms(previous_read)),
                history=history,
                limit=limit,
                more=True,
                reading=previous_read,
            ),
        )
    alone = Question(
        question, _LINK.sub("", read.text), own_terms, history=history, limit=limit, reading=read.text, typed=typed
    )
    if not previous:
        return (alone,)
    context_terms = tuple(term for term in terms(previous_read) if term not in own_terms)
    folded = Question(
        question,
        f"{previous_read} {read.text}",
        own_terms,
        context_terms,
        history,
        limit=limit,
        reading=read.text,
        typed=typed,
    )
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
        self.reader = QuestionReader(self.corpus)
        self.models = AnswerModels(self.store, settings.data_dir)
        self.model_version: str | None = None  # the trained answer model in use (None: the shipped one)
        self.corpus.listeners.append(self._check_model)
        self.searcher = HybridSearcher(self.store, self.corpus, self.embedder)
        self.extractive = ExtractiveAnswerer(embedder=self.embedder)
        self.answerer = answerer or create_answerer(settings, self.extractive)
        self._background: tuple[threading.Thread, threading.Event] | None = None
        self._chain: Runnable[Request, Answer] = (
            RunnableLambda(self._prepare).with_config(run_name="prepare")
            | RunnableLambda(self._retrieve).with_config(run_name="retrieve")
            | RunnableLambda(self._answer).with_config(run_name="answer")
        )

    def readings(self, text: str, history: Sequence[Turn] = (), limit: int | None = None) -> tuple[Question, ...]:
        """The ways this engine reads a question in its conversation (see `readings`)."""
        return readings(text, history, limit or DEFAULT_QUOTES, self.reader)

    def ask(self, question: str, history: Sequence[Turn] = (), k: int | None = None) -> Answer:
        """Answer one question; `history` holds the earlier turns of the conversation, oldest first. At most `k`
        sentences are quoted (default `DEFAULT_QUOTES`), from at least `top_k` retrieved passages."""
        self.corpus.refresh()
        if not self.corpus.count():
            raise EmptyIndexError()
        return self._chain.invoke(Request(question, tuple(history), k or DEFAULT_QUOTES))

    def retrieve(self, question: Question, k: int) -> Retrieval:
        """The question with its search text embedded, and the `k` passages the hybrid retriever finds for it, with
        the keyword index as it was then."""
        question = replace(question, vector=self.embedder.embed_query(question.search_text))
        self.corpus.refresh()
        keyword = self.corpus.keyword_view()
        retriever = HybridRetriever(searcher=self.searcher, k=k, query_vector=question.vector, keyword=keyword)
        hits = tuple(document.metadata["hit"] for document in retriever.invoke(question.search_text))
        if any(hit.published for hit in hits):  # "in May" is answered by the documents' dates, not by the quotes
            question = without_time_terms(question, datetime.now(UTC))
        return Retrieval(question, hits, keyword, self.corpus)

    def _check_model(self) -> None:
        """Answer with the model the index names (`bot.answering.models`), switching when another process trained
        a new one; a model that cannot be read is not used, and the one in use stays."""
        try:
            version = self.models.in_use()
        except CitebotError as exc:
            log.warning("cannot tell which answer model to use (%s); keeping the current one", exc)
            return
        if version == self.model_version:
            return
        try:
            scorer = self.models.scorer(version)
        except CitebotError as exc:
            kept = f"trained model {self.model_version}" if self.model_version else "shipped model"
            log.warning("cannot use the answer model %s (%s); answering with the %s", version or "shipped", exc, kept)
            return
        self.extractive.use_scorer(scorer)
        self.model_version = version
        if version:
            log.info("answering with the answer model %s, trained on this index's labels", version)

    def model_info(self) -> dict[str, Any]:
        """The answer model in use: its version (None: shipped with citebot) and what its `meta.json` says."""
        return {"version": self.model_version, "meta": self.extractive.scorer.meta}

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

    def document(self, doc_id: str) -> DocumentRecord | None:
        """One indexed document's record, as the index holds it now."""
        self.corpus.refresh(fresh=True)
        found = self.corpus.documents([doc_id]).get(doc_id)
        return found.record if found is not None else None

    def retrieve_alone(self, question: str, k: int | None = None) -> Retrieval:
        """A question read on its own, without a conversation, and its passages (`top_k` unless `k` says more)."""
        return self.retrieve(self.readings(question)[0], max(k or 0, self.settings.top_k))

    def indexed(self, doc_ids: Sequence[str]) -> set[str]:
        """Which of `doc_ids` the index holds now (one look at the index for all of them)."""
        self.corpus.refresh(fresh=True)
        return set(self.corpus.documents(list(doc_ids)))

    def passage_sentences(self, question: str, limit: int = 15) -> list[Candidate]:
        """The quotable sentences of the passages a question retrieves, best first (what an operator labels)."""
        return list(self.extractive.analyse(self.retrieve_alone(question)).ranked[:limit])

    def document_sentences(self, doc_id: str) -> list[tuple[int, int, str]]:
        """(start, end, quote) of every quotable sentence of a document, in order."""
        self.corpus.refresh()
        found = self.corpus.documents([doc_id]).get(doc_id)
        if found is None:
            return []
        return [
            (chunk.start + start, chunk.start + end, chunk.text[start:end])
            for chunk in found.chunks()
            for start, end, _ in quotable_sentences(chunk)
        ]

    def document_text(self, doc_id: str) -> tuple[str, bool] | None:
        """The text citations quote from, and whether it is complete (see `ChunkStore.document_text`)."""
        return self.store.document_text(doc_id)

    def ingesting(self) -> list[DocumentRecord]:
        """Documents being written by an ingestion right now (not yet answered from)."""
        return [record for record in self.store.documents(include_pending=True).values() if not record.ready]

    def _prepare(self, request: Request) -> _Prepared:
        started = time.perf_counter()
        return _Prepared(request, self.readings(request.question, request.history, request.k), started)

    def _retrieve(self, prepared: _Prepared) -> _Retrieved:
        # `k` caps the quotes shown; fewer passages than configured would only hide the sentence that answers
        depth = max(prepared.request.k, self.settings.top_k)
        retrievals = tuple(self.retrieve(question, depth) for question in prepared.readings)
        return _Retrieved(prepared.request, retrievals, prepared.started, time.perf_counter())

    def best_reading(self, retrievals: Sequence[Retrieval]) -> Retrieval:
        """The reading the corpus supports best: a higher tier first, then a higher confidence. A question that
        stands on its own (see `folding_handicap`), or names something the corpus never mentions ("What colour
        do Lumen moths glow?"), is read on its own: the previous question's words would only make
        passages about the earlier topic look closer than they are, and the answer more confident than the
        question supports."""
        handicap = folding_handicap(retrievals[0].question)
        if len(retrievals) == 1 or handicap is None:
            return retrievals[0]
        alone = self.extractive.analyse(retrievals[0])
        if not alone.grounding.grounded:
            return retrievals[0]
        # A question that refers back may gain from the conversation, within a bound: the earlier words make any
        # passage about the earlier topic look closer than it is, so the folded reading is never more than
        # `FOLDED_READING_GAIN` more confident than the question alone.
        cap = alone.confidence + FOLDED_READING_GAIN
        judged = [(_TIER_RANK[self.extractive.support(alone)], alone.confidence, 0, retrievals[0])]
        for order, retrieval in enumerate(retrievals[1:], start=1):
            capped = replace(retrieval, confidence_cap=cap)
            analysis = self.extractive.analyse(capped)
            tier = _TIER_RANK[self.extractive.support(analysis)]
            judged.append((tier, analysis.confidence - handicap * order, -order, capped))
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
