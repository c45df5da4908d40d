"""The answer engine: verbatim citations, abstention, follow-ups, live index updates, and the `ask`/`eval` CLI."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from langchain_core.retrievers import BaseRetriever

from bot.config import Settings
from bot.engine import Engine
from bot.errors import EmptyIndexError, QuestionError
from bot.retrieval import HybridRetriever
from bot.text import sentence_spans
from bot.types import Answer, Turn
from ingest.loaders import load
from ingest.pipeline import IngestPipeline
from tests.conftest import ROOT, citebot, cli_env

DEVSET = ROOT / "tests" / "data" / "devset.jsonl"


def build_engine(settings: Settings, corpus: Path) -> Engine:
    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    return engine


def assert_contract(answer: Answer) -> None:
    """Every quote is verbatim at its offsets; every [n] has a citation and every citation is referred to."""
    for citation in answer.citations:
        text = load(Path(citation.source)).text
        assert text[citation.start : citation.end] == citation.quote, citation
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert markers == {citation.n for citation in answer.citations}
    assert [citation.n for citation in answer.citations] == list(range(1, len(answer.citations) + 1))


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The real model over the seed corpus (shared by the tests that judge answer quality)."""
    base = tmp_path_factory.mktemp("real")
    shutil.copytree(ROOT / "corpus", base / "corpus")
    settings = Settings(data_dir=base / "data", _env_file=None)  # type: ignore[call-arg]
    return build_engine(settings, base / "corpus")


def generated_questions(corpus: Path) -> list[str]:
    """Questions made from every sentence of the corpus: a few of its words, as a reader might ask."""
    questions = []
    for path in sorted(corpus.iterdir()):
        text = path.read_text(encoding="utf-8")
        for start, end in sentence_spans(text):
            words = re.findall(r"[A-Za-z]{4,}", text[start:end])
            if len(words) >= 3:
                questions.append(f"What about {' '.join(words[1:4])}?")
    return questions


def test_quotes_are_verbatim_over_many_questions(engine: Engine, corpus: Path) -> None:
    questions = generated_questions(corpus)
    assert len(questions) > 60
    answered = 0
    for question in questions:
        answer = engine.ask(question)
        assert_contract(answer)
        answered += not answer.abstained
    assert answered >= 20, "enough answers for the property to be tested"


@pytest.mark.model
def test_real_model_quotes_are_verbatim_for_the_dev_set(real_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(real_engine.settings.data_dir).parent)
    for line in DEVSET.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        history = [Turn(turn["q"]) for turn in case.get("history", [])]
        assert_contract(real_engine.ask(case["q"], history=history))


@pytest.mark.model
def test_why_seoul_is_answered_from_the_right_passage(real_engine: Engine) -> None:
    answer = real_engine.ask("why Seoul?")
    assert not answer.abstained
    assert "neutral staging ground" in answer.citations[0].quote
    assert answer.citations[0].source.endswith("china-sends-he-lifeng-to-seoul.txt")
    assert answer.citations[0].title == "China sends He Lifeng to Seoul"


@pytest.mark.model
@pytest.mark.parametrize(
    "question",
    ["What is the capital of Australia?", "How do I bake sourdough bread?", "Who wrote Pride and Prejudice?"],
)
def test_questions_the_corpus_cannot_answer_are_declined(real_engine: Engine, question: str) -> None:
    answer = real_engine.ask(question)
    assert answer.abstained
    assert answer.text.startswith("The corpus doesn't say")


@pytest.mark.model
def test_an_elliptical_follow_up_is_answered_in_context(real_engine: Engine) -> None:
    first = "Who leads China's delegation in Seoul?"
    follow_up = real_engine.ask("and who leads the U.S. side?", history=[Turn(first)])
    assert not follow_up.abstained
    assert any("The U.S. side is being led by Treasury Secretary Scott Bessent" in c.quote for c in follow_up.citations)
    when = real_engine.ask("when?", history=[Turn(first)])
    assert any("May 12-13" in citation.quote for citation in when.citations)


@pytest.mark.parametrize("question", ["", "   ", "x" * 1001, "???", "!!! ..."])
def test_unusable_questions_get_a_one_line_error(engine: Engine, question: str) -> None:
    with pytest.raises(QuestionError) as error:
        engine.ask(question)
    assert "\n" not in str(error.value)


def test_an_empty_index_is_an_error_that_says_how_to_fill_it(settings: Settings) -> None:
    with pytest.raises(EmptyIndexError) as error:
        Engine(settings).ask("why Seoul?")
    assert isinstance(error.value, QuestionError)  # every adapter already replies to those in one line
    assert "citebot ingest corpus/" in str(error.value) and "make run" in str(error.value)


def test_the_retriever_is_a_langchain_retriever(engine: Engine) -> None:
    retriever = HybridRetriever(searcher=engine.searcher, k=3)
    assert isinstance(retriever, BaseRetriever)
    documents = retriever.invoke("neutral staging ground Seoul")
    assert len(documents) == 3
    assert "neutral staging ground" in documents[0].page_content
    assert documents[0].metadata["source"].endswith("china-sends-he-lifeng-to-seoul.txt")


def test_near_duplicate_passages_are_collapsed(
    settings: Settings, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seoul = (corpus / "china-sends-he-lifeng-to-seoul.txt").read_text(encoding="utf-8")
    # The same article republished with a different headline: different documents, the same passages.
    (corpus / "republished.txt").write_text("Seoul talks, republished\n" + seoul.split("\n", 1)[1], encoding="utf-8")
    monkeypatch.chdir(corpus.parent)
    engine = build_engine(settings, Path("corpus"))
    hits = engine.searcher.search("neutral staging ground Seoul", 5)
    staging = [hit for hit in hits if "neutral staging ground" in hit.chunk.text]
    assert len(staging) == 1


def test_a_running_engine_sees_documents_ingested_later(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    question = "Who looks after the lighthouse keepers on Skerryvore?"
    assert not any("Skerryvore" in c.quote for c in engine.ask(question).citations)
    # Another process ingests a new document while this engine keeps running.
    (tmp_path / "corpus" / "lighthouse.md").write_text(
        "# Skerryvore lighthouse\n\nThe Northern Lighthouse Board looks after the lighthouse keepers on Skerryvore.\n"
    )
    result = citebot("ingest", "corpus", "--json", env=cli_env(settings), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    time.sleep(1.1)  # the engine checks the index generation at most once a second
    answer = engine.ask(question)
    assert any("Northern Lighthouse Board" in citation.quote for citation in answer.citations)
    assert_contract(answer)


@pytest.mark.server
def test_a_running_engine_sees_new_documents_through_a_chroma_server(
    chroma_server: tuple[str, int], corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = chroma_server
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        chroma_host=host,
        chroma_port=port,
        collection="live_updates",
        embedding_model="hashing",
        _env_file=None,
    )
    monkeypatch.chdir(tmp_path)
    engine = build_engine(settings, Path("corpus"))
    question = "Who looks after the lighthouse keepers on Skerryvore?"
    assert not any("Skerryvore" in c.quote for c in engine.ask(question).citations)
    (corpus / "lighthouse.md").write_text(
        "# Skerryvore lighthouse\n\nThe Northern Lighthouse Board looks after the lighthouse keepers on Skerryvore.\n"
    )
    env = cli_env(settings, CITEBOT_CHROMA_HOST=host, CITEBOT_CHROMA_PORT=str(port), CITEBOT_COLLECTION="live_updates")
    assert citebot("ingest", "corpus", env=env, cwd=tmp_path).returncode == 0
    time.sleep(1.1)
    assert any("Northern Lighthouse Board" in c.quote for c in engine.ask(question).citations)


def test_ask_json_follows_the_contract(settings: Settings, corpus: Path, tmp_path: Path) -> None:
    env = cli_env(settings)
    citebot("ingest", "corpus", env=env, cwd=tmp_path)
    result = citebot("ask", "why", "Seoul?", "--json", "-k", "3", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"question", "answer", "abstained", "support", "confidence", "citations", "timings_ms"}
    assert data["support"] in ("answered", "closest", "none") and 0 <= data["confidence"] <= 1
    assert data["abstained"] == (data["support"] != "answered")
    assert data["question"] == "why Seoul?"
    assert set(data["timings_ms"]) == {"retrieve", "answer", "total"}
    for citation in data["citations"]:
        assert set(citation) >= {
            "n",
            "source",
            "title",
            "start",
            "end",
            "quote",
            "score",
            "doc_id",
            "url",
            "published",
            "link",
        }
        text = (tmp_path / citation["source"]).read_text(encoding="utf-8")
        assert text[citation["start"] : citation["end"]] == citation["quote"]


def test_ask_reads_one_question_per_line_and_answers_in_order(settings: Settings, corpus: Path, tmp_path: Path) -> None:
    env = cli_env(settings)
    citebot("ingest", "corpus", env=env, cwd=tmp_path)
    questions = ["why Seoul?", "", "What did Bessent praise in Davos?", "x" * 1500, "Where did the talks begin?"]
    result = citebot("ask", "--json", env=env, cwd=tmp_path, stdin="\n".join(questions) + "\n")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["question"] for line in lines] == [q for q in questions if q]
    assert "error" in lines[2] and "at most 1,000" in lines[2]["error"]
    assert result.returncode == 1  # one question failed


def test_ask_human_output_lists_numbered_sources(settings: Settings, corpus: Path, tmp_path: Path) -> None:
    env = cli_env(settings, COLUMNS="200")
    citebot("ingest", "corpus", env=env, cwd=tmp_path)
    # the hashing embedder matches words, not meaning: a question in the article's own words is answered
    result = citebot("ask", "Who will lead China's delegation in Seoul on May 12-13?", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[1]" in result.stdout and "China sends He Lifeng to Seoul" in result.stdout
    assert "corpus/china-sends-he-lifeng-to-seoul.txt:" in result.stdout


def test_eval_reports_every_metric(settings: Settings, corpus: Path, tmp_path: Path) -> None:
    env = cli_env(settings)
    citebot("ingest", "corpus", env=env, cwd=tmp_path)
    result = citebot("eval", str(DEVSET), "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for metric in (
        "evidence_first_quote",
        "evidence_anywhere",
        "answer_hit_rate",
        "answered_rate",
        "closest_rate",
        "declined_answerable",
        "unanswerable_not_answered",
        "unanswerable_answered",
        "confidence_ece",
        "recall@5",
        "mrr",
        "latency_p50_ms",
        "latency_p95_ms",
        "misses",
    ):
        assert metric in report
    assert report["questions"] == len(DEVSET.read_text().splitlines())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no q field"}\n')
    failed = citebot("eval", str(bad), env=env, cwd=tmp_path)
    assert failed.returncode == 2 and "bad.jsonl:1" in failed.stderr


def test_the_dev_set_is_large_and_varied_enough() -> None:
    cases = [json.loads(line) for line in DEVSET.read_text(encoding="utf-8").splitlines()]
    assert len(cases) >= 40
    assert sum(1 for case in cases if case.get("unanswerable")) >= 12
    kinds = {case.get("kind") for case in cases}
    assert {"direct", "paraphrase", "elliptical"} <= kinds
