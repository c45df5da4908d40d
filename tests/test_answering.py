"""The extractive answerer's parts: grounding, candidate features, the referent of a leading pronoun, readings of a
follow-up, and answers that respect k, never repeat a sentence, and go on with "tell me more"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bot.answering.citations import quotable_sentences
from bot.answering.extractive import ExtractiveAnswerer, compose_answer, referent, with_referent
from bot.answering.grounding import Grounding, GroundingChecker, describe_missing
from bot.answering.sentences import FEATURES, Candidate, candidates, embed_sentences, offers_answer_type
from bot.answering.words import WordVectors
from bot.config import Settings
from bot.embeddings import HashingEmbedder, create_embedder
from bot.engine import Engine, readings
from bot.keyword import KeywordIndex, terms
from bot.render import render_answer
from bot.retrieval import Retrieval
from bot.types import Answer, Chunk, Question, ScoredChunk, Turn
from ingest.loaders import load
from ingest.pipeline import IngestPipeline
from ingest.splitter import Splitter
from tests.conftest import SEED_CORPUS

SEOUL = (SEED_CORPUS / "china-sends-he-lifeng-to-seoul.txt").read_text(encoding="utf-8")


def chunk_of(text: str, heading: str = "", title: str = "China sends He Lifeng to Seoul") -> ScoredChunk:
    start = SEOUL.index(text)
    chunk = Chunk(
        id=f"c{start}", doc_id="seoul", text=text, title=title, start=start, end=start + len(text), heading=heading
    )
    return ScoredChunk(chunk=chunk, score=1.0, similarity=0.5, source="corpus/seoul.txt")


def question(text: str, history: tuple[Turn, ...] = ()) -> Question:
    return Question(text, text, tuple(terms(text)), history=history)


def retrieval(asked: Question, hits: list[ScoredChunk], corpus: list[str] | None = None) -> Retrieval:
    """What retrieval would hand the answerer: the passages, and a corpus of `corpus` texts (default: the hits)."""
    keyword = KeywordIndex.from_texts(corpus if corpus is not None else [hit.chunk.text for hit in hits])
    return Retrieval(asked, tuple(hits), keyword.view())


def grounding_of(asked: Question, hits: list[ScoredChunk]) -> Grounding:
    return GroundingChecker(WordVectors(HashingEmbedder())).check(retrieval(asked, hits))


# -- grounding ----------------------------------------------------------------------------------------------------


def test_a_salient_term_no_passage_mentions_is_missing() -> None:
    hits = [
        chunk_of(
            "Because Seoul works as neutral staging ground and a practical stop on the way to the Beijing summit."
        ),
        chunk_of("Bessent said he would stop there before continuing on to Beijing"),
    ]
    asked = question("Which airline did Bessent fly to Seoul?")
    grounding = grounding_of(asked, hits)
    assert "airline" in grounding.salient and not grounding.grounded
    assert "seoul" not in grounding.missing  # the passage says it
    assert describe_missing(grounding.salient, asked.text) == "an airline"


def test_common_words_and_words_the_passages_use_are_not_salient() -> None:
    hits = [chunk_of("He is Beijing’s top economic negotiator for this relationship.", heading="Why send He Lifeng?")]
    grounding = grounding_of(question("what's the deal with that guy Lifeng?"), hits)
    assert grounding.grounded  # "deal" is scaffolding, "guy" is common English, "Lifeng" is in the heading


def test_names_and_numbers_are_salient_however_common() -> None:
    hits = [chunk_of("China said Vice Premier He Lifeng will lead its delegation on May 12-13, and Scott Bessent")]
    grounding = grounding_of(question("Did Bessent meet Kishida in 2024?"), hits)
    assert set(grounding.salient) == {"kishida", "2024"}
    assert describe_missing(grounding.salient, "Did Bessent meet Kishida in 2024?") == "Kishida or 2024"


def test_a_missing_name_is_quoted_as_the_question_wrote_it() -> None:
    assert describe_missing(["pride", "prejudice"], "Who wrote Pride and Prejudice?") == "“Pride and Prejudice”"
    assert describe_missing(["bank", "england"], "what did the bank of england say") == "“bank of england”"


# -- candidates -----------------------------------------------------------------------------------------------------


def test_every_quotable_sentence_is_a_candidate_with_verbatim_offsets() -> None:
    text = SEOUL[SEOUL.index("### Why send He Lifeng?") : SEOUL.index("(usnews.com)") + len("(usnews.com)")]
    hit = chunk_of(text, heading="Why send He Lifeng?")
    embedder = HashingEmbedder()
    asked = question("How important is He Lifeng?")
    asked = Question(asked.text, asked.search_text, asked.terms, vector=embedder.embed_query(asked.text))
    sentences = embed_sentences([hit.chunk], embedder)
    found = candidates(retrieval(asked, [hit]), sentences, Grounding(), WordVectors(embedder))
    assert [c.quote for c in found] == [
        "He is Beijing’s top economic negotiator for this relationship.",
        SEOUL[SEOUL.index("He also sits") : SEOUL.index("technical chatter.") + len("technical chatter.")],
        SEOUL[SEOUL.index("When China sends He") : SEOUL.index("in advance.") + len("in advance.")],
    ]
    for c in found:
        assert SEOUL[c.start : c.end] == c.quote
        assert c.features.shape == (len(FEATURES),)
    assert found[1].previous == found[0].quote
    assert found[0].features[FEATURES.index("pronoun")] == 1.0
    assert found[0].features[FEATURES.index("after_heading")] == 1.0


def test_answer_types() -> None:
    assert offers_answer_type(question("When will they meet?"), "They meet on May 12-13.") == 1
    assert offers_answer_type(question("When will they meet?"), "They meet in Seoul.") == -1
    assert offers_answer_type(question("How many cities hosted talks?"), "Four cities hosted talks.") == 1
    assert offers_answer_type(question("Why Seoul?"), "Because it is neutral.") == 1
    assert offers_answer_type(question("Why Seoul?"), "Seoul hosts the talks.") == -1
    assert offers_answer_type(question("Tell me about Seoul"), "Seoul hosts the talks.") == 0


# -- the answer text ------------------------------------------------------------------------------------------------


def candidate(quote: str, previous: str = "", heading: str = "", title: str = "") -> Candidate:
    hit = chunk_of(quote, heading=heading, title=title)
    return Candidate(hit, 0, 0, hit.chunk.start, hit.chunk.end, quote, previous, False, None, np.zeros(len(FEATURES)))


def test_a_leading_he_names_its_referent_in_the_text_only() -> None:
    he = candidate("He is Beijing’s top economic negotiator for this relationship.", heading="Why send He Lifeng?")
    assert referent(he) == "He Lifeng"
    assert with_referent(he) == "He [He Lifeng] is Beijing’s top economic negotiator for this relationship."
    assert he.quote.startswith("He is")  # the quote itself stays verbatim
    nobody = candidate(
        "Because Seoul works as neutral staging ground and a practical stop on the way to the Beijing summit."
    )
    assert referent(nobody) == "" and with_referent(nobody) == nobody.quote


def test_tell_me_more_quotes_sentences_that_stand_on_their_own_first() -> None:
    ranked = [
        candidate("That tells you this is not a routine working session."),
        candidate("It is to clear the brush before Xi Jinping and Donald Trump sit down in Beijing later this week."),
        candidate("Bessent’s own travel plan makes the hierarchy obvious — Tokyo, then Seoul for talks with He, then"),
    ]
    chosen = ExtractiveAnswerer()._more(ranked, limit=2)
    assert [c.quote[:5] for c in chosen] == ["Besse", "That "]


# -- readings of a question in its conversation ----------------------------------------------------------------------


def test_a_follow_up_is_read_alone_and_with_the_previous_question() -> None:
    history = (Turn("Who leads China's delegation in Seoul?"),)
    alone, folded = readings("and who leads the U.S. side?", history)
    assert alone.text == "and who leads the U.S. side?" and alone.search_text == "who leads the U.S. side?"
    assert folded.search_text.startswith("Who leads China's delegation") and "china" in folded.context_terms
    assert readings("why Seoul?") == (question("why Seoul?"),)


@pytest.mark.parametrize("more", ["tell me more", "Go on.", "what else?", "anything else", "more please"])
def test_tell_me_more_continues_the_previous_question(more: str) -> None:
    history = (Turn("why Seoul?", "Because ... [1].", (("seoul", 1503),)), Turn("tell me more"))
    (reading,) = readings(more, history)
    assert reading.more and reading.search_text == "why Seoul?"


# -- through the engine (hashing embedder: fast, no model) -----------------------------------------------------------


def test_k_bounds_the_citations_shown(engine: Engine) -> None:
    for k in (1, 2, 3):
        answer = engine.ask("What did Bessent praise in Davos, and where did the talks begin?", k=k)
        assert len(answer.citations) <= k


def test_a_lower_k_shows_fewer_quotes_from_the_same_passages(engine: Engine) -> None:
    """`:k 1` is the best quote of the full answer, not the best quote of the best passage alone."""
    question = "What did Bessent praise in Davos, and where did the talks begin?"
    full, one = engine.ask(question), engine.ask(question, k=1)
    assert len(one.retrieved) == len(full.retrieved) == engine.settings.top_k
    assert one.citations[0].quote == full.citations[0].quote and len(one.citations) == 1


def test_no_sentence_is_quoted_twice_and_more_goes_on(engine: Engine) -> None:
    first = engine.ask("What did Bessent say about the talks in Davos?")
    quotes = [c.quote for c in first.citations]
    assert len(quotes) == len(set(quotes))
    more = engine.ask("tell me more", history=[first.turn()])
    assert more.citations
    assert not {(c.doc_id, c.start) for c in more.citations} & {(c.doc_id, c.start) for c in first.citations}
    again = engine.ask("go on", history=[first.turn(), more.turn()])
    given = {(c.doc_id, c.start) for c in first.citations + more.citations}
    assert not {(c.doc_id, c.start) for c in again.citations} & given


def test_markup_never_appears_in_a_quote(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "moths.md").write_text(
        "# Lumen moths\n\n## Conservation\n\nLumen moths are protected in three national parks.\n\n"
        "## Light\n\nTheir wings glow a faint green at dusk.\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([Path("docs")])
    for asked in ("conservation of lumen moths", "what colour do lumen moths glow?", "Conservation"):
        for citation in engine.ask(asked).citations:
            assert "#" not in citation.quote


def test_an_unrelated_earlier_question_does_not_change_the_reading(engine: Engine) -> None:
    alone = engine.ask("why Seoul?")
    after_moths = engine.ask("why Seoul?", history=[engine.ask("What colour do Lumen moths glow?").turn()])
    assert [c.quote for c in after_moths.citations] == [c.quote for c in alone.citations]


# -- quotes that read well ------------------------------------------------------------------------------------------


def test_headings_are_never_quoted() -> None:
    """ "Key Facts" opens the Davos article, where no title or markup says it is a heading."""
    davos = load(SEED_CORPUS / "bessent-meets-he-lifeng-in-davos.txt")
    splitter = Splitter(HashingEmbedder().count_tokens)
    quoted = [chunk.text[a:b] for chunk in splitter.split(davos) for a, b, _ in quotable_sentences(chunk)]
    for heading in ("Key Facts", "Quick Summary", "The Davos Dialogue", "A Pattern of Engagement"):
        assert heading not in quoted
    assert any(quote.startswith("US Treasury Secretary Scott Bessent met") for quote in quoted)


@pytest.mark.model
def test_one_statement_is_quoted_once() -> None:
    """A "Key Facts" bullet and the body sentence it summarises say the same thing: the second gives way to a
    sentence that adds something."""
    davos = (SEED_CORPUS / "bessent-meets-he-lifeng-in-davos.txt").read_text(encoding="utf-8")
    embedder = create_embedder()

    def said(quote: str) -> Candidate:
        start = davos.index(quote)
        chunk = Chunk(id=f"d{start}", doc_id="davos", text=quote, title="Davos", start=start, end=start + len(quote))
        hit = ScoredChunk(chunk=chunk, score=1.0, similarity=0.5, source="corpus/davos.txt")
        vector = embedder.embed_query(quote)
        return Candidate(hit, 0, 0, start, start + len(quote), quote, "", False, vector, np.zeros(len(FEATURES)))

    bullet = said(
        "Secretary Bessent specifically praised progress on trade matters involving soybeans and rare earths during"
        " their Davos discussion."
    )
    body = said(
        "During the Davos discussion, Secretary Bessent specifically highlighted progress on two critical commodity"
        " categories: soybeans and rare earths."
    )
    other = said("These sectors represent significant components of bilateral trade and have been focal points in")
    chosen = ExtractiveAnswerer()._choose([bullet, body, other], [3.0, 2.9, 2.8], limit=3, margin=2.0)
    assert [c.quote for c in chosen] == [bullet.quote, other.quote]


def test_a_quote_that_leans_on_its_heading_shows_it_beside_the_quote() -> None:
    hit = chunk_of("Probably not by itself.", heading="What matters > Is this a breakthrough?")
    leaning = Candidate(
        hit, 0, 0, hit.chunk.start, hit.chunk.end, hit.chunk.text, "", True, None, np.zeros(len(FEATURES))
    )
    answer = compose_answer(question("is it a breakthrough?"), [leaning], "answered", 0.8, Grounding())
    assert answer.text == "[Is this a breakthrough?] Probably not by itself [1]."
    [citation] = answer.citations
    assert citation.quote == "Probably not by itself." and citation.context == "Is this a breakthrough?"
    assert citation.to_json()["context"] == "Is this a breakthrough?"
    out = Console(width=100, record=True, force_terminal=False)
    render_answer(answer, out)
    assert "under “Is this a breakthrough?”" in out.export_text()


def test_the_corpus_doesnt_say_has_no_confidence_line() -> None:
    out = Console(width=100, record=True, force_terminal=False)
    render_answer(Answer("Who wrote Pride and Prejudice?", "The corpus doesn't say.", (), "none", 0.46), out)
    assert "confidence" not in out.export_text()
