"""The LLM answerer: checked markers, verbatim quotes from the chunks, abstention, and a fallback that never raises.

Two kinds of model: LangChain's fake chat models (fast, exact replies), and the real `ChatOpenAI` client from
`create_chat_model` talking HTTP to `tests/stub_openai.py`, so timeouts, HTTP errors and what is actually sent
are tested as they happen in production. Hits are built by hand from the seed corpus, so offsets are real.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import SecretStr

from bot.answering.extractive import ExtractiveAnswerer
from bot.answering.factory import create_answerer
from bot.answering.llm import LLMAnswerer, create_chat_model, split_reply
from bot.answering.prompts import NOT_IN_PASSAGES
from bot.config import LLMProvider, Settings
from bot.errors import ConfigError
from bot.keyword import KeywordIndex, terms
from bot.retrieval import Retrieval
from bot.types import Answer, Chunk, Question, ScoredChunk, Turn
from tests.conftest import SEED_CORPUS, free_port
from tests.stub_openai import StubOpenAI

DAVOS = "bessent-meets-he-lifeng-in-davos.txt"
SEOUL = "china-sends-he-lifeng-to-seoul.txt"
SECRET = "sk-test-DO-NOT-LEAK-7f3a9c"
ENV_KEYS = ("CITEBOT_LLM_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE")


def document(name: str) -> str:
    return (SEED_CORPUS / name).read_text(encoding="utf-8")


def hit(name: str, first_words: str, lines: int = 1, similarity: float = 0.6) -> ScoredChunk:
    """A chunk of `lines` lines of a seed document, starting at the line that contains `first_words`."""
    text = document(name)
    start = text.rfind("\n", 0, text.index(first_words)) + 1
    end = start
    for _ in range(lines):
        newline = text.find("\n", end + 1)
        end = len(text) if newline < 0 else newline
    chunk = Chunk(
        id=f"{name}:{start}",
        doc_id=name,
        text=text[start:end],
        title=Path(name).stem.replace("-", " "),
        start=start,
        end=end,
    )
    return ScoredChunk(chunk=chunk, score=similarity, similarity=similarity, source=f"corpus/{name}")


@pytest.fixture(autouse=True)
def no_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests decide every setting: none is picked up from the environment of the machine running them."""
    for name in ENV_KEYS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hits() -> list[ScoredChunk]:
    return [
        hit(DAVOS, "US Treasury Secretary Scott Bessent met", lines=6),  # the Key Facts bullets
        hit(DAVOS, "During the Davos discussion, Secretary Bessent specifically highlighted"),
        hit(SEOUL, "China said Vice Premier He Lifeng will meet", similarity=0.5),
    ]


@pytest.fixture
def keyword() -> KeywordIndex:
    return KeywordIndex.from_texts([line for name in (DAVOS, SEOUL) for line in document(name).splitlines()])


def question(text: str, history: tuple[Turn, ...] = ()) -> Question:
    return Question(text, text, tuple(terms(text)), history=history)


def retrieval(q: Question, hits: list[ScoredChunk], keyword: KeywordIndex) -> Retrieval:
    return Retrieval(q, tuple(hits), keyword.view())


def fake(*replies: str) -> FakeListChatModel:
    return FakeListChatModel(responses=list(replies))


def llm_answerer(model: Any, timeout: float | None = 5.0) -> LLMAnswerer:
    return LLMAnswerer(model, fallback=ExtractiveAnswerer(), timeout=timeout)


def assert_verbatim(answer: Answer, hits: list[ScoredChunk]) -> None:
    """Every citation quotes one of the retrieved chunks at the right offsets of its document."""
    for citation in answer.citations:
        matching = [
            h.chunk
            for h in hits
            if h.source == citation.source and h.chunk.start <= citation.start <= citation.end <= h.chunk.end
        ]
        assert matching, f"citation {citation.n} lies outside every retrieved chunk"
        chunk = matching[0]
        assert citation.quote in chunk.text
        assert chunk.text[citation.start - chunk.start : citation.end - chunk.start] == citation.quote
        assert document(Path(citation.source).name)[citation.start : citation.end] == citation.quote


def markers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\[(\d+)\]", text)]


def assert_markers_match_citations(answer: Answer) -> None:
    used = markers(answer.text)
    assert sorted(set(used)) == [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))


# -- with LangChain's fake chat models ---------------------------------------------------------------------------


def test_good_reply_quotes_chunks_verbatim_and_renumbers_markers(
    hits: list[ScoredChunk], keyword: KeywordIndex
) -> None:
    reply = (
        "Bessent praised progress on soybeans and rare earths [2]. "
        "He met He Lifeng at the World Economic Forum in Davos, Switzerland [1][2]."
    )
    answer = llm_answerer(fake(reply)).answer(retrieval(question("What did Bessent praise in Davos?"), hits, keyword))

    assert not answer.abstained and answer.note is None
    assert answer.text == (
        "Bessent praised progress on soybeans and rare earths [1]. "
        "He met He Lifeng at the World Economic Forum in Davos, Switzerland [2][1]."
    )
    assert [c.source for c in answer.citations] == [f"corpus/{DAVOS}", f"corpus/{DAVOS}"]
    assert_markers_match_citations(answer)
    assert_verbatim(answer, hits)
    # [2] of the reply is the "Progress on Key Commodities" chunk; its quote is the sentence the reply relies on.
    first, second = answer.citations
    assert first.quote.startswith("During the Davos discussion, Secretary Bessent specifically highlighted progress")
    assert hits[1].chunk.start <= first.start < first.end <= hits[1].chunk.end
    assert second.quote == (
        "US Treasury Secretary Scott Bessent met with Chinese Vice-Premier He Lifeng on Monday at the World "
        "Economic Forum in Davos, Switzerland."
    )
    assert second.start == hits[0].chunk.start + hits[0].chunk.text.index(second.quote)
    assert second.end == second.start + len(second.quote)


def test_quotes_never_come_from_the_reply(hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    """A reply that misquotes its passage still gets a quote taken from the chunk."""
    reply = "Bessent said soybean and rare-earth talks were a triumph for both nations [2]."
    answer = llm_answerer(fake(reply)).answer(
        retrieval(question("What did Bessent say about soybeans?"), hits, keyword)
    )
    (citation,) = answer.citations
    assert "triumph" not in citation.quote
    assert citation.quote in hits[1].chunk.text
    assert_verbatim(answer, hits)


def test_generic_fake_model_and_markers_after_the_period(hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="They met in Seoul. [3] Bessent leads. [3]")]))
    answer = llm_answerer(model).answer(retrieval(question("Where will He Lifeng meet U.S. officials?"), hits, keyword))
    assert answer.text == "They met in Seoul [1]. Bessent leads [1]."
    (citation,) = answer.citations
    assert citation.source == f"corpus/{SEOUL}"
    assert_verbatim(answer, hits)


def test_marker_of_a_missing_passage_is_removed_and_its_sentence_dropped(
    hits: list[ScoredChunk], keyword: KeywordIndex
) -> None:
    reply = (
        "Bessent met He Lifeng in Davos [1][7]. They also signed a currency treaty [7]. "
        "Tariffs stayed above 100 per cent [0]."
    )
    answer = llm_answerer(fake(reply)).answer(retrieval(question("Who did Bessent meet in Davos?"), hits, keyword))
    assert answer.text == "Bessent met He Lifeng in Davos [1]."
    assert "treaty" not in answer.text and "[7]" not in answer.text
    assert len(answer.citations) == 1 and answer.citations[0].quote in hits[0].chunk.text
    assert_markers_match_citations(answer)


def test_uncited_sentences_are_dropped(hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    reply = (
        "Bessent met He Lifeng in Davos [1]. This was widely seen as a breakthrough. "
        "The passages don’t say what was agreed."
    )
    answer = llm_answerer(fake(reply)).answer(retrieval(question("Who did Bessent meet in Davos?"), hits, keyword))
    assert answer.text == "Bessent met He Lifeng in Davos [1]."


def test_reply_without_any_valid_marker_falls_back(hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    q = question("Who did Bessent meet in Davos?")
    answer = llm_answerer(fake("Bessent met He Lifeng [9].")).answer(retrieval(q, hits, keyword))
    expected = ExtractiveAnswerer().answer(retrieval(q, hits, keyword))
    assert answer == replace(expected, note=answer.note)
    assert answer.note == "the LLM's reply cited none of the passages; this is the extractive answer"


@pytest.mark.parametrize(
    "reply",
    [
        NOT_IN_PASSAGES,
        f"`{NOT_IN_PASSAGES}`",
        f"They met in Davos [1]. {NOT_IN_PASSAGES}",
        "The passages do not say.",
        "The provided passages don't mention it.",
        "Based on the passages, I cannot determine that. [1]",
        "It cannot be determined from the passages [2].",
    ],
)
def test_sentinel_or_refusal_abstains(reply: str, hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    answer = llm_answerer(fake(reply)).answer(retrieval(question("What is the capital of Peru?"), hits, keyword))
    assert answer.abstained
    assert answer.text.startswith("The corpus doesn't")
    assert NOT_IN_PASSAGES not in answer.text
    assert answer.note is None
    assert_markers_match_citations(answer)
    assert_verbatim(answer, hits)


def test_no_hits_never_calls_the_model(keyword: KeywordIndex) -> None:
    model = fake("Should not be used [1].")
    answer = llm_answerer(model).answer(retrieval(question("Anything?"), [], keyword))
    assert answer.abstained and answer.note is None
    assert model.i == 0


class BrokenModel(FakeListChatModel):
    """A model whose every call raises, as a provider SDK would."""

    error: Exception = RuntimeError("boom")

    def _call(self, *args: Any, **kwargs: Any) -> str:
        raise self.error


@pytest.mark.parametrize(
    ("error", "note"),
    [
        (TimeoutError(), "the LLM did not answer within 5 s (TimeoutError)"),
        (ConnectionRefusedError(), "the LLM was unreachable (ConnectionRefusedError)"),
        (ValueError(f"bad key {SECRET}"), "the LLM call failed (ValueError)"),
    ],
)
def test_model_errors_fall_back_with_a_note(
    error: Exception, note: str, hits: list[ScoredChunk], keyword: KeywordIndex, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    q = question("Who did Bessent meet in Davos?")
    answer = llm_answerer(BrokenModel(responses=[""], error=error)).answer(retrieval(q, hits, keyword))
    assert answer.note == f"{note}; this is the extractive answer"
    assert replace(answer, note=None) == ExtractiveAnswerer().answer(retrieval(q, hits, keyword))
    assert SECRET not in caplog.text and SECRET not in answer.note


def test_slow_model_hits_the_deadline(hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    started = time.monotonic()
    answer = llm_answerer(FakeListChatModel(responses=["late [1]."], sleep=3), timeout=0.3).answer(
        retrieval(question("Who did Bessent meet in Davos?"), hits, keyword)
    )
    assert time.monotonic() - started < 2
    assert answer.note == "the LLM did not answer within 0.3 s; this is the extractive answer"
    assert answer.support != "none" and answer.citations


def test_prompt_numbers_the_passages_and_includes_the_conversation(hits: list[ScoredChunk]) -> None:
    history = (Turn("Who did Bessent meet in Davos?", "He met He Lifeng [1]."),)
    inputs = llm_answerer(fake("x")).prompt_inputs(question("And what did they discuss?", history), hits)
    assert inputs["question"] == "And what did they discuss?"
    assert inputs["passages"].startswith(f"[1] (bessent meets he lifeng in davos — corpus/{DAVOS})\n")
    assert f"\n\n[3] (china sends he lifeng to seoul — corpus/{SEOUL})\n" in inputs["passages"]
    for h in hits:
        assert h.chunk.text.strip() in inputs["passages"]
    assert "User: Who did Bessent meet in Davos?\nAssistant: He met He Lifeng." in inputs["conversation"]
    assert llm_answerer(fake("x")).prompt_inputs(question("Who?"), hits)["conversation"] == ""


def test_split_reply_reads_the_usual_marker_forms() -> None:
    sentences = split_reply("- First point [1, 2].\n- Second point [Passage 3]. Third [1-2] point. [4]")
    assert [(s.text, s.cited) for s in sentences] == [
        ("First point.", (1, 2)),
        ("Second point.", (3,)),
        ("Third point.", (1, 2, 4)),
    ]


# -- with the real ChatOpenAI client against the stub server -----------------------------------------------------


@pytest.fixture
def stub() -> Iterator[StubOpenAI]:
    with StubOpenAI() as server:
        yield server


def stub_settings(url: str, timeout: float = 1.0, key: str | None = None) -> Settings:
    return Settings(  # type: ignore[call-arg]
        llm=LLMProvider.OPENAI,
        llm_model="stub",
        llm_base_url=url,
        llm_timeout=timeout,
        llm_api_key=SecretStr(key) if key else None,
        _env_file=None,
    )


def real_answerer(settings: Settings) -> LLMAnswerer:
    answerer = create_answerer(settings, ExtractiveAnswerer())
    assert isinstance(answerer, LLMAnswerer)
    return answerer


def test_stub_good_reply(stub: StubOpenAI, hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    stub.reply("Bessent met He Lifeng in Davos [3][1]. He praised progress on soybeans and rare earths [2].")
    history = (Turn("Where is the World Economic Forum held?", "In Davos [1]."),)
    q = question("Who did Bessent meet there?", history)
    answer = real_answerer(stub_settings(stub.url)).answer(retrieval(q, hits, keyword))

    assert answer.note is None and not answer.abstained
    assert answer.text == "Bessent met He Lifeng in Davos [1][2]. He praised progress on soybeans and rare earths [3]."
    assert [c.source for c in answer.citations] == [f"corpus/{SEOUL}", f"corpus/{DAVOS}", f"corpus/{DAVOS}"]
    assert_markers_match_citations(answer)
    assert_verbatim(answer, hits)

    (request,) = stub.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "stub" and request.body["temperature"] == 0
    assert request.headers["authorization"] == "Bearer not-needed"
    assert request.body["messages"][0]["role"] == "system" and NOT_IN_PASSAGES in request.prompt
    for h in hits:
        assert h.chunk.text.strip() in request.prompt
    assert "Question: Who did Bessent meet there?" in request.prompt
    assert "User: Where is the World Economic Forum held?" in request.prompt


def test_stub_sentinel_abstains(stub: StubOpenAI, hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    stub.reply(NOT_IN_PASSAGES)
    answer = real_answerer(stub_settings(stub.url)).answer(
        retrieval(question("Who won the 1998 World Cup?"), hits, keyword)
    )
    assert answer.abstained and answer.note is None


def test_stub_timeout_falls_back_in_bounded_time(
    stub: StubOpenAI, hits: list[ScoredChunk], keyword: KeywordIndex
) -> None:
    stub.hang(30)
    q = question("Who did Bessent meet in Davos?")
    started = time.monotonic()
    answer = real_answerer(stub_settings(stub.url, timeout=1.0)).answer(retrieval(q, hits, keyword))
    elapsed = time.monotonic() - started
    assert elapsed < 4, f"took {elapsed:.1f} s"
    assert answer.note == "the LLM did not answer within 1 s; this is the extractive answer"
    assert replace(answer, note=None) == ExtractiveAnswerer().answer(retrieval(q, hits, keyword))


def test_stub_http_500_falls_back(stub: StubOpenAI, hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    stub.fail(500)
    answer = real_answerer(stub_settings(stub.url, timeout=5)).answer(
        retrieval(question("Who met in Davos?"), hits, keyword)
    )
    assert answer.note == "the LLM returned HTTP 500 (InternalServerError); this is the extractive answer"
    assert answer.citations and answer.support != "none"


def test_stub_malformed_body_falls_back(stub: StubOpenAI, hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    stub.malformed("{not json")
    answer = real_answerer(stub_settings(stub.url)).answer(retrieval(question("Who met in Davos?"), hits, keyword))
    assert answer.note is not None and answer.note.endswith("; this is the extractive answer")


def test_unreachable_server_falls_back(hits: list[ScoredChunk], keyword: KeywordIndex) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    answer = real_answerer(stub_settings(url)).answer(retrieval(question("Who met in Davos?"), hits, keyword))
    assert answer.note == "the LLM was unreachable (APIConnectionError); this is the extractive answer"


def test_the_key_never_leaks(
    stub: StubOpenAI, hits: list[ScoredChunk], keyword: KeywordIndex, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    # Like OpenAI's own 401, the error body repeats the key.
    stub.fail(401, message=f"Incorrect API key provided: {SECRET}")
    answerer = real_answerer(stub_settings(stub.url, key=SECRET))
    answer = answerer.answer(retrieval(question("Who met in Davos?"), hits, keyword))

    assert stub.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # the key was used...
    assert answer.note == "the LLM returned HTTP 401 (AuthenticationError); this is the extractive answer"
    for text in (json.dumps(answer.to_json()), repr(answer), repr(answerer), repr(answerer.model), caplog.text):
        assert SECRET not in text  # ...and shown nowhere


# -- configuration ------------------------------------------------------------------------------------------------


def test_missing_model_is_a_config_error() -> None:
    settings = Settings(llm=LLMProvider.OPENAI, llm_api_key=SecretStr(SECRET), _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="set CITEBOT_LLM_MODEL") as error:
        create_chat_model(settings)
    assert SECRET not in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("provider", "variable"), [(LLMProvider.OPENAI, "OPENAI_API_KEY"), (LLMProvider.ANTHROPIC, "ANTHROPIC_API_KEY")]
)
def test_missing_key_is_a_config_error(provider: LLMProvider, variable: str) -> None:
    settings = Settings(llm=provider, llm_model="some-model", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=f"set CITEBOT_LLM_API_KEY \\(or {variable}\\)") as error:
        create_answerer(settings, ExtractiveAnswerer())
    assert "\n" not in str(error.value)


def test_local_servers_need_no_key() -> None:
    ollama = create_chat_model(Settings(llm=LLMProvider.OLLAMA, llm_model="llama3.1", _env_file=None))  # type: ignore[call-arg]
    assert getattr(ollama, "openai_api_base", None) == "http://localhost:11434/v1"
    local = create_chat_model(stub_settings("http://127.0.0.1:8080/v1"))
    assert getattr(local, "openai_api_base", None) == "http://127.0.0.1:8080/v1"


def test_anthropic_model_is_built_with_the_key_hidden() -> None:
    settings = Settings(  # type: ignore[call-arg]
        llm=LLMProvider.ANTHROPIC,
        llm_model="claude-sonnet-4-5",
        llm_api_key=SecretStr(SECRET),
        llm_timeout=7,
        _env_file=None,
    )
    model = create_chat_model(settings)
    assert type(model).__name__ == "ChatAnthropic"
    assert getattr(model, "default_request_timeout", None) == 7
    assert SECRET not in repr(model)
