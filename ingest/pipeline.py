"""One ingestion run: repair, scan (load files, fetch URLs), plan, then split, embed and write, with a report.

Safety comes from the order of writes. Leftovers of an interrupted run (pending records) are removed first.
New documents are written as pending records, then their chunks, then flipped to ready; only then are old
versions re-pointed or removed. A run killed at any point leaves every previously ready document whole, and
readers never see a half-written one. Web pages go the same way: a page's fetch state (its validators, its feed
entry) rides on its document record, written when the document turns ready, and a feed's validators are stored
only after every entry of the feed is in the index, so a crash can never make a re-run skip a page it lacks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.answering.sentences import embed_chunks
from bot.config import Settings
from bot.embeddings import Embedder
from bot.errors import IngestError, SkippedFile
from bot.store import ChunkStore, heading_key
from bot.types import Chunk, ChunkSentences, ChunkSpan, DocumentContent, DocumentRecord
from ingest.fetch import Fetcher, FetchOptions, is_url
from ingest.indexer import Plan, Problem, Scanned, in_scope, make_plan
from ingest.loaders import Document, display_path, load, walk
from ingest.splitter import Splitter, content_hash
from ingest.web import WebScan, WebScanner

__all__ = ["EMBED_BATCH_CHUNKS", "IngestPipeline", "IngestReport", "Problem", "Target"]

log = logging.getLogger(__name__)

# Chunks embedded per model call: big enough to keep the model busy, small enough to bound memory.
EMBED_BATCH_CHUNKS = 512

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class IngestReport:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[Problem] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    chunks_written: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0  # loading the model, before the first chunk could be embedded
    embed_seconds: float = 0.0  # embedding the chunks, once loaded
    dry_run: bool = False
    plan: Plan | None = None  # what the run did (or, dry, would do), source by source

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    @property
    def chunks_per_second(self) -> float:
        """The embedding rate, the model's load left out."""
        return self.chunks_written / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "skipped": [{"source": p.source, "reason": p.reason} for p in self.skipped],
            "failed": [{"source": p.source, "reason": p.reason} for p in self.failed],
            "chunks_written": self.chunks_written,
            "seconds": round(self.seconds, 2),
        }
        if self.dry_run and self.plan is not None:
            data["dry_run"] = True
            data["plan"] = {
                "added": self.plan.added,
                "changed": self.plan.changed,
                "removed": self.plan.removed,
            }
        return data


Target = Path | str  # a file or folder, or an http(s) URL (a page, feed or sitemap)


class IngestPipeline:
    """Cheap to construct: the model loads on the first document that needs embedding, the HTTP client on the
    first URL. Runs are serialized, so one pipeline can be shared by writers in one process (the watcher and
    Discord's /ingest)."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        progress: Progress | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._progress = progress or (lambda stage, done, total: None)
        self.fetcher = fetcher or Fetcher()
        self._lock = threading.Lock()

    @classmethod
    def for_settings(
        cls, settings: Settings, store: ChunkStore, embedder: Embedder, progress: Progress | None = None
    ) -> IngestPipeline:
        """The pipeline with the fetch settings (private addresses, timeouts, size cap, User-Agent) applied."""
        return cls(store, embedder, progress=progress, fetcher=Fetcher(FetchOptions.from_settings(settings)))

    def run(self, targets: Sequence[Target], dry_run: bool = False, prune: bool = False) -> IngestReport:
        """Ingest files, folders and URLs; `prune` removes pages that a feed or sitemap no longer lists."""
        with self._lock:
            return self._run(targets, dry_run, prune)

    def _run(self, targets: Sequence[Target], dry_run: bool, prune: bool) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport(dry_run=dry_run)
        urls = [target for target in targets if isinstance(target, str) and is_url(target)]
        roots = [Path(target) for target in targets if not (isinstance(target, str) and is_url(target))]
        if not dry_run:
            self.repair()
        existing = self._store.documents()
        scanned, kept = self._scan(roots, report)
        web = WebScan()
        if urls:
            web = WebScanner(self.fetcher, existing, self._store.feed_states(), self._progress, prune).scan(urls)
            scanned.update(web.scanned)
            kept |= web.kept
            report.failed.extend(web.failed)

        def covers(source: str) -> bool:
            return in_scope(source, roots) or source in web.moved or (prune and source in web.gone)

        plan = make_plan(existing, scanned, covers, kept, web.unchanged)
        report.added, report.changed = len(plan.added), len(plan.changed)
        report.unchanged, report.removed = len(plan.unchanged), len(plan.removed)
        report.plan = plan
        if dry_run:
            splitter = self._splitter() if plan.new_documents else None
            report.chunks_written = sum(len(splitter.split(doc)) for doc in plan.new_documents.values() if splitter)
        else:
            current = {doc_id: set(record.sources) for doc_id, record in existing.items()}
            report.chunks_written = self._write(plan, existing, current, report)
            # What no new document took over: files removed, and copies re-pointed.
            self._store.put_documents(
                [
                    r
                    for r in plan.updates
                    if r.doc_id in current and (set(r.sources) != current[r.doc_id] or r.web != existing[r.doc_id].web)
                ]
            )
            self._store.delete_documents([doc_id for doc_id in plan.deletions if doc_id in current])
            # Last: the feeds' validators, now that every page they list is in the index.
            self._store.put_feed_states(web.feeds)
        report.seconds = time.perf_counter() - started
        return report

    def repair(self) -> int:
        """Remove what an interrupted run left half-written, and tombstones old enough to forget; returns how many
        documents were cleaned."""
        pending = [doc_id for doc_id, record in self._store.documents(include_pending=True).items() if not record.ready]
        if pending:
            log.info("removing %d half-written document(s) left by an interrupted run", len(pending))
            self._store.delete_documents(pending)
        self._store.prune_tombstones()
        self._store.drop_word_vectors()
        return len(pending)

    def _splitter(self) -> Splitter:
        return Splitter(self._embedder.count_tokens, max_tokens=self._embedder.max_tokens)

    def _scan(self, roots: list[Path], report: IngestReport) -> tuple[dict[str, Scanned], set[str]]:
        paths = [path for root in roots for path in walk(root)]
        scanned: dict[str, Scanned] = {}
        kept: set[str] = set()
        for done, path in enumerate(paths, start=1):
            source = display_path(path)
            try:
                document = load(path)
            except SkippedFile as exc:
                report.skipped.append(Problem(source, str(exc)))
            except IngestError as exc:
                report.failed.append(Problem(source, str(exc)))
                kept.add(source)
            else:
                scanned[source] = Scanned(document, content_hash(document.text))
            self._progress("scan", done, len(paths))
        return scanned, kept

    def _write(
        self, plan: Plan, existing: dict[str, DocumentRecord], current: dict[str, set[str]], report: IngestReport
    ) -> int:
        """Write the new documents batch by batch; `current` tracks the old records' sources as they hand over."""
        if not plan.new_documents:
            return 0  # nothing new: the model is never loaded, which keeps an unchanged re-run fast
        started = time.perf_counter()
        self._embedder.load()
        report.model_seconds = time.perf_counter() - started
        splitter = self._splitter()
        total = len(plan.new_documents)
        written = 0
        done = 0
        for batch in _batches(plan.new_documents.items(), splitter):
            now = datetime.now(UTC).isoformat(timespec="seconds")
            records = [
                DocumentRecord(
                    doc_id,
                    plan.new_sources[doc_id],
                    document.title,
                    len(chunks),
                    now,
                    ready=False,
                    url=document.url,
                    published=document.published,
                    origin=document.origin,
                    author=document.author,
                    web=plan.new_web.get(doc_id, {}),
                )
                for doc_id, document, chunks in batch
            ]
            chunks = [chunk for _, _, doc_chunks in batch for chunk in doc_chunks]
            started = time.perf_counter()
            vectors, sentences = embed_chunks(chunks, self._embedder)
            report.embed_seconds += time.perf_counter() - started
            found = dict(zip((chunk.id for chunk in chunks), sentences, strict=True))
            contents = {doc_id: _content(document.text, doc_chunks, found) for doc_id, document, doc_chunks in batch}
            self._store.put_documents(records, contents)
            try:
                self._store.add_chunks(chunks, vectors, sentences)
            except BaseException:
                # Ctrl-C or a store failure mid-batch: take the half-written batch out now rather than next run.
                self._store.delete_documents([record.doc_id for record in records])
                raise
            # The new versions appear in the same write that takes the sources off the old ones, so whenever the
            # run stops, every file is indexed exactly once.
            handover = _handover(existing, current, {source for record in records for source in record.sources})
            self._store.put_documents([_ready(record) for record in records] + handover)
            self._store.delete_documents([record.doc_id for record in handover if not record.ready])
            written += len(chunks)
            done += len(batch)
            self._progress("embed", done, total)
        return written


def _content(text: str, chunks: Sequence[Chunk], sentences: dict[str, ChunkSentences]) -> DocumentContent:
    """What the index keeps of a document beside its chunks: the text, the chunks' places, the heading vectors."""
    return DocumentContent(
        text=text,
        chunks=tuple(ChunkSpan(chunk.start, chunk.end, chunk.heading, chunk.page) for chunk in chunks),
        headings={heading_key(chunk): sentences[chunk.id].heading for chunk in chunks},
    )


def _handover(
    existing: dict[str, DocumentRecord], current: dict[str, set[str]], taken: set[str]
) -> list[DocumentRecord]:
    """Old records that lose the `taken` sources: re-pointed, or hidden (not ready) when left with none."""
    changed = []
    for doc_id, sources in list(current.items()):
        if not sources & taken:
            continue
        remaining = sources - taken
        old = existing[doc_id]
        web = {source: state for source, state in old.web.items() if source in remaining}
        kept = tuple(source for source in old.sources if source in remaining)  # in the order they were ingested
        changed.append(replace(old, sources=kept, web=web, ready=bool(remaining)))
        if remaining:
            current[doc_id] = remaining
        else:
            del current[doc_id]
    return changed


def _ready(record: DocumentRecord) -> DocumentRecord:
    return replace(record, ready=True)


def _batches(documents: Any, splitter: Splitter) -> Iterator[list[tuple[str, Document, list[Chunk]]]]:
    batch: list[tuple[str, Document, list[Chunk]]] = []
    size = 0
    for doc_id, document in documents:
        chunks = splitter.split(document)
        batch.append((doc_id, document, chunks))
        size += len(chunks)
        if size >= EMBED_BATCH_CHUNKS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
