"""Ingestion: the diff (added/changed/unchanged/removed), duplicates, dry runs, bad input and the CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.config import Settings
from bot.embeddings import HashingEmbedder
from bot.store import ChunkStore
from ingest.loaders import load
from ingest.pipeline import IngestPipeline
from tests.conftest import citebot, cli_env


def ingest(store: ChunkStore, embedder: HashingEmbedder, *roots: Path, dry_run: bool = False):
    return IngestPipeline(store, embedder).run(list(roots), dry_run=dry_run)


def assert_index_consistent(store: ChunkStore) -> None:
    """Every ready document has exactly its chunks, and there are no chunks without a document."""
    documents = store.documents(include_pending=True)
    assert all(record.ready for record in documents.values())
    total = 0
    for record in documents.values():
        chunks = [chunk for chunk, _ in store.chunks_of([record.doc_id])]
        assert len(chunks) == record.chunks
        total += len(chunks)
    assert store.count_chunks() == total


def test_first_run_adds_and_rerun_skips_without_embedding(store, embedder, corpus):
    first = ingest(store, embedder, corpus)
    assert (first.added, first.changed, first.unchanged, first.removed) == (2, 0, 0, 0)
    assert first.chunks_written > 10
    calls = embedder.calls
    second = ingest(store, embedder, corpus)
    assert (second.added, second.changed, second.unchanged, second.removed) == (0, 0, 2, 0)
    assert second.chunks_written == 0
    assert embedder.calls == calls, "unchanged documents must not be embedded again"
    assert_index_consistent(store)


def test_changed_document_is_replaced_and_deleted_one_removed(store, embedder, corpus):
    ingest(store, embedder, corpus)
    seoul = corpus / "china-sends-he-lifeng-to-seoul.txt"
    seoul.write_text(seoul.read_text() + "\nA new closing paragraph about Seoul talks.\n")
    (corpus / "bessent-meets-he-lifeng-in-davos.txt").unlink()
    report = ingest(store, embedder, corpus)
    assert (report.added, report.changed, report.unchanged, report.removed) == (0, 1, 0, 1)
    records = list(store.documents().values())
    assert len(records) == 1
    chunks = [chunk for chunk, _ in store.chunks_of([records[0].doc_id])]
    assert any("new closing paragraph" in chunk.text for chunk in chunks)
    assert_index_consistent(store)


def test_same_text_under_two_paths_is_stored_once_with_both_sources(store, embedder, corpus):
    (corpus / "copy").mkdir()
    (corpus / "copy" / "seoul.txt").write_bytes((corpus / "china-sends-he-lifeng-to-seoul.txt").read_bytes())
    report = ingest(store, embedder, corpus)
    assert report.added == 3
    records = store.documents()
    assert len(records) == 2
    seoul = next(record for record in records.values() if "Seoul" in record.title)
    assert len(seoul.sources) == 2
    # Removing one copy keeps the document under the other path.
    (corpus / "copy" / "seoul.txt").unlink()
    report = ingest(store, embedder, corpus)
    assert report.removed == 1
    seoul = next(record for record in store.documents().values() if "Seoul" in record.title)
    assert len(seoul.sources) == 1 and seoul.sources[0].endswith("china-sends-he-lifeng-to-seoul.txt")
    assert_index_consistent(store)


def test_a_copy_added_later_does_not_take_the_citations_over(store, embedder, corpus):
    """The same text ingested again under a path that sorts first: citations still name the first path ingested."""
    ingest(store, embedder, corpus)
    (corpus / "0-copy-of-seoul.txt").write_bytes((corpus / "china-sends-he-lifeng-to-seoul.txt").read_bytes())
    ingest(store, embedder, corpus)
    seoul = next(record for record in store.documents().values() if "Seoul" in record.title)
    assert len(seoul.sources) == 2
    assert seoul.source.endswith("china-sends-he-lifeng-to-seoul.txt")


def test_documents_outside_the_ingested_path_are_kept(store, embedder, corpus, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "note.md").write_text("# Harbour notes\n\nThe harbour master keeps the tide tables.\n")
    ingest(store, embedder, corpus)
    ingest(store, embedder, other)
    assert len(store.documents()) == 3
    (other / "note.md").unlink()
    report = ingest(store, embedder, corpus)
    assert report.removed == 0 and len(store.documents()) == 3


def test_dry_run_reports_the_diff_and_writes_nothing(store, embedder, corpus):
    report = ingest(store, embedder, corpus, dry_run=True)
    assert report.added == 2 and report.chunks_written > 0
    assert store.documents() == {}
    assert store.count_chunks() == 0


def test_chunks_quote_the_document_text_exactly(store, embedder, corpus):
    ingest(store, embedder, corpus)
    for record in store.documents().values():
        text = load(Path(record.source)).text
        for chunk in [chunk for chunk, _ in store.chunks_of([record.doc_id])]:
            assert text[chunk.start : chunk.end] == chunk.text
            assert chunk.title == record.title


def test_bad_files_are_reported_one_line_each_and_do_not_stop_the_run(store, embedder, corpus, monkeypatch):
    (corpus / "empty.txt").write_text("")
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (corpus / "binary.txt").write_bytes(b"abc\x00\x01\x02" * 50)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    (corpus / "big.txt").write_bytes(b"word " * (11 * 1024 * 1024))  # 55 MB
    (corpus / "locked.md").write_text("# Locked\n\nSecret words.\n")
    (corpus / ".hidden.txt").write_text("hidden files are never read")
    # chmod 0 does not stop root (CI runs as root), so deny the read the way the OS would.
    real_read_bytes = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path.name == "locked.md":
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    report = ingest(store, embedder, corpus)
    reasons = {Path(problem.source).name: problem.reason for problem in report.skipped + report.failed}
    assert report.added == 2
    assert {Path(p.source).name for p in report.skipped} == {"empty.txt", "image.png"}
    assert {Path(p.source).name for p in report.failed} == {
        "binary.txt",
        "broken.pdf",
        "big.txt",
        "locked.md",
    }
    assert "permission denied" in reasons["locked.md"]
    assert ".hidden.txt" not in reasons
    assert "empty" in reasons["empty.txt"]
    assert "unsupported file type .png" in reasons["image.png"]
    assert "binary" in reasons["binary.txt"]
    assert "PDF" in reasons["broken.pdf"]
    assert "too large" in reasons["big.txt"]
    assert all("\n" not in reason for reason in reasons.values())
    assert report.exit_code == 1


def test_a_file_that_fails_keeps_its_previous_version(store, embedder, corpus):
    ingest(store, embedder, corpus)
    seoul = corpus / "china-sends-he-lifeng-to-seoul.txt"
    seoul.write_bytes(b"\x00\x01binary now")
    report = ingest(store, embedder, corpus)
    assert len(report.failed) == 1 and report.removed == 0
    assert len(store.documents()) == 2


def test_cli_json_summary_and_exit_codes(settings: Settings, corpus: Path, tmp_path: Path):
    env = cli_env(settings)
    result = citebot("ingest", str(corpus), "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == {
        "added",
        "changed",
        "unchanged",
        "removed",
        "skipped",
        "failed",
        "chunks_written",
        "seconds",
    }
    assert summary["added"] == 2 and summary["chunks_written"] > 0
    assert json.loads(citebot("ingest", "corpus", "--json", env=env, cwd=tmp_path).stdout)["unchanged"] == 2

    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 nope")
    failed = citebot("ingest", str(corpus), "--json", env=env, cwd=tmp_path)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["failed"][0]["source"] == "corpus/broken.pdf"

    missing = citebot("ingest", "no-such-folder", env=env, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "no-such-folder" in missing.stderr


def test_python_dash_m_ingest_dry_run(settings: Settings, corpus: Path, tmp_path: Path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ingest", str(corpus), "--dry-run"],
        env=cli_env(settings),
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Would ingest" in result.stdout and "would add" in result.stdout


def test_sources_lists_titles_sources_and_chunks(settings: Settings, corpus: Path, tmp_path: Path):
    env = cli_env(settings, COLUMNS="200")
    citebot("ingest", "corpus", env=env, cwd=tmp_path)
    listing = citebot("sources", env=env, cwd=tmp_path).stdout
    assert "China sends He Lifeng to Seoul" in listing
    assert "corpus/china-sends-he-lifeng-to-seoul.txt" in listing


@pytest.mark.server
def test_ingest_and_read_back_through_a_chroma_server(chroma_server, embedder, corpus, tmp_path):
    host, port = chroma_server
    settings = Settings(
        data_dir=tmp_path / "data",
        chroma_host=host,
        chroma_port=port,
        collection="server_test",
        embedding_model="hashing",
        _env_file=None,  # type: ignore[call-arg]
    )
    server_store = ChunkStore(settings, embedder)
    report = ingest(server_store, embedder, corpus)
    assert report.added == 2
    reader = ChunkStore(settings, HashingEmbedder())
    assert len(reader.documents()) == 2
    hits = reader.search(embedder.embed_query("why Seoul neutral staging ground"), 3)
    texts = {chunk.id: chunk.text for chunk, _ in reader.chunks_of(reader.documents())}
    assert any("neutral staging ground" in texts[chunk_id] for chunk_id, _ in hits)
    assert not (tmp_path / "data" / "chroma").exists(), "server mode must not create an embedded index"
    again = ingest(server_store, embedder, corpus)
    assert again.unchanged == 2
