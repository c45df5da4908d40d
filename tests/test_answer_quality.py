"""Answers with the real model and the shipped sentence model over the seed corpus: the examples that broke trust
(issue "Answers people can trust"), conversations, and the dev-set figures the README promises."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bot.config import Settings
from bot.engine import Engine
from bot.evaluation import load_cases, run_evaluation
from bot.types import Answer, Turn
from ingest.pipeline import IngestPipeline
from tests.conftest import ROOT

pytestmark = pytest.mark.model

DEVSETS = (ROOT / "tests" / "data" / "devset.jsonl", ROOT / "tests" / "data" / "natural_dev.jsonl")
CASUAL = (ROOT / "tests" / "data" / "casual_dev.jsonl",)
README = ROOT / "README.md"
# A drop of more than this below the README's figures fails the build.
TOLERANCE = 0.03


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    base = tmp_path_factory.mktemp("quality")
    shutil.copytree(ROOT / "corpus", base / "corpus")
    built = Engine(Settings(data_dir=base / "data", _env_file=None))  # type: ignore[call-arg]
    IngestPipeline(built.store, built.embedder).run([base / "corpus"])
    built.warm_up()
    return built


def first_quote(answer: Answer) -> str:
    return answer.citations[0].quote if answer.citations else ""


def test_a_question_about_something_the_corpus_never_mentions_is_not_answered(engine: Engine) -> None:
    answer = engine.ask("Which airline did Bessent fly to Seoul?")
    assert answer.support != "answered"
    assert "airline" in answer.text


def test_a_sentence_opening_with_he_answers_and_names_him(engine: Engine) -> None:
    answer = engine.ask("How important is He Lifeng in China's government?")
    assert answer.support != "none"
    assert "top economic negotiator" in first_quote(answer) or "sits high enough" in first_quote(answer)
    assert "He [He Lifeng]" in answer.text
    assert first_quote(answer).startswith("He ")  # the quote stays verbatim


@pytest.mark.parametrize(
    ("question", "evidence"),
    [
        ("What do people expect from the Seoul round?", ("narrower than people expect",)),
        # Not "… took place during the World Economic Forum's annual gathering": what the place is like.
        ("What kind of place is Davos?", ("The Swiss resort town", "This prestigious venue")),
        ("why Seoul?", ("neutral staging ground",)),
    ],
)
def test_the_answering_sentence_comes_first(engine: Engine, question: str, evidence: tuple[str, ...]) -> None:
    answer = engine.ask(question)
    assert answer.support != "none"
    assert any(text in first_quote(answer) for text in evidence), answer.text


def test_no_quote_runs_across_a_source_attribution(engine: Engine) -> None:
    answer = engine.ask("Why do the talks happen before the summit?")
    assert answer.citations
    for citation in answer.citations:
        assert "(scmp.com)" not in citation.quote and "(usnews.com)" not in citation.quote


def test_an_elliptical_follow_up_gains_from_its_context(engine: Engine) -> None:
    first = engine.ask("why Seoul?")
    follow_up = engine.ask("and who leads the U.S. side?", history=[first.turn()])
    assert follow_up.support != "none"
    assert "The U.S. side is being led by Treasury Secretary Scott Bessent" in first_quote(follow_up)


def test_an_unrelated_question_does_not_hijack_the_next(engine: Engine) -> None:
    moths = engine.ask("What colour do Lumen moths glow?")
    assert moths.support != "answered"
    answer = engine.ask("why Seoul?", history=[moths.turn()])
    assert answer.support == "answered"
    assert "neutral staging ground" in first_quote(answer)


def test_tell_me_more_quotes_what_was_not_given_and_k_bounds_it(engine: Engine) -> None:
    first = engine.ask("why Seoul?", k=3)
    assert len(first.citations) <= 3
    more = engine.ask("tell me more", history=[first.turn()], k=3)
    assert more.citations and len(more.citations) <= 3
    given = {c.quote for c in first.citations}
    assert not given & {c.quote for c in more.citations}
    # What is left after the answer is never presented as the answer, nor with the answer's confidence.
    assert more.support == "closest" and more.confidence < first.confidence, (more.support, more.confidence)


def test_off_topic_questions_get_none(engine: Engine) -> None:
    for question in ("How do I bake sourdough bread?", "Who wrote Pride and Prejudice?"):
        answer = engine.ask(question)
        assert answer.support == "none" and answer.text.startswith("The corpus doesn't say"), answer.text


def readme_figures(marker: str) -> dict[str, float]:
    """The figures the README states in its table marked `<!-- marker -->`."""
    text = README.read_text(encoding="utf-8")
    table = text.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    figures = {}
    for row in re.findall(r"^\|\s*`([a-z_@0-9]+)`\s*\|\s*([0-9.]+)", table, re.MULTILINE):
        figures[row[0]] = float(row[1])
    return figures


def check_figures(engine: Engine, marker: str, files: tuple[Path, ...]) -> None:
    """The engine's figures on `files` are no more than `TOLERANCE` worse than the README's table `marker`."""
    promised = readme_figures(marker)
    assert {"evidence_anywhere", "evidence_first_quote", "unanswerable_not_answered"} <= set(promised)
    cases = [case for path in files for case in load_cases(path)]
    measured = run_evaluation(engine, cases).metrics()
    for name, value in promised.items():
        if name in LOWER_IS_BETTER:
            assert measured[name] <= value + TOLERANCE, (name, measured[name], value)
        else:
            assert measured[name] >= value - TOLERANCE, (name, measured[name], value)


LOWER_IS_BETTER = frozenset({"declined_answerable", "unanswerable_answered", "confidence_ece"})


def test_dev_set_figures_hold_what_the_readme_says(engine: Engine) -> None:
    check_figures(engine, "devset-figures", DEVSETS)


def test_casual_figures_hold_what_the_readme_says(engine: Engine) -> None:
    check_figures(engine, "casual-figures", CASUAL)


def test_history_turns_carry_what_they_quoted(engine: Engine) -> None:
    answer = engine.ask("why Seoul?")
    turn = answer.turn()
    assert isinstance(turn, Turn) and turn.quoted == tuple((c.doc_id, c.start) for c in answer.citations)


# -- what a newcomer met (issue "Trust on a real news corpus") ----------------------------------------------------


def test_a_heading_is_never_quoted(engine: Engine) -> None:
    first = engine.ask("who's leading china's side")
    answer = engine.ask("why him tho", history=[first.turn()])
    for citation in answer.citations:
        assert citation.quote not in ("Key Facts", "Quick Summary") and len(citation.quote.split()) > 3


# Statements the Davos article makes twice, in its summary bullets and in its body (offsets in the file).
RESTATED = {
    "what did bessent say about soybeans and rare earths?": ((492, 622), (3682, 3826)),
    "how high are the tariffs?": ((627, 774), (4612, 4758)),
}


def test_one_statement_is_quoted_once_in_an_answer(engine: Engine) -> None:
    for question, twice in RESTATED.items():
        answer = engine.ask(question)
        quotes = [citation.quote for citation in answer.citations]
        assert len({quote[:40] for quote in quotes}) == len(quotes)
        spans = {(citation.start, citation.end) for citation in answer.citations if "davos" in citation.source}
        assert len(spans & set(twice)) <= 1, quotes


def test_an_exact_answer_is_answered(engine: Engine) -> None:
    answer = engine.ask("how high did tariffs get")
    assert "well above 100 per cent" in first_quote(answer), answer.text
    assert answer.support == "answered", (answer.support, answer.confidence)


def test_an_exact_date_is_quoted_first(engine: Engine) -> None:
    """The date is the first quote; the tier is still `closest` (confidence about 0.4 against a level of 0.6): two
    sentences give the same date in other words, and the model reads the small lead of one over the other as doubt."""
    answer = engine.ask("when are the seoul talks")
    assert "May 12-13" in first_quote(answer), answer.text
    assert answer.support in ("answered", "closest")


UNRELATED = (
    "what are rare earths used for?",
    "how do I bake sourdough bread?",
    "who is the prime minister of Japan?",
    "what did the summit in Beijing decide?",
    "why Seoul?",
    "what is the weather in Davos like?",
)


@pytest.mark.parametrize("question", ["how high did tariffs get", "which cities have hosted their meetings?"])
def test_an_unrelated_history_never_changes_a_question_that_stands_alone(engine: Engine, question: str) -> None:
    alone = engine.ask(question)
    history: list[Turn] = []
    for earlier in UNRELATED:
        history.append(engine.ask(earlier, history=history).turn())
        after = engine.ask(question, history=history)
        assert [c.quote for c in after.citations] == [c.quote for c in alone.citations], earlier
        assert (after.support, round(after.confidence, 6)) == (alone.support, round(alone.confidence, 6))


def test_context_never_makes_a_follow_up_much_more_confident_than_it_is_alone(engine: Engine) -> None:
    history: list[Turn] = []
    for earlier in UNRELATED:
        history.append(engine.ask(earlier, history=history).turn())
    question = "where did all these talks between them start"
    alone = engine.ask(question)
    after = engine.ask(question, history=history)
    assert after.confidence <= alone.confidence + 0.3 + 1e-9


def test_the_corpus_doesnt_mention_quotes_the_words_as_typed(engine: Engine) -> None:
    answer = engine.ask("Who wrote Pride and Prejudice?")
    assert answer.support == "none"
    assert answer.text == "The corpus doesn't say (it doesn't mention “Pride and Prejudice”)."


def test_a_quote_that_leans_on_its_heading_carries_it(engine: Engine) -> None:
    answer = engine.ask("is this a breakthrough?")
    [leaning] = [c for c in answer.citations if c.quote == "Probably not by itself."]
    assert leaning.context == "Is this a breakthrough?"
    assert "[Is this a breakthrough?] Probably not by itself" in answer.text
