"""The core safety proof: an ingest run killed mid-write (kill -9, or Ctrl-C) leaves the previous index whole.

A corpus of generated documents is ingested (v1); every document is then rewritten (v2) and `citebot ingest`
is started in a subprocess and stopped once it reports embedding progress, i.e. while it is writing. The index
is then inspected directly: every source must still have one whole, ready document, and the index must answer
queries. A rerun must then finish the job and leave nothing half-written behind.

The scenario runs once per signal (module-scoped fixture) and the tests read what it recorded.
"""

from __future__ import annotations

import json
import queue
import random
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from bot.config import Settings
from bot.embeddings import HashingEmbedder
from bot.store import ChunkStore
from bot.types import DocumentRecord
from ingest.pipeline import IngestPipeline
from ingest.splitter import content_hash
from tests.conftest import VENV_BIN, citebot, cli_env

DOCUMENTS = 1500  # about 2 chunks each: ~6 embedding batches, so there is a "mid-write" to stop in
ATTEMPTS = 2  # on a lost race (the run finished before the signal) retry once with twice the documents
PROGRESS = re.compile(r"citebot\.progress: Embedding documents: (\d+)/(\d+)$")  # `citebot -v`: logged
LINE_TIMEOUT_SECONDS = 120.0
EXIT_TIMEOUT_SECONDS = 60.0
WORDS = (
    "harbour tide ledger orchard granite signal copper lantern meadow quarry ferry beacon canal willow market "
    "census tariff summit cargo frontier council archive glacier vessel pilot warden bridge mill furnace"
).split()


# -- the corpus ----------------------------------------------------------------------------------------------


def document_text(index: int, version: int) -> str:
    """A headline and three short paragraphs (about two chunks); distinct for every (index, version)."""
    rng = random.Random(index * 1_000_003 + version)
    paragraphs = [f"Report {index} revision {version} on the {rng.choice(WORDS)} question"]
    for _ in range(3):
        sentences = []
        for _ in range(4):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12)))
            sentences.append(f"Item{index}v{version} {words}.")
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs) + "\n"


def source_name(index: int) -> str:
    return f"corpus/doc-{index:05d}.txt"


def write_corpus(base: Path, count: int, version: int) -> dict[str, str]:
    """Write the corpus under `base/corpus`; returns source -> doc_id (the content hash of its text)."""
    ids = {}
    for index in range(count):
        text = document_text(index, version)
        (base / source_name(index)).write_text(text, encoding="utf-8")
        ids[source_name(index)] = content_hash(text)
    assert len(set(ids.values())) == count, "every document must have distinct text"
    return ids


def settings_for(base: Path) -> Settings:
    """What the `settings` fixture gives (hashing embedder), for a module-scoped data dir."""
    return Settings(data_dir=base / "data", embedding_model="hashing", _env_file=None)  # type: ignore[call-arg]


# -- reading the index ---------------------------------------------------------------------------------------


@contextmanager
def open_store(settings: Settings) -> Iterator[ChunkStore]:
    """A fresh reader; closed afterwards so this process never holds the index while `citebot` writes it."""
    store = ChunkStore(settings, HashingEmbedder())
    try:
        yield store
    finally:
        store.close()


@dataclass(frozen=True)
class IndexState:
    documents: dict[str, DocumentRecord]  # every record, pending included
    chunks_by_doc: dict[str, int]  # chunks found in the store per doc_id (via chunks_of)
    total_chunks: int  # store.count_chunks(): catches chunks that belong to no record
    hits: list[tuple[str, float]]  # (chunk id, similarity) for the sample query

    @property
    def ready(self) -> dict[str, DocumentRecord]:
        return {doc_id: record for doc_id, record in self.documents.items() if record.ready}

    @property
    def pending(self) -> dict[str, DocumentRecord]:
        return {doc_id: record for doc_id, record in self.documents.items() if not record.ready}

    def ready_by_source(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for record in self.ready.values():
            for source in record.sources:
                result.setdefault(source, []).append(record.doc_id)
        return result


def snapshot(settings: Settings, query: str) -> IndexState:
    with open_store(settings) as store:
        ready = store.documents()
        documents = store.documents(include_pending=True)
        assert set(ready) == {doc_id for doc_id, record in documents.items() if record.ready}
        chunks_by_doc: dict[str, int] = dict.fromkeys(documents, 0)
        for chunk, _ in store.chunks_of(list(documents)):
            chunks_by_doc[chunk.doc_id] += 1
        hits = store.search(store_query(query), 5)
        return IndexState(documents, chunks_by_doc, store.count_chunks(), hits)


def store_query(text: str) -> Any:
    return HashingEmbedder().embed_query(text)


def first_chunk(settings: Settings, doc_id: str) -> tuple[str, str]:
    """(chunk id, text) of a document's first chunk: its text is a query that chunk must answer."""
    with open_store(settings) as store:
        chunks = [chunk for chunk, _ in store.chunks_of([doc_id])]
    first = min(chunks, key=lambda chunk: chunk.position)
    return first.id, first.text


# -- the scenario --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Indexed:
    """A folder with a v1 corpus ingested to completion."""

    base: Path
    count: int
    v1_ids: dict[str, str]  # source -> doc_id
    state: IndexState
    query: str  # the text of one v1 chunk
    expected_hit: str  # that chunk's id


def ingest_v1(base: Path, count: int) -> Indexed:
    (base / "corpus").mkdir(parents=True)
    v1_ids = write_corpus(base, count, version=1)
    settings = settings_for(base)
    result = citebot("ingest", "corpus", "--json", env=cli_env(settings), cwd=base, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["added"] == count and summary["failed"] == []
    # The last document (in source order) is written last, so an interrupted re-ingest never got to replace it.
    query_source = source_name(count - 1)
    expected_hit, query = first_chunk(settings, v1_ids[query_source])
    state = snapshot(settings, query)
    # What v1 looks like, so the interrupted run can be compared with it.
    assert state.ready_by_source() == {source: [doc_id] for source, doc_id in v1_ids.items()}
    assert not state.pending
    assert all(state.chunks_by_doc[doc_id] == record.chunks > 0 for doc_id, record in state.ready.items())
    assert state.total_chunks == sum(record.chunks for record in state.ready.values())
    assert state.hits[0][0] == expected_hit and state.hits[0][1] > 0.9
    return Indexed(base, count, v1_ids, state, query, expected_hit)


@dataclass(frozen=True)
class Interrupted:
    how: str  # "SIGKILL" or "SIGINT"
    v1: Indexed
    v2_ids: dict[str, str]
    progress: list[tuple[int, int]]  # "Embedding documents: k/N" lines seen before the signal
    returncode: int
    stderr: list[str]
    after: IndexState  # the index right after the interrupted run
    rerun: subprocess.CompletedProcess[str]
    v2_query: str
    v2_expected_hit: str
    final: IndexState = field(repr=False)  # the index after the rerun


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def interrupt_ingest(base: Path, how: str) -> tuple[int, list[str], list[tuple[int, int]], bool]:
    """Start `citebot ingest`, signal it at the first "Embedding documents: k/N" line with k < N.

    Returns (exit code, stderr lines, progress seen before the signal, whether it was stopped mid-write).
    """
    process = subprocess.Popen(
        [str(VENV_BIN / "citebot"), "-v", "ingest", "corpus"],
        cwd=base,
        env=cli_env(settings_for(base)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # not a TTY: progress is logged, and -v shows it
        text=True,
    )
    assert process.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process.stderr, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    progress: list[tuple[int, int]] = []
    mid_write = False
    try:
        while True:
            line = lines.get(timeout=LINE_TIMEOUT_SECONDS)  # polling the pipe; raises queue.Empty if it hangs
            if line is None:
                break  # it exited on its own: the race was lost
            seen.append(line)
            match = PROGRESS.search(line)
            if match:
                done, total = int(match.group(1)), int(match.group(2))
                progress.append((done, total))
                if done < total:
                    mid_write = True
                    process.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGINT)
                    break
                break  # the first progress line is the last one: too late to be mid-write
    finally:
        if not mid_write and process.poll() is None:
            process.kill()
        returncode = process.wait(timeout=EXIT_TIMEOUT_SECONDS)
        reader.join(timeout=EXIT_TIMEOUT_SECONDS)
    while True:
        try:
            rest = lines.get_nowait()
        except queue.Empty:
            break
        if rest is not None:
            seen.append(rest)
    return returncode, seen, progress, mid_write


def run_scenario(v1: Indexed, workdir: Path, how: str) -> Interrupted | None:
    """Copy the v1 index, rewrite every document, interrupt the re-ingest, inspect, then rerun it to the end."""
    base = workdir / "index"
    shutil.copytree(v1.base, base)
    v2_ids = write_corpus(base, v1.count, version=2)
    settings = settings_for(base)
    returncode, stderr, progress, mid_write = interrupt_ingest(base, how)
    if not mid_write and not progress and returncode != 0:
        pytest.fail(f"`citebot ingest` failed on its own (exit {returncode}): {stderr[-3:]}")
    if not mid_write or (how == "SIGKILL" and returncode == 0):
        return None  # the signal came after the writing (or the exit): a vacuous run, retry with more documents
    after = snapshot(settings, v1.query)
    rerun = citebot("ingest", "corpus", "--json", env=cli_env(settings), cwd=base, timeout=300)
    query_source = source_name(v1.count - 1)
    v2_expected_hit, v2_query = first_chunk(settings, v2_ids[query_source])
    final = snapshot(settings, v2_query)
    return Interrupted(how, v1, v2_ids, progress, returncode, stderr, after, rerun, v2_query, v2_expected_hit, final)


@pytest.fixture(scope="module")
def indexed_v1(tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    return ingest_v1(tmp_path_factory.mktemp("v1"), DOCUMENTS)


@pytest.fixture(scope="module", params=["SIGKILL", "SIGINT"])
def interrupted(
    request: pytest.FixtureRequest, indexed_v1: Indexed, tmp_path_factory: pytest.TempPathFactory
) -> Interrupted:
    how = str(request.param)
    v1 = indexed_v1
    for attempt in range(ATTEMPTS):
        if attempt:
            v1 = ingest_v1(tmp_path_factory.mktemp(f"v1-{how}-{attempt}"), v1.count * 2)
        result = run_scenario(v1, tmp_path_factory.mktemp(f"{how}-{attempt}"), how)
        if result is not None:
            return result
    pytest.fail(f"could not {how} `citebot ingest` mid-write in {ATTEMPTS} attempts (up to {v1.count} documents)")


# -- the proof -----------------------------------------------------------------------------------------------


def test_the_run_was_stopped_mid_write(interrupted: Interrupted) -> None:
    """Not vacuous: the signal hit a run that had written part of v2 and not yet finished."""
    done, total = interrupted.progress[-1]
    assert 0 < done < total == interrupted.v1.count
    v2 = set(interrupted.v2_ids.values())
    assert v2 & set(interrupted.after.documents), "some v2 documents were written before the signal"
    assert not v2 <= set(interrupted.after.ready), "the run had not finished writing v2"
    expected = -signal.SIGKILL if interrupted.how == "SIGKILL" else 130
    assert interrupted.returncode == expected


def test_ctrl_c_exits_130_with_one_line(interrupted: Interrupted) -> None:
    if interrupted.how != "SIGINT":
        pytest.skip("kill -9 gives the process no chance to say anything")
    assert interrupted.returncode == 130
    messages = [
        line for line in interrupted.stderr if line.strip() and not re.match(r"^\d{4}-\d\d-\d\d .* (DEBUG|INFO) ", line)
    ]
    assert len(messages) == 1, f"expected one line besides progress, got: {messages}"
    assert messages[0].startswith("citebot: interrupted")
    assert "Traceback" not in "\n".join(interrupted.stderr)


def test_previous_index_is_whole_and_queryable_after_interrupt(interrupted: Interrupted) -> None:
    after, v1, v2_ids = interrupted.after, interrupted.v1, interrupted.v2_ids
    by_source = after.ready_by_source()
    # Every source still has a ready document: its old version, or (once written whole) its new one.
    for source, v1_id in v1.v1_ids.items():
        assert by_source.get(source), f"{source} lost its indexed version"
        assert set(by_source[source]) <= {v1_id, v2_ids[source]}
        if v2_ids[source] not in after.documents:  # not reached by the interrupted run: untouched
            assert by_source[source] == [v1_id]
            assert after.ready[v1_id].chunks == v1.state.ready[v1_id].chunks
    assert any(v2_ids[source] not in after.documents for source in v1.v1_ids), "some documents were never reached"
    # No ready document is half-written: each has exactly the chunks its record promises.
    broken = {
        doc_id: (record.chunks, after.chunks_by_doc[doc_id])
        for doc_id, record in after.ready.items()
        if after.chunks_by_doc[doc_id] != record.chunks
    }
    assert not broken, f"ready documents with missing or extra chunks (expected, found): {list(broken.items())[:5]}"
    # Searching still works and finds the same passage as before the run.
    assert after.hits, "the index must answer queries"
    assert after.hits[0][0] == v1.expected_hit and after.hits[0][1] > 0.9


def test_every_source_keeps_a_whole_version(interrupted: Interrupted) -> None:
    """Each file is indexed by its old version, or by its complete new one: never by neither or half of one."""
    after, v1 = interrupted.after, interrupted.v1
    for source in v1.v1_ids:
        holders = [record for record in after.ready.values() if source in record.sources]
        assert holders, f"{source} lost its previous version"
        for record in holders:
            assert after.chunks_by_doc[record.doc_id] == record.chunks


def test_every_source_maps_to_exactly_one_ready_document_after_interrupt(interrupted: Interrupted) -> None:
    by_source = interrupted.after.ready_by_source()
    duplicated = {source: ids for source, ids in by_source.items() if len(ids) != 1}
    assert set(by_source) == set(interrupted.v1.v1_ids)
    assert not duplicated, f"{len(duplicated)} sources map to several ready documents, e.g. {next(iter(duplicated))}"


def test_rerun_completes_and_leaves_no_leftovers(interrupted: Interrupted) -> None:
    rerun, final = interrupted.rerun, interrupted.final
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["failed"] == [] and summary["removed"] == 0
    assert summary["changed"] + summary["unchanged"] == interrupted.v1.count
    # Every source now maps to its v2 document only; v1 is gone, and nothing is pending.
    assert final.ready_by_source() == {source: [doc_id] for source, doc_id in interrupted.v2_ids.items()}
    assert not final.pending
    assert set(final.documents) == set(interrupted.v2_ids.values())
    assert all(final.chunks_by_doc[doc_id] == record.chunks > 0 for doc_id, record in final.ready.items())
    assert final.total_chunks == sum(record.chunks for record in final.ready.values()), "half-written leftovers"
    assert final.hits[0][0] == interrupted.v2_expected_hit and final.hits[0][1] > 0.9


# -- a crash inside a batch, placed exactly ------------------------------------------------------------------

# Runs `citebot ingest TARGET` in-process with small embedding batches and stops it in the middle of the
# `crash_on`-th chunk write, after half of that batch's chunks are stored: by SIGKILL ("kill") or by a
# KeyboardInterrupt ("ctrl-c"), exactly where a real one is most harmful. Arguments: batch size, crash_on, how,
# target (tests/test_feed_interrupt.py passes a feed URL).
CRASH_DRIVER = """
import os, signal, sys
import ingest.pipeline
from bot.cli import main
from bot.store import ChunkStore

batch_chunks, crash_on, how, target = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ingest.pipeline.EMBED_BATCH_CHUNKS = batch_chunks
original = ChunkStore.add_chunks
calls = []

def add_chunks(self, chunks, vectors, sentences=None):
    calls.append(len(chunks))
    if len(calls) == crash_on:
        half = len(chunks) // 2
        original(self, chunks[:half], vectors[:half], sentences[:half] if sentences else None)
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise KeyboardInterrupt
    original(self, chunks, vectors, sentences)

ChunkStore.add_chunks = add_chunks
sys.exit(main(["ingest", target]))
"""
SMALL_CORPUS = 60
SMALL_BATCH_CHUNKS = 16
CRASH_ON_BATCH = 3


@pytest.fixture(scope="module")
def small_v1(tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    return ingest_v1(tmp_path_factory.mktemp("small-v1"), SMALL_CORPUS)


@pytest.mark.parametrize("how", ["kill", "ctrl-c"])
def test_crash_in_the_middle_of_a_batch(
    how: str, small_v1: Indexed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "index"
    shutil.copytree(small_v1.base, base)
    settings = settings_for(base)
    env = cli_env(settings)
    query, before = small_v1.query, small_v1.state
    v2_ids = write_corpus(base, SMALL_CORPUS, version=2)

    crashed = subprocess.run(
        [str(VENV_BIN / "python"), "-c", CRASH_DRIVER, str(SMALL_BATCH_CHUNKS), str(CRASH_ON_BATCH), how, "corpus"],
        cwd=base,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    after = snapshot(settings, query)
    written_v2 = {doc_id: record for doc_id, record in after.documents.items() if doc_id in set(v2_ids.values())}
    assert written_v2, "batches before the crash were written"
    if how == "kill":
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        # The batch being written is left pending, with only part of its chunks: readers must not see it.
        pending = after.pending.items()
        half_written = {doc_id for doc_id, record in pending if after.chunks_by_doc[doc_id] < record.chunks}
        assert half_written, "the crash must land after some of the batch's chunks were stored"
        assert not half_written & set(after.ready)
    else:
        assert crashed.returncode == 130, crashed.stderr
        assert crashed.stderr.strip().splitlines()[-1].startswith("citebot: interrupted")
        assert "Traceback" not in crashed.stderr
        # Ctrl-C takes the half-written batch out at once: nothing pending, no stray chunks.
        assert not after.pending
        assert after.total_chunks == sum(record.chunks for record in after.ready.values())
    # Either way every file keeps exactly one whole version (the old one, or a new one from a finished batch),
    # every ready document is whole, and search works.
    by_source = after.ready_by_source()
    assert set(by_source) == {source for record in before.ready.values() for source in record.sources}
    assert all(len(ids) == 1 for ids in by_source.values())
    assert all(after.chunks_by_doc[doc_id] == record.chunks for doc_id, record in after.ready.items())
    assert after.hits and after.hits[0][0].split(":")[0] in after.ready

    # The files change once more before the next run (in-process here, to keep the file fast): the leftovers of
    # the crashed batch are then wanted by nobody, and only the run's repair step can remove them.
    v3_ids = write_corpus(base, SMALL_CORPUS, version=3)
    monkeypatch.chdir(base)  # sources are paths relative to the working directory
    with open_store(settings) as store:
        report = IngestPipeline(store, HashingEmbedder()).run([Path("corpus")])
    assert report.exit_code == 0 and report.changed == SMALL_CORPUS
    final = snapshot(settings, query)
    assert final.ready_by_source() == {source: [doc_id] for source, doc_id in v3_ids.items()}
    assert set(final.documents) == set(v3_ids.values())
    assert not final.pending
    assert all(final.chunks_by_doc[doc_id] == record.chunks for doc_id, record in final.ready.items())
    assert final.total_chunks == sum(record.chunks for record in final.ready.values())
