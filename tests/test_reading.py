"""Questions read the way people write them: chat shorthand spelled out, fillers dropped, misspelled names read as
the corpus's own words (only when the rest of the question fits them), and the question shown back as typed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from bot.answering.asking import offered, wanted_kind
from bot.config import Settings
from bot.engine import Engine, readings
from bot.reading import QuestionReader, soundex
from ingest.pipeline import IngestPipeline


class Words:
    """A vocabulary of (word, documents) with the words each chunk uses together."""

    def __init__(self, counts: dict[str, int], chunks: Sequence[set[str]]) -> None:
        self.counts = counts
        self.chunks = chunks

    def word_documents(self, words: Iterable[str]) -> dict[str, int]:
        return {word: self.counts[word] for word in words if word in self.counts}

    def words_like(self, prefix: str, shortest: int, longest: int) -> list[tuple[str, int]]:
        return [(w, n) for w, n in self.counts.items() if w.startswith(prefix) and shortest <= len(w) <= longest]

    def used_together(self, word: str, others: Sequence[str]) -> int:
        return sum(word in chunk and bool(chunk & set(others)) for chunk in self.chunks)


VOCABULARY = Words(
    {
        "bessent": 2,
        "beset": 40,
        "soybeans": 3,
        "blair": 300,
        "blame": 80,
        "euro": 90,
        "lifeng": 2,
        "lifong": 9,
        "talks": 50,
        "seoul": 3,
        "soul": 40,
    },
    [{"bessent", "soybeans", "talks"}, {"beset", "euro"}, {"blair", "euro"}, {"blame", "talks"}, {"lifeng", "talks"}],
)


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("yo when r the seoul talks", "when are the seoul talks"),
        ("how bad are the tariffs rn", "how bad are the tariffs right now"),
        ("whats the deal w/ soybeans tbh", "what is the deal with soybeans"),
        ("who's china sending", "who's china sending"),
        ("and who leads the U.S. side?", "and who leads the U.S. side?"),  # no "you" in "U.S."
        ("how much did R&D cost u", "how much did R&D cost you"),
    ],
)
def test_chat_shorthand_is_spelled_out(typed: str, read: str) -> None:
    assert QuestionReader().read(typed).text == read


def test_misspelled_names_are_read_as_the_corpus_writes_them() -> None:
    reader = QuestionReader(VOCABULARY)
    # the one that sounds the same, not the nearest or the most used ("beset", "blame")
    assert reader.read("what did besent say about soybeens").text == "what did bessent say about soybeans"
    assert reader.read("what did blare say about the euro").text == "what did blair say about the euro"
    assert reader.read("soeul talks").text == "seoul talks"  # two letters swapped, before one letter less ("soul")
    # of two that sound alike, the one the corpus uses with the question's other words
    assert reader.read("he lifang talks").text == "he lifeng talks"


def test_a_word_is_corrected_only_when_it_is_no_word() -> None:
    reader = QuestionReader(VOCABULARY)
    assert reader.read("did Kishida attend").text == "did Kishida attend"  # nothing close: left as typed
    assert reader.read("which airline").text == "which airline"  # an English word is no misspelling
    assert reader.read("talks on soul music").text == "talks on soul music"


def test_soundex() -> None:
    assert soundex("Robert") == soundex("Rupert") == "R163"
    assert soundex("blair") == soundex("blare") != soundex("blame")


def test_the_question_stays_as_typed_and_the_changes_are_remembered() -> None:
    [question] = readings("whats mircosoft doing", reader=QuestionReader(Words({"microsoft": 9}, [])))
    assert question.text == "whats mircosoft doing"
    assert question.reading == "what is microsoft doing"
    assert question.as_typed("microsoft") == "mircosoft" and question.as_typed("doing") == "doing"
    assert "microsoft" in question.terms


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("how much is the Xbox power cable replacement programme costing Microsoft overall?", "money"),
        ("how much does Jack Straw reckon shutting those embassies will save per year?", "money"),
        ("by how much did the number of women buying security software rise?", "percent"),
        ("how many lineouts did england lose?", "count"),
        ("how long was the strike?", "duration"),
        ("when are the seoul talks", "date"),
        ("which JP Morgan analyst raised questions about Krispy Kreme?", "person"),
        ("which council warned 800 parents?", "organisation"),
        ("which city hosted the first meeting?", "place"),
        ("why did lisa raymond pull out?", "reason"),
        ("what did David Davis call the plans?", "said"),
        ("did they sign anything at davos", "yes-no"),
        ("which team won the final?", "organisation"),
        ("what game sold best last christmas?", "name"),
        ("what was reported in May about the bridge?", "other"),  # "what was" asks for no named thing
        ("what happened next?", "other"),
    ],
)
def test_what_a_question_asks_for(question: str, kind: str) -> None:
    assert wanted_kind(question) == kind


def test_what_a_sentence_offers() -> None:
    assert offered("money", "The closures will save £10m a year.", [])
    assert not offered("money", "Nine embassies will close to save money.", [])
    assert offered("percent", "Sales rose by 11.2% each year.", [])
    assert offered("date", "The concert is at Parken stadium on 2 April.", [])
    assert not offered("date", "He will perform at a concert in Copenhagen.", [])
    assert not offered("count", "It rose to 2004 levels.", ["2004"])  # the question said it already


@pytest.mark.model
def test_a_casual_question_finds_what_its_plain_version_finds(tmp_path: Path) -> None:
    engine = Engine(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    IngestPipeline(engine.store, engine.embedder).run([Path(__file__).resolve().parent.parent / "corpus"])
    casual = engine.ask("yo when r the soeul talks")
    plain = engine.ask("when are the seoul talks")
    assert casual.question == "yo when r the soeul talks"  # shown back as typed
    assert [c.quote for c in casual.citations][:1] == [c.quote for c in plain.citations][:1]
    assert "May 12-13" in casual.citations[0].quote
