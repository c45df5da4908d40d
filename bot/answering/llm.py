"""The optional LLM answerer: a chat model writes the answer, but the quotes always come from the passages.

The model sees the retrieved passages numbered `[1]..[k]` and answers in a few sentences that each end with the
markers of the passages supporting them. Its reply is then checked rather than trusted:

- markers that point at no passage are removed, and a sentence left without a valid marker is dropped, since an
  unsupported sentence is exactly what a cited answer must not contain;
- the citations are renumbered 1..m in order of first use, so every marker refers to a citation and every
  citation is referred to;
- each citation quotes the sentence(s) of its chunk that best match the sentences citing it, with the chunk's
  offsets, so `document_text[start:end] == quote` holds as it does for the extractive answerer;
- `NOT_IN_PASSAGES` (or a reply that only says the passages don't tell) becomes an abstention.

Whatever goes wrong with the model (timeout, refused connection, HTTP error, an unusable reply), the extractive
answerer answers instead, with a one-line `note` that says why; the answerer never raises and never shows a key.
This module is the only one that imports `langchain_openai` / `langchain_anthropic`, and only when asked to.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable
from pydantic import SecretStr

from bot.answering.citations import BULLET_CHARS, citation, quotable_sentences, with_markers
from bot.answering.extractive import ExtractiveAnswerer, ExtractiveSettings
from bot.answering.prompts import NOT_IN_PASSAGES, answer_prompt, format_conversation, format_passage
from bot.config import LLMProvider, Settings
from bot.errors import ConfigError
from bot.keyword import KeywordView, terms
from bot.retrieval import Retrieval
from bot.text import sentence_spans
from bot.types import Answer, Citation, Question, ScoredChunk

log = logging.getLogger(__name__)

DEFAULT_OLLAMA_URL = "http://localhost:11434/v1"
"""Ollama's OpenAI-compatible API; `CITEBOT_LLM_BASE_URL` overrides it (another host or port)."""
LOCAL_SERVER_KEY = "not-needed"
"""Sent to a keyless OpenAI-compatible server (vLLM, llama.cpp, LM Studio): the client insists on some key."""
OLLAMA_KEY = "ollama"
MAX_RETRIES = 1
"""One retry for a transient 429/500; the answerer's deadline still bounds the whole call to `llm_timeout`."""

_EXAMPLE_MODELS = {
    LLMProvider.OPENAI: "gpt-4o-mini",
    LLMProvider.ANTHROPIC: "claude-sonnet-4-5",
    LLMProvider.OLLAMA: "llama3.1",
}


def create_chat_model(settings: Settings) -> BaseChatModel:
    """The chat model the settings ask for, at temperature 0 and with the configured timeout.

    Raises `ConfigError` with a one-line fix when the model name or a needed key is missing. The key is handed
    over as a `SecretStr`, so it shows up in no message, log line or repr of ours.
    """
    provider = settings.llm
    if provider is LLMProvider.NONE:
        raise ConfigError("CITEBOT_LLM is none, so there is no chat model; set it to openai, anthropic or ollama")
    model = settings.llm_model
    if not model:
        raise ConfigError(
            f"CITEBOT_LLM={provider.value} needs a model name; set CITEBOT_LLM_MODEL (e.g. {_EXAMPLE_MODELS[provider]})"
        )
    key = settings.llm_api_key if settings.llm_api_key and settings.llm_api_key.get_secret_value() else None
    base_url = settings.llm_base_url
    timeout = settings.llm_timeout

    if provider is LLMProvider.ANTHROPIC:
        if key is None:
            raise ConfigError("CITEBOT_LLM=anthropic needs an API key; set CITEBOT_LLM_API_KEY (or ANTHROPIC_API_KEY)")
        from langchain_anthropic import ChatAnthropic

        options: dict[str, Any] = {"base_url": base_url} if base_url else {}
        return ChatAnthropic(
            model_name=model, api_key=key, timeout=timeout, max_retries=MAX_RETRIES, temperature=0, **options
        )

    from langchain_openai import ChatOpenAI

    if provider is LLMProvider.OLLAMA:
        return ChatOpenAI(
            model=model,
            base_url=base_url or DEFAULT_OLLAMA_URL,
            api_key=key or SecretStr(OLLAMA_KEY),
            timeout=timeout,
            max_retries=MAX_RETRIES,
            temperature=0,
        )
    if key is None and not base_url:
        raise ConfigError(
            "CITEBOT_LLM=openai needs an API key; set CITEBOT_LLM_API_KEY (or OPENAI_API_KEY), "
            "or set CITEBOT_LLM_BASE_URL to a local OpenAI-compatible server"
        )
    return ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=key or SecretStr(LOCAL_SERVER_KEY),
        timeout=timeout,
        max_retries=MAX_RETRIES,
        temperature=0,
    )


class LLMDeadlineExceeded(TimeoutError):
    """The model did not answer within the answerer's budget (the client's own timeout may not have fired)."""


# "[1]", "[1, 2]", "[1-3]", "[Passage 2]": the forms models actually write.
_MARKER = re.compile(r"\s*\[\s*(?:passages?\s*)?(\d+(?:\s*[,;–-]\s*(?:passages?\s*)?\d+)*)\s*\]", re.IGNORECASE)
_LEADING_MARKERS = re.compile(rf"^(?:{_MARKER.pattern})+", re.IGNORECASE)
_SENTINEL = re.compile(rf"\b{NOT_IN_PASSAGES}\b", re.IGNORECASE)
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
_SOURCE_WORDS = r"(?:the\s+)?(?:given\s+|provided\s+)?(?:passages?|sources?|context|documents?|corpus|texts?)"
_REFUSAL = re.compile(
    rf"\b{_SOURCE_WORDS}\s+(?:do(?:es)?\s+not|don['’]t|doesn['’]t|did\s+not|never)\s+"
    r"(?:say|mention|contain|state|specify|include|provide|answer|address|cover|discuss|tell)"
    rf"|\b(?:is|are)\s+not\s+(?:mentioned|stated|specified|provided|covered|given|included)\s+in\s+{_SOURCE_WORDS}"
    rf"|\bno\s+(?:information|mention|details?)\b.*\b(?:in|from)\s+{_SOURCE_WORDS}"
    r"|\b(?:i|we)\s+(?:do\s+not|don['’]t|cannot|can['’]t|could\s+not|couldn['’]t|am\s+unable\s+to|was\s+unable\s+to)\s+"
    r"(?:know|answer|find|tell|determine|say|confirm)\b"
    r"|\b(?:cannot|can['’]t|can\s+not)\s+be\s+(?:determined|answered|found|told)\b"
    r"|\bnot\s+(?:possible|able)\s+to\s+(?:determine|tell|answer)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ReplySentence:
    """One sentence of the model's reply: its words without markers, and the passage numbers it cites."""

    text: str
    cited: tuple[int, ...]  # 1-based passage numbers as the model wrote them, valid or not
    refusal: bool


class LLMAnswerer:
    """Answers with a chat model through an LCEL chain (prompt | model | StrOutputParser), checked afterwards."""

    def __init__(
        self,
        model: BaseChatModel,
        *,
        fallback: ExtractiveAnswerer,
        timeout: float | None = None,
        max_quote_chars: int = ExtractiveSettings.max_quote_chars,
        max_history: int = 3,
        fallback_name: str = "extractive",
    ) -> None:
        """`timeout` bounds the whole model call (retries included): past it, the fallback answers instead.

        The extractive fallback also judges the passages: its confidence is the answer's, and when the model says
        the passages do not answer, its closest sentence is what the abstention cites.
        """
        self.model = model
        self.fallback = fallback
        self.timeout = timeout
        self.max_quote_chars = max_quote_chars
        self.max_history = max_history
        self.fallback_name = fallback_name
        self.chain: Runnable[dict[str, Any], str] = answer_prompt() | model | StrOutputParser()

    def __repr__(self) -> str:
        # Only the class and model name: the model's own repr is left out so nothing secret can slip in.
        name = getattr(self.model, "model_name", None) or getattr(self.model, "model", None) or ""
        return f"LLMAnswerer({type(self.model).__name__}({name!r}), timeout={self.timeout})"

    def answer(self, retrieval: Retrieval) -> Answer:
        if not retrieval.hits:  # nothing to cite: the model could only make things up
            return self.fallback.answer(retrieval)
        try:
            reply = self._invoke(self.prompt_inputs(retrieval.question, retrieval.hits))
        except Exception as exc:
            return self._fall_back(retrieval, failure_reason(exc, self.timeout))
        return self.interpret(reply, retrieval)

    def prompt_inputs(self, question: Question, hits: Sequence[ScoredChunk]) -> dict[str, str]:
        """The prompt variables: the numbered passages, the conversation so far and the question."""
        passages = "\n\n".join(
            format_passage(n, hit.chunk.text, hit.chunk.title, hit.source, hit.chunk.heading)
            for n, hit in enumerate(hits, start=1)
        )
        turns = question.history[-self.max_history :] if self.max_history > 0 else ()
        # Earlier answers' markers referred to earlier passages; left in, they would be misread as these ones.
        conversation = format_conversation([(turn.question, _strip_markers(turn.answer)) for turn in turns])
        return {"passages": passages, "conversation": conversation, "question": question.text}

    def interpret(self, reply: str, retrieval: Retrieval) -> Answer:
        """Turn the model's reply into an `Answer` whose markers, citations and quotes are all checked."""
        question, hits, keyword = retrieval.question, retrieval.hits, retrieval.keyword
        reply = _THINKING.sub("", reply).strip()
        if not reply:
            return self._fall_back(retrieval, "the LLM returned an empty reply")
        sentences = split_reply(reply)
        if _SENTINEL.search(reply) or (sentences and all(sentence.refusal for sentence in sentences)):
            return self.fallback.decline(retrieval)

        kept: list[tuple[str, list[int]]] = []  # (sentence, valid 0-based passage indexes in order)
        for sentence in sentences:
            valid = list(dict.fromkeys(n - 1 for n in sentence.cited if 1 <= n <= len(hits)))
            if valid and sentence.text:
                kept.append((sentence.text, valid))
            else:
                log.debug("dropped a reply sentence without a valid marker (cited %s)", list(sentence.cited))
        if not kept:
            return self._fall_back(retrieval, "the LLM's reply cited none of the passages")

        order = list(dict.fromkeys(index for _, indexes in kept for index in indexes))
        number = {index: n for n, index in enumerate(order, start=1)}
        text = " ".join(with_markers(sentence, [number[i] for i in indexes]) for sentence, indexes in kept)
        citations = tuple(
            self._quote(number[index], hits[index], [s for s, indexes in kept if index in indexes], question, keyword)
            for index in order
        )
        confidence = self.fallback.analyse(retrieval).confidence
        return Answer(question.text, text, citations, support="answered", confidence=confidence)

    def _quote(self, n: int, hit: ScoredChunk, citing: list[str], question: Question, keyword: KeywordView) -> Citation:
        """Cite the chunk's sentence(s) that best support the reply sentences citing it, verbatim with offsets."""
        chunk = hit.chunk
        spans = [(start, end) for start, end, _ in quotable_sentences(chunk)]
        if not spans:  # a chunk with no prose sentence at all: quote it whole
            return citation(n, hit, chunk.start, chunk.end, chunk.text)
        span_terms = [set(terms(chunk.text[start:end])) for start, end in spans]

        def overlap(words: set[str], index: int) -> float:
            return sum(keyword.idf(term) for term in words & span_terms[index])

        chosen: dict[int, float] = {}  # span index -> best score
        for sentence in citing:
            words = set(terms(sentence))
            scores = [overlap(words, index) for index in range(len(spans))]
            best = max(range(len(spans)), key=scores.__getitem__)  # the first on ties
            if scores[best] > 0:
                chosen[best] = max(chosen.get(best, 0.0), scores[best])
        if not chosen:  # the reply paraphrased beyond recognition: fall back to the question's words, then the top
            words = set(question.terms) | set(terms(question.text))
            best = max(range(len(spans)), key=lambda index: overlap(words, index))
            chosen[best] = 0.0

        ranked = sorted(chosen, key=lambda index: (-chosen[index], index))
        start, end = spans[ranked[0]]
        for index in ranked[1:]:  # add further supporting sentences while the quote stays short
            wider = (min(start, spans[index][0]), max(end, spans[index][1]))
            if wider[1] - wider[0] <= self.max_quote_chars:
                start, end = wider
        return citation(n, hit, chunk.start + start, chunk.start + end, chunk.text[start:end])

    def _invoke(self, inputs: dict[str, str]) -> str:
        """Run the chain, giving up after `timeout` seconds even if the client is still waiting.

        The client has the same timeout, but it counts per read and per retry; this bounds the whole call. On
        expiry the call is abandoned to a daemon thread, which ends when the client's own timeout fires.
        """
        if self.timeout is None or self.timeout <= 0:
            return self.chain.invoke(inputs)
        outcome: list[str | BaseException] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append(self.chain.invoke(inputs))
            except BaseException as exc:
                outcome.append(exc)
            finally:
                done.set()

        context = contextvars.copy_context()  # keeps LangChain's callbacks and tracing context for the thread
        threading.Thread(target=context.run, args=(run,), name="citebot-llm", daemon=True).start()
        if not done.wait(self.timeout):
            raise LLMDeadlineExceeded
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _fall_back(self, retrieval: Retrieval, reason: str) -> Answer:
        log.warning("%s; answering with the %s answerer", reason, self.fallback_name)
        answer = self.fallback.answer(retrieval)
        return replace(answer, note=f"{reason}; this is the {self.fallback_name} answer")


def failure_reason(exc: BaseException, timeout: float | None = None) -> str:
    """A one-line reason for a failed model call, from the exception's type and status only.

    Never the exception's message: a provider's authentication error repeats part of the key.
    """
    name = _sdk_name(exc)
    ancestry = {cls.__name__ for cls in type(exc).__mro__}
    within = f" within {timeout:g} s" if timeout else ""
    if isinstance(exc, LLMDeadlineExceeded):  # our own budget ran out: there is no SDK error to name
        return f"the LLM did not answer{within}"
    if isinstance(exc, TimeoutError) or any("Timeout" in cls for cls in ancestry):
        return f"the LLM did not answer{within} ({name})"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return f"the LLM returned HTTP {status} ({name})"
    if isinstance(exc, ConnectionError) or ancestry & {"APIConnectionError", "ConnectError", "NetworkError"}:
        return f"the LLM was unreachable ({name})"
    return f"the LLM call failed ({name})"


def _sdk_name(exc: BaseException) -> str:
    """The provider SDK's name for the error (`APITimeoutError`), not LangChain's wrapper (`OpenAITimeoutError`)."""
    for cls in type(exc).__mro__:
        if not cls.__module__.startswith("langchain"):
            return cls.__name__
    return type(exc).__name__


def split_reply(reply: str) -> list[ReplySentence]:
    """The reply's sentences with the passage numbers each cites.

    Models put markers before or after the period ("in Davos [1]." / "in Davos. [1]"); markers that open a
    sentence belong to the one before it, so both forms cite the same sentence.
    """
    sentences: list[tuple[str, list[int]]] = []
    for start, end in sentence_spans(reply):
        piece = reply[start:end].lstrip(BULLET_CHARS)
        leading = _LEADING_MARKERS.match(piece)
        if leading and sentences:
            sentences[-1][1].extend(_numbers(leading.group(0)))
            piece = piece[leading.end() :]
        cited = _numbers(piece)
        words = _SPACE_BEFORE_PUNCT.sub(r"\1", _MARKER.sub("", piece)).strip().lstrip(BULLET_CHARS)
        if any(ch.isalnum() for ch in words):
            sentences.append((words, cited))
        elif sentences:  # a marker-only piece ("[2]" after the last period)
            sentences[-1][1].extend(cited)
    return [ReplySentence(text, tuple(cited), bool(_REFUSAL.search(text))) for text, cited in sentences]


def _numbers(text: str) -> list[int]:
    numbers: list[int] = []
    for match in _MARKER.finditer(text):
        for part in re.split(r"\s*[,;]\s*", match.group(1)):
            bounds = [int(value) for value in re.findall(r"\d+", part)]
            if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] <= 20:  # "1-3"
                numbers.extend(range(bounds[0], bounds[1] + 1))
            else:
                numbers.extend(bounds)
    return numbers


def _strip_markers(text: str) -> str:
    return _SPACE_BEFORE_PUNCT.sub(r"\1", _MARKER.sub("", text)).strip()
