"""Questions asked while the corpus changes: another process ingests and deletes documents, a Chroma server goes
away and comes back. Answers must never fail because of it, and every quote stays verbatim.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.config import Settings
from bot.engine import Engine
from bot.errors import StoreError
from bot.types import Answer
from ingest.loaders import load
from ingest.pipeline import IngestPipeline
from tests.chroma import start_chroma
from tests.conftest import ROOT, citebot, cli_env, free_port

QUESTIONS = [
    "why Seoul and not Beijing?",
    "who leads the U.S. side?",
    "what did Bessent say in Davos?",
    "Who is He Lifeng?",
    "What happens at the summit?",
    "What is the Revision number of the story?",
]

# The writer: every cycle it adds two new revisions of seed articles (unique file names) and deletes the previous
# two, then ingests the folder, so the other process's index changes about once a second for `seconds`.
WRITER = """
import shutil, sys, time
from pathlib import Path
from bot.config import Settings
from bot.embeddings import HashingEmbedder
from bot.store import ChunkStore
from ingest.pipeline import IngestPipeline

data_dir, folder, seeds, seconds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(","), float(sys.argv[4])
settings = Settings(data_dir=data_dir, embedding_model="hashing", _env_file=None)
embedder = HashingEmbedder()
pipeline = IngestPipeline(ChunkStore(settings, embedder), embedder)
seed_dir = Path(sys.argv[5])
deadline = time.monotonic() + seconds
cycle = 0
while time.monotonic() < deadline:
    cycle += 1
    for old in folder.glob("*.txt"):
        old.unlink()
    for name in seeds:
        text = (seed_dir / name).read_text(encoding="utf-8")
        (folder / f"r{cycle}-{name}").write_text(f"Revision {cycle} of the story.\\n\\n{text}", encoding="utf-8")
    report = pipeline.run([folder])
    assert not report.failed, report.failed
print(cycle)
"""


def revision_text(source: str, seed_dir: Path) -> str:
    """The text the writer gave a generated document, rebuilt from its name (the file may be gone by now)."""
    match = re.fullmatch(r".*r(\d+)-(.+\.txt)", source)
    assert match, source
    seed = (seed_dir / match[2]).read_text(encoding="utf-8")
    return f"Revision {match[1]} of the story.\n\n{seed}"


def check_verbatim(answer: Answer, seed_dir: Path) -> None:
    for citation in answer.citations:
        if "/generated/" in f"/{citation.source}":
            text = revision_text(citation.source, seed_dir)
        else:
            text = load(Path(citation.source)).text
        assert text[citation.start : citation.end] == citation.quote, citation


def test_questions_never_fail_while_another_process_ingests_and_deletes(
    settings: Settings, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 threads ask for 30 s while another process adds and deletes documents about once a second."""
    monkeypatch.chdir(tmp_path)
    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([Path("corpus")])
    generated = tmp_path / "generated"
    generated.mkdir()
    seeds = sorted(path.name for path in corpus.glob("*.txt"))[:2]
    seconds = 30.0
    arguments = [str(settings.data_dir), str(generated), ",".join(seeds), str(seconds), str(corpus)]
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, *arguments],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: list[BaseException] = []
    answered: list[int] = [0, 0, 0, 0]
    revisions_seen: set[str] = set()
    stop = threading.Event()

    def ask_continuously(slot: int) -> None:
        n = slot
        while not stop.is_set():
            try:
                answer = engine.ask(QUESTIONS[n % len(QUESTIONS)])
                check_verbatim(answer, corpus)
                revisions_seen.update(c.source for c in answer.citations if "generated" in c.source)
                answered[slot] += 1
            except BaseException as exc:  # every failure is the finding
                errors.append(exc)
            n += 1

    threads = [threading.Thread(target=ask_continuously, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    try:
        out, err = writer.communicate(timeout=seconds + 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert writer.returncode == 0, err
    assert errors == [], f"{len(errors)} failed questions, first: {errors[0]!r}"
    cycles = int(out.strip())
    assert cycles >= 5, f"the writer only managed {cycles} ingest cycles"
    assert all(count >= 10 for count in answered), answered
    assert len(revisions_seen) >= 2, "the readers never saw the writer's documents"


def test_a_slow_reload_does_not_stall_questions(
    settings: Settings, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one thread reloads the corpus (here: slowed to 2 s), other questions answer from the old snapshot."""
    monkeypatch.chdir(corpus.parent)
    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([Path("corpus")])
    engine.ask(QUESTIONS[0])  # the first load
    changes_since = engine.store.changes_since
    reloading = threading.Event()

    def slow_changes(moment: float) -> list:  # type: ignore[type-arg]
        reloading.set()
        time.sleep(2.0)
        return changes_since(moment)

    (corpus / "extra.txt").write_text("A lighthouse keeper on Skerryvore keeps the lamp lit.\n", encoding="utf-8")
    IngestPipeline(engine.store, engine.embedder).run([Path("corpus")])
    monkeypatch.setattr(engine.store, "changes_since", slow_changes)
    engine.corpus._checked_at = -float("inf")  # due for a check now
    reloader = threading.Thread(target=engine.ask, args=(QUESTIONS[1],))
    reloader.start()
    assert reloading.wait(10)
    started = time.monotonic()
    answer = engine.ask(QUESTIONS[0])
    elapsed = time.monotonic() - started
    reloader.join()
    assert elapsed < 1.0, f"a question waited {elapsed:.1f} s for the reload"
    assert answer.citations
    monkeypatch.undo()
    assert any("Skerryvore" in c.quote for c in engine.ask("Who keeps the lamp lit on Skerryvore?").citations)


def ask_until_answered(engine: Engine, question: str, timeout: float) -> Answer:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return engine.ask(question)
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.server
def test_a_chroma_server_that_goes_away_gives_one_line_and_recovers(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    db = tmp_path / "chroma-db"
    server = start_chroma(db, port)
    try:
        settings = Settings(  # type: ignore[call-arg]
            data_dir=tmp_path / "data", chroma_host="127.0.0.1", chroma_port=port, embedding_model="hashing"
        )
        monkeypatch.chdir(tmp_path)
        engine = Engine(settings)
        deadline = time.monotonic() + 60
        while True:
            try:
                IngestPipeline(engine.store, engine.embedder).run([Path("corpus")])
                break
            except StoreError:
                assert time.monotonic() < deadline, "the Chroma server did not start"
                engine = Engine(settings)
                time.sleep(0.3)
        before = engine.ask(QUESTIONS[0])
        assert before.citations

        server.terminate()
        server.wait(timeout=20)
        with pytest.raises(StoreError) as failure:
            engine.ask(QUESTIONS[0])
        message = str(failure.value)
        assert "\n" not in message and f"127.0.0.1:{port}" in message
        env = cli_env(settings, CITEBOT_CHROMA_HOST="127.0.0.1", CITEBOT_CHROMA_PORT=str(port))
        result = citebot("ask", QUESTIONS[0], env=env, cwd=tmp_path)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and f"Chroma server at 127.0.0.1:{port}" in result.stderr, result.stderr

        server = start_chroma(db, port)
        answer = ask_until_answered(engine, QUESTIONS[0], timeout=60)
        assert (answer.support, answer.citations) == (before.support, before.citations)  # as before it went away
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_chunk_reads_leave_out_chunks_deleted_meanwhile(
    settings: Settings, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedded Chroma fails a whole read when another process deleted one of its ids ("Error finding id"): the
    chunks still there are read, the deleted one is left out; a read that fails for every chunk still fails."""
    engine = Engine(settings)
    IngestPipeline(engine.store, engine.embedder).run([corpus])
    collection = engine.store._open().chunks
    ids = collection.get(include=[])["ids"][:3]
    expected = engine.store.stored_chunks(ids)
    assert set(expected) == set(ids)
    real_get = collection.get

    def get_as_if_deleted(*args: object, ids: list[str], **kwargs: object) -> object:
        if "gone" in ids:
            raise RuntimeError("Error executing plan: Internal error: Error finding id")
        return real_get(*args, ids=ids, **kwargs)

    monkeypatch.setattr(collection, "get", get_as_if_deleted)
    assert set(engine.store.stored_chunks([*ids, "gone"])) == set(ids)
    with pytest.raises(StoreError, match="cannot read chunks"):
        engine.store.stored_chunks(["gone"])
