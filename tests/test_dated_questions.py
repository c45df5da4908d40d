"""Questions about time on a small dated corpus: three reports on one story (tests/data/dated/) that contradict each
other as the story moves on (£2.1bn in May, £2.8bn in June, £3.4bn in September), next to the undated seed
articles. The real model answers; every quote must still be verbatim."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bot.answering.citations import compose
from bot.config import Settings
from bot.engine import Engine
from bot.retrieval import Retrieval
from bot.text import sentence_spans
from bot.types import Answer
from ingest.loaders import load
from ingest.pipeline import IngestPipeline
from tests.conftest import ROOT, citebot, cli_env

DATED = ROOT / "tests" / "data" / "dated"
MAY, JUNE, SEPTEMBER = "2025-05-14", "2025-06-04", "2025-09-10"

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    base = tmp_path_factory.mktemp("dated")
    shutil.copytree(ROOT / "corpus", base / "corpus")
    shutil.copytree(DATED, base / "dated")
    engine = Engine(Settings(data_dir=base / "data", _env_file=None))  # type: ignore[call-arg]
    report = IngestPipeline(engine.store, engine.embedder).run([base / "corpus", base / "dated"])
    assert report.added == 5 and not report.failed
    return engine


def published(answer: Answer) -> list[str | None]:
    return [citation.published for citation in answer.citations]


def assert_verbatim(answer: Answer) -> None:
    for citation in answer.citations:
        assert load(Path(citation.source)).text[citation.start : citation.end] == citation.quote
    assert {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)} == {c.n for c in answer.citations}


def test_every_dated_document_has_its_date(engine: Engine) -> None:
    dates = sorted(record.published for record in engine.documents() if record.published)
    assert dates == [MAY, JUNE, SEPTEMBER]


def test_the_latest_figure_cites_the_newest_report(engine: Engine) -> None:
    for question in ("What is the latest figure?", "What is the latest figure for the cost of the Harwick bridge?"):
        answer = engine.ask(question)
        assert answer.citations, question
        assert set(published(answer)) == {SEPTEMBER}, (question, answer.text)
        assert "£3.4bn" in " ".join(citation.quote for citation in answer.citations)
        assert_verbatim(answer)


def test_what_was_reported_in_may_cites_may(engine: Engine) -> None:
    for question in ("What was reported in May?", "What was reported in May about the bridge?"):
        answer = engine.ask(question)
        assert answer.citations, question
        assert set(published(answer)) == {MAY}, (question, answer.text)
        assert "£2.1bn" in " ".join(citation.quote for citation in answer.citations)
        assert_verbatim(answer)


class NewestFirst:
    """An answerer that quotes the first sentence of each retrieved report, newest report first."""

    def answer(self, retrieval: Retrieval) -> Answer:
        hits = sorted(
            {hit.chunk.doc_id: hit for hit in retrieval.hits if hit.published}.values(),
            key=lambda hit: hit.published or "",
            reverse=True,
        )
        quotes = []
        for hit in hits:
            start, end = sentence_spans(hit.chunk.text)[-1]  # past the heading line
            quotes.append((hit, hit.chunk.start + start, hit.chunk.start + end, hit.chunk.text[start:end]))
        return compose(retrieval.question.text, quotes)


def test_quotes_from_reports_of_different_dates_come_oldest_first(engine: Engine) -> None:
    """Whatever the answerer's order, the engine puts the quotes of dated documents in date order."""
    stub = Engine(engine.settings, embedder=engine.embedder, store=engine.store, answerer=NewestFirst())
    answer = stub.ask("How much will the Harwick bridge cost?", k=10)
    dates = published(answer)
    assert len(set(dates)) == 3, answer.text
    assert dates == sorted(dates), "oldest to newest"
    assert [c.n for c in answer.citations] == [1, 2, 3] and answer.text.index("[1]") < answer.text.index("[3]")
    assert_verbatim(answer)


def test_a_newer_report_that_does_not_answer_does_not_win(engine: Engine) -> None:
    """Only the May report names the council leader: "now" must not hand the question to a newer report."""
    answer = engine.ask("Who is the council leader now?")
    assert set(published(answer)) == {MAY}, answer.text
    assert "Mary Okafor" in " ".join(citation.quote for citation in answer.citations)


def test_ask_shows_each_citation_with_its_date(engine: Engine, tmp_path: Path) -> None:
    """The answer JSON carries `published`; `citebot ask` names each citation's date and what "on Monday" means."""
    settings = engine.settings
    env = cli_env(settings, CITEBOT_EMBEDDING_MODEL=settings.embedding_model, COLUMNS="200")
    cwd = settings.data_dir.parent
    question = "What did the council say about the cost of the Harwick bridge rising to £2.8bn?"
    data = json.loads(json.dumps(engine.ask(question).to_json()))  # what `citebot ask --json` prints
    assert any(citation["published"] == JUNE and citation["url"] is None for citation in data["citations"])
    text = citebot("ask", question, env=env, cwd=cwd)
    assert text.returncode == 0, text.stderr
    assert "published 4 June 2025" in text.stdout
    assert "(on Monday = 2 June 2025" in text.stdout
