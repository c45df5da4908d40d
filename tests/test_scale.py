"""A corpus past SQLite's limit of 32,766 variables per statement: every Chroma call is batched, so ingesting,
re-ingesting, asking and removing all still work (one id per document in a single query failed at 8,900)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.embeddings import HashingEmbedder
from bot.engine import Engine
from bot.store import CALL_LIMIT, ChunkStore
from ingest.pipeline import IngestPipeline
from tests.conftest import citebot, cli_env

DOCUMENTS = 33_000  # one more document than SQLite's variable limit allows ids in one statement, and then some


def _write_corpus(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for number in range(count):
        (folder / f"note-{number:05d}.txt").write_text(
            f"Harbour note {number}: pilot {number} reported calm water at dawn and a crane on berth {number % 97}.",
            encoding="utf-8",
        )


class _CountingCollection:
    """A Chroma collection that records the largest number of ids, filter values and records of any call."""

    def __init__(self, wrapped: Any, largest: dict[str, int]) -> None:
        self._wrapped = wrapped
        self._largest = largest

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._wrapped, name)
        if name not in {"get", "upsert", "add", "delete", "query", "update"}:
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            sizes = [len(kwargs.get("ids") or []), *(len(values) for values in _filter_values(kwargs.get("where")))]
            result = method(*args, **kwargs)
            if name == "get":
                sizes.append(len(result["ids"]))
            self._largest[name] = max(self._largest.get(name, 0), *sizes)
            return result

        return counted


def _filter_values(where: Any) -> Iterator[list[Any]]:
    if isinstance(where, dict):
        for key, value in where.items():
            if key in ("$in", "$nin") and isinstance(value, list):
                yield value
            else:
                yield from _filter_values(value)
    elif isinstance(where, list):
        for item in where:
            yield from _filter_values(item)


@pytest.fixture(scope="module")
def big_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("scale")
    corpus = root / "corpus"
    _write_corpus(corpus, DOCUMENTS)
    settings = Settings(data_dir=root / "data", embedding_model="hashing", _env_file=None)  # type: ignore[call-arg]
    embedder = HashingEmbedder()
    store = ChunkStore(settings, embedder)
    largest: dict[str, int] = {}
    handles = store._open()
    counting = type(handles)(
        handles.client,
        *(
            _CountingCollection(c, largest)
            for c in (handles.chunks, handles.documents, handles.contents, handles.models)
        ),
    )
    store._handles = counting
    report = IngestPipeline(store, embedder).run([corpus])
    assert not report.failed and report.added == DOCUMENTS
    assert IngestPipeline(store, embedder).run([corpus]).unchanged == DOCUMENTS  # reads every record back
    store.close()
    return settings, corpus, largest


def test_no_call_grows_with_the_corpus(big_index: tuple[Settings, Path, dict[str, int]]) -> None:
    _, _, largest = big_index
    assert largest and max(largest.values()) <= CALL_LIMIT, largest


def test_a_question_is_answered_past_the_variable_limit(
    big_index: tuple[Settings, Path, dict[str, int]], tmp_path: Path
) -> None:
    settings, _, _ = big_index
    result = citebot("ask", "--json", "what did pilot 31337 report?", env=cli_env(settings), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["citations"], answer
    assert all("reported calm water" in citation["quote"] for citation in answer["citations"])
    # The retrieval finds the one note among 33,000 that names the pilot. (Which of the near-identical notes the
    # answer quotes first is the answer model's call, made here on the hashing embedder's made-up meanings.)
    engine = Engine(settings)
    retrieval = engine.retrieve(engine.readings("what did pilot 31337 report?")[0], 5)
    assert retrieval.hits[0].source.endswith("note-31337.txt"), [hit.source for hit in retrieval.hits]


def test_removing_every_document_past_the_variable_limit(
    big_index: tuple[Settings, Path, dict[str, int]], tmp_path: Path
) -> None:
    settings, corpus, _ = big_index
    for path in corpus.glob("*.txt"):
        path.unlink()
    embedder = HashingEmbedder()
    store = ChunkStore(settings, embedder)
    report = IngestPipeline(store, embedder).run([corpus])
    assert report.removed == DOCUMENTS and not report.failed
    assert store.documents() == {} and store.count_chunks() == 0
