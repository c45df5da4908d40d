"""The default answerer: no LLM, no key. It picks the sentences that answer the question and quotes them.

Every quotable sentence of the retrieved passages is a candidate (`bot.answering.sentences`); a ranker learned on
development data orders them, and a calibrated model gives the probability that the best one answers
(`bot.answering.scorer`). The decision has three tiers:

- `answered`: confident, and every salient part of the question is mentioned by the passages: the best
  sentences, best first.
- `closest`: on topic, but not confident, or a salient part of the question is mentioned nowhere
  (`bot.answering.grounding`): "The corpus doesn't say exactly; the closest passages are ..." with the best few
  sentences quoted (up to the question's limit), best first.
- `none`: nothing relevant: "The corpus doesn't say."

Quotes stay verbatim (`document_text[start:end]`); only the answer text may name who a leading "He" is.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.answering.citations import citation, decline, with_markers
from bot.answering.grounding import Grounding, GroundingChecker, describe_missing
from bot.answering.scorer import SentenceScorer
from bot.answering.sentences import Candidate, DocumentTermsCache, SentenceVectors, candidates
from bot.answering.words import WordVectors
from bot.embeddings import Embedder
from bot.keyword import terms
from bot.retrieval import Retrieval
from bot.types import NO_ANSWER, Answer, Question, Support


@dataclass(frozen=True)
class ExtractiveSettings:
    """How much an answer quotes. Chosen on the development data (SQuAD's development split and the seed sets)."""

    # Another sentence is quoted only while its ranker score is within this margin of the best one's, it adds
    # terms the chosen ones lack, and the quote stays short.
    extra_sentence_margin: float = 2.0
    max_quote_chars: int = 600
    # Not sure of the best sentence: show the few closest ones, a wider margin (the answer is often the second).
    closest_margin: float = 3.0


# Enough for every reading of a question (alone, folded in) while a few questions are answered at once.
_ANALYSES_KEPT = 8


@dataclass(frozen=True)
class Analysis:
    """The candidates of one question, best first, with their scores, the confidence that the first answers,
    and what the passages do not mention."""

    ranked: tuple[Candidate, ...]
    scores: tuple[float, ...]
    confidence: float
    grounding: Grounding

    @property
    def best(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None


class ExtractiveAnswerer:
    """`embedder` gives sentence vectors for indexes built before ingestion stored them, and word vectors for the
    grounding check; without one (unit tests), both fall back to what needs no model."""

    def __init__(
        self,
        settings: ExtractiveSettings | None = None,
        embedder: Embedder | None = None,
        scorer: SentenceScorer | None = None,
    ) -> None:
        self.settings = settings or ExtractiveSettings()
        self.scorer = scorer or SentenceScorer()
        self.vectors = SentenceVectors(embedder)
        self.words = WordVectors(embedder)
        self.documents = DocumentTermsCache()
        self.grounding = GroundingChecker(self.words)
        # The last few analyses, by retrieval: the engine analyses each reading of a question to choose one, and
        # answering the chosen reading (or an LLM's confidence in it) must not analyse it again.
        self._analysed: OrderedDict[int, tuple[weakref.ref[Retrieval], Analysis]] = OrderedDict()
        self._analysed_lock = threading.Lock()

    def warm_up(self) -> None:
        self.scorer.warm_up()
        self.grounding.warm_up()

    def use_scorer(self, scorer: SentenceScorer) -> None:
        """Answer with another model from now on (analyses made with the old one are forgotten)."""
        with self._analysed_lock:
            self.scorer = scorer
            self._analysed.clear()

    def candidates(self, retrieval: Retrieval) -> tuple[list[Candidate], Grounding]:
        """Every sentence of the passages with its features (unscored), and what the passages do not mention."""
        grounding = self.grounding.check(retrieval)
        sentences = self.vectors.get(retrieval.hits)
        return candidates(retrieval, sentences, grounding, self.words, self.documents), grounding

    def analyse(self, retrieval: Retrieval) -> Analysis:
        """The candidates ranked and the confidence that the best answers; computed once per retrieval."""
        with self._analysed_lock:
            kept = self._analysed.get(id(retrieval))
        if kept is not None and kept[0]() is retrieval:
            return kept[1]
        analysis = self._analyse(retrieval)
        with self._analysed_lock:
            self._analysed[id(retrieval)] = (weakref.ref(retrieval), analysis)
            while len(self._analysed) > _ANALYSES_KEPT:
                self._analysed.popitem(last=False)
        return analysis

    def _analyse(self, retrieval: Retrieval) -> Analysis:
        found, grounding = self.candidates(retrieval)
        if not found:
            return Analysis((), (), 0.0, grounding)
        matrix = np.stack([candidate.features for candidate in found])
        scores = self.scorer.rank(matrix)
        confidence = min(self.scorer.confidence(matrix, scores), retrieval.confidence_cap)
        order = np.argsort(-scores, kind="stable")
        return Analysis(tuple(found[i] for i in order), tuple(float(scores[i]) for i in order), confidence, grounding)

    def support(self, analysis: Analysis) -> Support:
        """The tier the analysis earns (see the module docstring)."""
        best = analysis.best
        if best is None:
            return "none"
        thresholds = self.scorer.thresholds
        if analysis.confidence >= thresholds.answer and analysis.grounding.grounded:
            return "answered"
        if best.hit.similarity >= thresholds.relevant or analysis.confidence >= thresholds.answer:
            return "closest"
        return "none"

    def answer(self, retrieval: Retrieval) -> Answer:
        return self._respond(retrieval, at_most_closest=False)

    def decline(self, retrieval: Retrieval) -> Answer:
        """An answer that is at most `closest`: for when something else (an LLM) judged the passages not to answer."""
        return self._respond(retrieval, at_most_closest=True)

    def _respond(self, retrieval: Retrieval, at_most_closest: bool) -> Answer:
        question = retrieval.question
        analysis = self.analyse(retrieval)
        more = question.more and not at_most_closest
        given = {quoted for turn in question.history for quoted in turn.quoted} if more else set()
        kept = [
            (candidate, score)
            for candidate, score in zip(analysis.ranked, analysis.scores, strict=True)
            if (candidate.hit.chunk.doc_id, candidate.start) not in given
        ]
        ranked, scores = [candidate for candidate, _ in kept], [score for _, score in kept]
        support = self.support(analysis) if ranked else "none"
        if support == "none":
            return decline(question.text, analysis.confidence, _missing_reason(analysis.grounding, question))
        confidence = analysis.confidence
        if more:
            # What is left after the answer already given: passages near the question, with the confidence
            # that the best of them answers it.
            matrix = np.stack([candidate.features for candidate in ranked])
            confidence = min(self.scorer.confidence(matrix, np.asarray(scores)), retrieval.confidence_cap)
        if at_most_closest or more:
            support = "closest"
        limit = max(1, question.limit)
        s = self.settings
        if more:
            chosen = self._more(ranked, limit)
        elif support == "answered":
            chosen = self._choose(ranked, scores, limit, s.extra_sentence_margin)
        else:
            chosen = self._choose(ranked, scores, limit, s.closest_margin)
        return compose_answer(question, chosen, support, confidence, analysis.grounding, more=more)

    def _choose(
        self, ranked: Sequence[Candidate], scores: Sequence[float], limit: int, margin: float
    ) -> list[Candidate]:
        """The best sentence, then others within `margin` of its score that add something, best first."""
        chosen = [ranked[0]]
        covered = set(terms(ranked[0].quote))
        for candidate, score in zip(ranked[1:], scores[1:], strict=True):
            if len(chosen) >= limit or score < scores[0] - margin:
                break
            if sum(len(c.quote) for c in chosen) + len(candidate.quote) > self.settings.max_quote_chars:
                continue
            own = set(terms(candidate.quote))
            if not own - covered or _same_sentence(candidate, chosen):
                continue  # says nothing the chosen sentences did not
            chosen.append(candidate)
            covered |= own
        return chosen

    def _more(self, ranked: Sequence[Candidate], limit: int) -> list[Candidate]:
        """ "tell me more": the next best sentences not yet given, without saying the same thing twice; those
        that stand on their own first ("That tells you …" means little away from the sentence before it)."""
        chosen: list[Candidate] = []
        for candidate in sorted(ranked, key=lambda candidate: bool(_REFERS_BACK.match(candidate.quote))):
            if len(chosen) >= limit:
                break
            if not _same_sentence(candidate, chosen):
                chosen.append(candidate)
        return chosen


# Two sentences say the same thing when their terms overlap this much (Jaccard), or when one's terms are mostly in
# the other's and their meanings are this close: a "Key Facts" bullet and the body sentence it summarises.
SAME_TERMS = 0.7
SAME_CONTAINED, SAME_MEANING = 0.6, 0.72


def _same_sentence(candidate: Candidate, chosen: Sequence[Candidate]) -> bool:
    """The same statement as one already chosen: the same text, nearly the same terms, or most of the terms of the
    shorter one and a close meaning (a summary bullet that repeats a sentence of the body)."""
    own = set(terms(candidate.quote))
    for other in chosen:
        theirs = set(terms(other.quote))
        if candidate.quote == other.quote:
            return True
        if not own or not theirs or any(term[:1].isdigit() for term in own ^ theirs):
            continue  # other figures make another statement ("pilot 11358 reported ..." / "pilot 31337 reported ...")
        shared = len(own & theirs)
        if shared / len(own | theirs) >= SAME_TERMS:
            return True
        if candidate.vector is not None and other.vector is not None:
            meaning = float(np.asarray(candidate.vector, np.float32) @ np.asarray(other.vector, np.float32))
            if shared / min(len(own), len(theirs)) >= SAME_CONTAINED and meaning >= SAME_MEANING:
                return True
    return False


def _missing_reason(grounding: Grounding, question: Question) -> str:
    return f"it doesn't mention {missing_as_typed(grounding, question)}" if grounding.salient else ""


def missing_as_typed(grounding: Grounding, question: Question) -> str:
    """What the passages don't mention, in the words the question was typed with (`describe_missing`)."""
    return describe_missing([question.as_typed(word).lower() for word in grounding.salient], question.text)


# -- the answer text --------------------------------------------------------------------------------------------

_PERSON_PRONOUN = re.compile(r"^(He|She|His|Her)\b")
# A sentence opening with one of these words points at the one before it.
_REFERS_BACK = re.compile(r"^(It|Its|That|This|These|Those|They|Their|Them|Such)\b")
# A name: two or more capitalised words ("He Lifeng", "Scott Bessent"), optionally after a title.
_NAME = re.compile(r"\b([A-Z][a-z]+(?:[ -][A-Z][a-z]+)+)\b")
_NOT_NAMES = frozenset("The This That These Those It In On At For And But When Why What How Key Quick".split())


def referent(candidate: Candidate) -> str:
    """Who a sentence opening with "He"/"She" is about: the last name in the sentence before it, else in its
    heading, else in the document title; "" when none is found."""
    if not _PERSON_PRONOUN.match(candidate.quote):
        return ""
    chunk = candidate.hit.chunk
    for text in (candidate.previous, chunk.heading.rsplit(" > ", 1)[-1], chunk.title):
        names = [name for name in _NAME.findall(text) if name.split()[0] not in _NOT_NAMES]
        if names:
            return names[-1]
    return ""


def with_referent(candidate: Candidate) -> str:
    """The quote for the answer text, with a leading pronoun's referent named: "He [He Lifeng] is ..."."""
    name = referent(candidate)
    if not name:
        return candidate.quote
    pronoun = _PERSON_PRONOUN.match(candidate.quote)
    assert pronoun is not None
    return f"{pronoun.group(0)} [{name}]{candidate.quote[pronoun.end() :]}"


def heading_context(candidate: Candidate) -> str | None:
    """The heading a quote only makes sense under: the first sentence under a heading, when it is short ("Probably
    not by itself." under "Is this a breakthrough?") or replies to a heading that asks ("Yes, for now: ..."). A
    sentence that stands on its own ("Because Seoul works as neutral staging ground ...") is quoted alone."""
    heading = candidate.hit.chunk.heading.rsplit(" > ", 1)[-1].strip()
    if not candidate.after_heading or not heading:
        return None
    if len(candidate.quote.split()) < SHORT_UNDER_HEADING:
        return heading
    return heading if heading.endswith("?") and _REPLY.match(candidate.quote) else None


# A sentence right under a heading with fewer words than this leans on the heading ("Probably not by itself.").
SHORT_UNDER_HEADING = 8
# The opening of a reply to a yes/no heading: it means little without the question.
_REPLY = re.compile(r"(yes|no|not|probably|possibly|maybe|perhaps|likely|unlikely|partly|hardly|only)\b", re.I)


def _as_written(candidate: Candidate) -> str:
    """The sentence for the answer text: its heading in brackets when it needs one, its pronoun's referent named."""
    context = heading_context(candidate)
    text = with_referent(candidate)
    return f"[{context}] {text}" if context else text


def compose_answer(
    question: Question,
    chosen: Sequence[Candidate],
    support: Support,
    confidence: float,
    grounding: Grounding,
    more: bool = False,
) -> Answer:
    """The answer text and its citations: the quotes themselves for `answered`, an honest lead for `closest`."""
    citations = tuple(
        citation(n, c.hit, c.start, c.end, c.quote, heading_context(c)) for n, c in enumerate(chosen, start=1)
    )
    sentences = [with_markers(_as_written(c), [n]) for n, c in enumerate(chosen, start=1)]
    if support == "answered" or more:
        text = " ".join(sentences)  # "tell me more" goes on quoting; its tier still says how sure it is
    else:
        missing = missing_as_typed(grounding, question)
        lead = f"The corpus doesn't mention {missing}" if missing else f"{NO_ANSWER[:-1]} exactly"
        noun = "passage is" if len(chosen) == 1 else "passages are"
        text = f"{lead}; the closest {noun}: " + " ".join(f"“{sentence}”" for sentence in sentences)
    return Answer(question=question.text, text=text, citations=citations, support=support, confidence=confidence)
