"""The corpus as one machine sees it: a mirror of the index's ready documents on local disk, kept in step with the
index by its generation, so that a process answering questions holds what a question needs, not the corpus.

The mirror lives in `CITEBOT_DATA_DIR/index/<index>/`, one per index (an embedded Chroma or a server, and a
collection), shared by every process of the machine:
- `corpus.sqlite3`: each ready document's record and content (text, chunk offsets, heading vectors), the corpus
  vocabulary (each word with the number of documents using it), the vectors of the words this machine has met
  (a word's vector depends only on the model, so it is computed here once, not stored in the index), and the
  state of the mirror (which index, which generation, up to when);
- `keyword/`: the BM25 keyword index of every chunk (`bot.keyword`, tantivy).

Keeping in step. Every write to the index stamps the document records it writes with the time (`updated`) and
leaves a tombstone for each document it removes (`bot.store`). When the index's generation differs from the one
the mirror last saw, the mirror reads what changed since it last looked (with a margin for writes still in
flight and clocks of other machines), and applies it: documents that turned ready are added whole (their chunks
to the keyword index first, then the document in one SQLite transaction), removed or hidden ones taken out, and
updated records (a source re-pointed) rewritten. A mirror that is missing, built for another index or another
format, or older than the oldest tombstone the index still keeps, is rebuilt from the index. One process of the
machine writes at a time (a lock file); the others keep answering from what is committed.

What a question sees: only documents present in `corpus.sqlite3`, and each whole (its row holds its chunks'
offsets). A chunk the dense search finds whose document the mirror does not hold (being written, or removed) is
left out; one the keyword index still lists after its document left is left out the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.embeddings import Embedder
from bot.keyword import KeywordIndex, KeywordView, stem, terms, vocabulary
from bot.store import CALL_LIMIT, ChunkStore
from bot.types import Chunk, ChunkSpan, DocumentContent, DocumentRecord, WebSource, embedding_text
from bot.vectors import pack, unpack

log = logging.getLogger(__name__)

# Bump when what the mirror holds, or how terms are analyzed, changes: older mirrors are rebuilt.
MIRROR_FORMAT = "2"
# Changes written this long before the newest one the mirror has seen are read again: a write in flight, or a
# writer on a machine whose clock runs behind, is never missed.
MARGIN_SECONDS = 120.0
# Parsed documents kept in memory (the text, its chunks, its heading vectors), and word vectors.
DOCUMENTS_KEPT = 512
WORD_VECTORS_KEPT = 30_000
# Documents indexed per transaction when the mirror is built or catches up.
SYNC_BATCH = 200

Progress = Callable[[str, int, int], None]  # (stage, done, total); total 0 when not known

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    updated REAL NOT NULL,
    record TEXT NOT NULL,
    text BLOB NOT NULL,
    chunks TEXT NOT NULL,
    headings TEXT NOT NULL,
    heading_vectors BLOB NOT NULL,
    complete INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vocabulary (word TEXT PRIMARY KEY, documents INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS word_vectors (word TEXT PRIMARY KEY, vector BLOB NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Document:
    """A ready document as the mirror holds it: its record and its content."""

    record: DocumentRecord
    content: DocumentContent

    def chunk(self, position: int) -> Chunk | None:
        if not 0 <= position < len(self.content.chunks):
            return None
        span = self.content.chunks[position]
        return Chunk(
            id=f"{self.record.doc_id}:{position}",
            doc_id=self.record.doc_id,
            text=self.content.text[span.start : span.end],
            title=self.record.title,
            start=span.start,
            end=span.end,
            heading=span.heading,
            position=position,
            page=span.page,
        )

    def chunks(self) -> list[Chunk]:
        return [chunk for position in range(len(self.content.chunks)) if (chunk := self.chunk(position))]


def chunk_place(chunk_id: str) -> tuple[str, int] | None:
    """(document id, position) of a chunk id `<doc_id>:<position>`."""
    doc_id, _, position = chunk_id.rpartition(":")
    return (doc_id, int(position)) if doc_id and position.isdigit() else None


class Corpus:
    """The local mirror of one index (see the module docstring). Cheap to construct: nothing is opened until used.

    `refresh()` keeps it in step (at most once per `refresh_seconds`, or now when `fresh`): the first call blocks
    until the mirror exists; later ones are made by one thread while the others go on answering.
    """

    def __init__(
        self,
        store: ChunkStore,
        data_dir: Path,
        refresh_seconds: float = 1.0,
        progress: Progress | None = None,
    ) -> None:
        self._store = store
        self._data_dir = data_dir
        self._refresh_seconds = refresh_seconds
        self._progress = progress or (lambda stage, done, total: None)
        self._folder: Path | None = None
        self._keyword: KeywordIndex | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._sync_lock = threading.Lock()  # one syncing thread per process (the lock file: per machine)
        self._loaded = False
        self._checked_at = -float("inf")
        self._seen_generation: str | None = None
        self._documents: OrderedDict[str, Document] = OrderedDict()
        self._documents_lock = threading.Lock()
        self._words: OrderedDict[str, np.ndarray] = OrderedDict()
        self._words_lock = threading.Lock()
        self._word_writes: queue.SimpleQueue[tuple[list[str], np.ndarray] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._changed = threading.Event()  # set when a sync added documents (their words may need vectors)
        self.listeners: list[Callable[[], None]] = []  # told, in the syncing thread, when the index changed

    # -- where the mirror lives ------------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        if self._folder is None:
            key = hashlib.sha256(self._store.identity().encode("utf-8")).hexdigest()[:16]
            self._folder = self._data_dir / "index" / key
        return self._folder

    @property
    def keyword(self) -> KeywordIndex:
        if self._keyword is None:
            self._keyword = KeywordIndex(self.folder / "keyword")
        return self._keyword

    def _db(self) -> sqlite3.Connection:
        """This thread's connection to `corpus.sqlite3` (WAL: readers never wait for the writer)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.folder / "corpus.sqlite3", timeout=30, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA journal_size_limit=4000000")  # the log shrinks back after a large sync
            _create_tables(connection)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def close(self) -> None:
        """Flush the word vectors waiting to be written and close every connection."""
        self._stop_writer()
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
            self._connections.clear()
        self._local = threading.local()

    def _meta(self) -> dict[str, str]:
        return dict(self._db().execute("SELECT key, value FROM meta").fetchall())

    # -- keeping in step ------------------------------------------------------------------------------------------

    def refresh(self, fresh: bool = False) -> None:
        """Bring the mirror in step with the index when the index changed (see the class docstring). A failed check
        raises every time: a mirror is never passed off as current when the index cannot be read."""
        if not fresh and time.monotonic() - self._checked_at < self._refresh_seconds:
            return
        if not self._sync_lock.acquire(blocking=fresh or not self._loaded):
            return  # another thread is syncing: answer from what is committed
        try:
            now = time.monotonic()
            if fresh or now - self._checked_at >= self._refresh_seconds:
                generation = self._store.generation()
                if generation != self._seen_generation or not self._loaded:
                    self._sync(generation, wait=not self._loaded)
                self._checked_at = now
        finally:
            self._sync_lock.release()

    def _sync(self, generation: str, wait: bool) -> None:
        """Apply the index's changes to the mirror, unless another process of the machine is doing it."""
        meta = self._meta()
        if meta.get("generation") != generation or meta.get("identity") != self._store.identity():
            with self._machine_lock(wait) as locked:
                if not locked:
                    return  # another process is writing the mirror; this one reads what it commits
                meta = self._meta()  # it may have just caught up
                if meta.get("generation") != generation or meta.get("identity") != self._store.identity():
                    self._catch_up(generation, meta)
        if self._seen_generation is not None and self._store.embedded:
            self._store.refresh()  # an embedded index must reopen to search the vectors written since
        if self._loaded:
            self.keyword.reload()
        self._seen_generation = generation
        self._loaded = True
        for listener in self.listeners:
            listener()

    @contextlib.contextmanager
    def _machine_lock(self, wait: bool) -> Iterator[bool]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _catch_up(self, generation: str, meta: dict[str, str]) -> None:
        identity = self._store.identity()
        watermark = float(meta.get("watermark", "0"))
        rebuild = (
            meta.get("identity") != identity
            or meta.get("format") != MIRROR_FORMAT
            or watermark <= 0.0
            or watermark < self._store.pruned_before()
        )
        newest = self._rebuild() if rebuild else self._apply_changes(watermark - MARGIN_SECONDS)
        db = self._db()
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("identity", identity),
                    ("format", MIRROR_FORMAT),
                    ("generation", generation),
                    ("watermark", repr(max(newest, watermark if not rebuild else 0.0, 1e-9))),
                ],
            )

    def _rebuild(self) -> float:
        """Build the mirror from the index, page by page (memory does not grow with the corpus); returns the newest
        `updated` seen."""
        log.info("building the local mirror of %s in %s", self._store.location, self.folder)
        db = self._db()
        with db:
            db.execute("DELETE FROM documents")
            db.execute("DELETE FROM vocabulary")
            db.execute("DELETE FROM meta WHERE key IN ('generation', 'watermark', 'dated')")
        self.keyword.clear()
        with self._documents_lock:
            self._documents.clear()
        newest = 0.0
        done = 0
        batch: list[tuple[DocumentRecord, float]] = []
        for record, updated in self._store.iter_documents():
            batch.append((record, updated))
            newest = max(newest, updated)
            if len(batch) >= SYNC_BATCH:
                self._add(batch)
                done += len(batch)
                self._progress("mirror", done, 0)
                batch = []
        if batch:
            self._add(batch)
            done += len(batch)
            self._progress("mirror", done, 0)
        return newest

    def _apply_changes(self, since: float) -> float:
        """Apply the records and removals written since `since`; returns the newest `updated` seen."""
        latest: dict[str, tuple[float, DocumentRecord | None]] = {}
        for change in self._store.changes_since(since):
            if change.doc_id not in latest or change.updated >= latest[change.doc_id][0]:
                latest[change.doc_id] = (change.updated, change.record)
        if not latest:
            return since + MARGIN_SECONDS
        db = self._db()
        known = dict(self._query_in(db, "SELECT doc_id, updated FROM documents WHERE doc_id IN ({})", list(latest)))
        removed = [
            doc_id for doc_id, (_, record) in latest.items() if doc_id in known and (record is None or not record.ready)
        ]
        updated = [
            (record, stamp)
            for doc_id, (stamp, record) in latest.items()
            if record is not None and record.ready and doc_id in known and known[doc_id] != stamp
        ]
        added = [
            (record, stamp)
            for doc_id, (stamp, record) in latest.items()
            if record is not None and record.ready and doc_id not in known
        ]
        if removed:
            self._remove(removed)
        if updated:
            with db:
                db.executemany(
                    "UPDATE documents SET updated = ?, record = ? WHERE doc_id = ?",
                    [(stamp, _record_json(record), record.doc_id) for record, stamp in updated],
                )
            self._forget([record.doc_id for record, _ in updated])
        for begin in range(0, len(added), SYNC_BATCH):
            self._add(added[begin : begin + SYNC_BATCH])
            self._progress("mirror", min(begin + SYNC_BATCH, len(added)), len(added))
        return max(stamp for stamp, _ in latest.values())

    def _add(self, batch: Sequence[tuple[DocumentRecord, float]]) -> None:
        """Index documents whole: their chunks' terms into the keyword index, then the documents in one
        transaction (a chunk is visible only once its document is)."""
        contents = self._store.contents(record.doc_id for record, _ in batch)
        present = [(record, stamp, contents[record.doc_id]) for record, stamp in batch if record.doc_id in contents]
        indexed = []
        words: dict[str, int] = {}
        for record, _, content in present:
            document = Document(record, content)
            for chunk in document.chunks():
                indexed.append((chunk.id, chunk.doc_id, terms(embedding_text(chunk))))
            for word in vocabulary(f"{record.title}\n{content.text}"):
                words[word] = words.get(word, 0) + 1
        ids = [record.doc_id for record, _, _ in present]
        self.keyword.update(ids, indexed)  # a document indexed before (an interrupted sync) is replaced, not doubled
        db = self._db()
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO documents (doc_id, updated, record, text, chunks, headings, heading_vectors, "
                "complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (record.doc_id, stamp, _record_json(record), *_content_row(content))
                    for record, stamp, content in present
                ],
            )
            db.executemany(
                "INSERT INTO vocabulary (word, documents) VALUES (?, ?) "
                "ON CONFLICT (word) DO UPDATE SET documents = documents + excluded.documents",
                sorted(words.items()),
            )
            if any(record.published for record, _, _ in present):
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('dated', '1')")
        self._forget(ids)
        self._changed.set()

    def _remove(self, doc_ids: Sequence[str]) -> None:
        db = self._db()
        words: dict[str, int] = {}
        for row in self._query_in(db, f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE doc_id IN ({{}})", doc_ids):
            document = _document_from(*row)
            for word in vocabulary(f"{document.record.title}\n{document.content.text}"):
                words[word] = words.get(word, 0) + 1
        with db:
            for begin in range(0, len(doc_ids), CALL_LIMIT):
                part = list(doc_ids[begin : begin + CALL_LIMIT])
                db.execute(f"DELETE FROM documents WHERE doc_id IN ({_marks(part)})", part)
            db.executemany(
                "UPDATE vocabulary SET documents = documents - ? WHERE word = ?",
                [(count, word) for word, count in words.items()],
            )
            db.execute("DELETE FROM vocabulary WHERE documents <= 0")
        self.keyword.update(doc_ids, ())
        self._forget(doc_ids)

    def _forget(self, doc_ids: Iterable[str]) -> None:
        with self._documents_lock:
            for doc_id in doc_ids:
                self._documents.pop(doc_id, None)

    @staticmethod
    def _query_in(db: sqlite3.Connection, sql: str, values: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """`sql` with its `IN ({})` filled for `values`, `CALL_LIMIT` at a time."""
        for begin in range(0, len(values), CALL_LIMIT):
            part = list(values[begin : begin + CALL_LIMIT])
            yield from db.execute(sql.format(_marks(part)), part)

    # -- reading ---------------------------------------------------------------------------------------------

    def keyword_view(self) -> KeywordView:
        return self.keyword.view()

    @property
    def dated(self) -> bool:
        """Whether any document has a publication date (time words in questions only mean something then)."""
        return self._meta().get("dated") == "1"

    def count(self) -> int:
        """How many documents the mirror holds."""
        return int(self._db().execute("SELECT count(*) FROM documents").fetchone()[0])

    def records(self) -> list[DocumentRecord]:
        """Every document's record (for listings: the console's corpus page, `citebot sources`)."""
        rows = self._db().execute("SELECT doc_id, record FROM documents").fetchall()
        return [_record_from_json(doc_id, record) for doc_id, record in rows]

    def documents(self, doc_ids: Iterable[str]) -> dict[str, Document]:
        """The given documents that the mirror holds, from memory when recently used."""
        wanted = list(dict.fromkeys(doc_ids))
        found: dict[str, Document] = {}
        with self._documents_lock:
            for doc_id in wanted:
                document = self._documents.get(doc_id)
                if document is not None:
                    self._documents.move_to_end(doc_id)
                    found[doc_id] = document
        missing = [doc_id for doc_id in wanted if doc_id not in found]
        if missing:
            rows = self._query_in(
                self._db(), f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE doc_id IN ({{}})", missing
            )
            fresh = {row[0]: _document_from(*row) for row in rows}
            with self._documents_lock:
                for doc_id, document in fresh.items():
                    self._documents[doc_id] = document
                while len(self._documents) > DOCUMENTS_KEPT:
                    self._documents.popitem(last=False)
            found.update(fresh)
        return found

    def chunks(self, chunk_ids: Iterable[str]) -> dict[str, Chunk]:
        """The given chunks whose documents the mirror holds (see "What a question sees")."""
        places = {chunk_id: place for chunk_id in chunk_ids if (place := chunk_place(chunk_id)) is not None}
        documents = self.documents(doc_id for doc_id, _ in places.values())
        found = {}
        for chunk_id, (doc_id, position) in places.items():
            document = documents.get(doc_id)
            chunk = document.chunk(position) if document is not None else None
            if chunk is not None:
                found[chunk_id] = chunk
        return found

    def word_documents(self, words: Iterable[str]) -> dict[str, int]:
        """How many documents use each of `words` (those the corpus never uses are left out)."""
        wanted = sorted(set(words))
        return dict(self._query_in(self._db(), "SELECT word, documents FROM vocabulary WHERE word IN ({})", wanted))

    def words_like(self, prefix: str, shortest: int, longest: int) -> list[tuple[str, int]]:
        """Vocabulary words starting with `prefix` whose length lies in [shortest, longest], with their counts."""
        rows = self._db().execute(
            "SELECT word, documents FROM vocabulary WHERE word >= ? AND word < ? AND length(word) BETWEEN ? AND ?",
            (prefix, prefix + "\U0010ffff", shortest, longest),
        )
        return [(str(word), int(count)) for word, count in rows]

    def used_together(self, word: str, others: Sequence[str]) -> int:
        """How many chunks use `word` together with one of `others` (words, not yet stemmed)."""
        stems = [stem(other) for other in others if other != word]
        return self.keyword_view().together(stem(word), stems) if stems else 0

    # -- word vectors -------------------------------------------------------------------------------------------

    def word_vectors(self, words: Iterable[str]) -> dict[str, np.ndarray]:
        """The vectors this machine has for `words` (unit vectors, float32)."""
        wanted = list(dict.fromkeys(words))
        found: dict[str, np.ndarray] = {}
        with self._words_lock:
            for word in wanted:
                vector = self._words.get(word)
                if vector is not None:
                    found[word] = vector
        missing = [word for word in wanted if word not in found]
        if missing:
            rows = list(self._query_in(self._db(), "SELECT word, vector FROM word_vectors WHERE word IN ({})", missing))
            fresh = {str(word): unpack(blob)[0] for word, blob in rows}
            self._keep_words(fresh)
            found.update(fresh)
        return found

    def remember_word_vectors(self, words: Sequence[str], vectors: np.ndarray) -> None:
        """Keep vectors embedded at question time; written to disk by a background thread."""
        self._keep_words(dict(zip(words, np.asarray(vectors, dtype=np.float32), strict=True)))
        self._start_writer()
        self._word_writes.put((list(words), np.asarray(vectors, dtype=np.float32)))

    def _keep_words(self, vectors: dict[str, np.ndarray]) -> None:
        with self._words_lock:
            self._words.update(vectors)
            while len(self._words) > WORD_VECTORS_KEPT:
                self._words.popitem(last=False)

    def words_without_vectors(self, after: str, limit: int) -> list[str]:
        """Vocabulary words (in order, after `after`) that this machine has no vector for yet."""
        rows = self._db().execute(
            "SELECT word FROM vocabulary WHERE word > ? AND word NOT IN (SELECT word FROM word_vectors) "
            "ORDER BY word LIMIT ?",
            (after, limit),
        )
        return [str(word) for (word,) in rows]

    def warm_words(self, embedder: Embedder, stop: threading.Event, batch: int = 256) -> None:
        """Embed every vocabulary word that has no vector yet, in batches, until `stop` is set; then wait for a
        sync that adds documents and go on. For a background thread of a long-running process."""
        self._check_word_model(embedder)
        while not stop.is_set():
            self._changed.clear()
            after = ""
            while not stop.is_set():
                words = self.words_without_vectors(after, batch)
                if not words:
                    break
                self._write_words(words, embedder.embed_documents(words))
                after = words[-1]
            self._changed.wait(timeout=60)

    def _check_word_model(self, embedder: Embedder) -> None:
        """Vectors of another model are of no use: forget them when the model changed."""
        db = self._db()
        if self._meta().get("word_model") != embedder.name:
            with db:
                db.execute("DELETE FROM word_vectors")
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('word_model', ?)", (embedder.name,))

    def _write_words(self, words: Sequence[str], vectors: np.ndarray) -> None:
        db = self._db()
        with db:
            db.executemany(
                "INSERT OR IGNORE INTO word_vectors (word, vector) VALUES (?, ?)",
                [(word, pack(np.asarray(vector)[None, :])) for word, vector in zip(words, vectors, strict=True)],
            )

    def _start_writer(self) -> None:
        if self._writer is not None:
            return
        with self._words_lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="citebot-words", daemon=True)
                self._writer.start()
                atexit.register(self._stop_writer)

    def _write_loop(self) -> None:
        while True:
            item = self._word_writes.get()
            if item is None:
                return
            try:
                self._write_words(*item)
            except sqlite3.Error as exc:  # a cache: a failed write only means the word is embedded again
                log.warning("could not keep word vectors in %s: %s", self.folder, exc)

    def _stop_writer(self) -> None:
        writer = self._writer
        if writer is not None and writer.is_alive():
            self._word_writes.put(None)
            writer.join(timeout=10)
        self._writer = None


# -- rows -----------------------------------------------------------------------------------------------------


def _create_tables(db: sqlite3.Connection) -> None:
    """The mirror's tables; those of a mirror in another format are dropped first (it is then rebuilt)."""
    with db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" in tables:
            found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if found is not None and found[0] != MIRROR_FORMAT:
                for table in ("documents", "vocabulary", "meta"):
                    db.execute(f"DROP TABLE IF EXISTS {table}")
    db.executescript(_SCHEMA)


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _record_json(record: DocumentRecord) -> str:
    return json.dumps(
        {
            "sources": list(record.sources),
            "title": record.title,
            "chunks": record.chunks,
            "ingested_at": record.ingested_at,
            "url": record.url,
            "published": record.published,
            "origin": record.origin,
            "author": record.author,
            "web": {
                source: {key: value for key, value in asdict(state).items() if value is not None}
                for source, state in record.web.items()
            },
        },
        ensure_ascii=False,
    )


def _record_from_json(doc_id: str, raw: str) -> DocumentRecord:
    data = json.loads(raw)
    return DocumentRecord(
        doc_id=doc_id,
        sources=tuple(data["sources"]),
        title=data["title"],
        chunks=int(data["chunks"]),
        ingested_at=data["ingested_at"],
        ready=True,
        url=data.get("url"),
        published=data.get("published"),
        origin=data.get("origin", "file"),
        author=data.get("author"),
        web={source: WebSource(**state) for source, state in data.get("web", {}).items()},
    )


_DOCUMENT_COLUMNS = "doc_id, record, text, chunks, headings, heading_vectors, complete"


def _content_row(content: DocumentContent) -> tuple[bytes, str, str, bytes, int]:
    """A document's content as the mirror keeps it: the text compressed, the chunks' places, the headings."""
    names = list(content.headings)
    vectors = pack(np.stack([content.headings[name] for name in names])) if names else b""
    chunks = [[span.start, span.end, span.heading, span.page] for span in content.chunks]
    return (
        zlib.compress(content.text.encode("utf-8")),
        json.dumps(chunks, ensure_ascii=False),
        json.dumps(names, ensure_ascii=False),
        vectors,
        int(content.complete),
    )


def _document_from(
    doc_id: str, record: str, text: bytes, chunks: str, headings: str, heading_vectors: bytes, complete: int
) -> Document:
    names = json.loads(headings)
    vectors = unpack(heading_vectors) if names else np.zeros((0, 0), dtype=np.float32)
    content = DocumentContent(
        text=zlib.decompress(text).decode("utf-8"),
        chunks=tuple(ChunkSpan(start, end, heading, page) for start, end, heading, page in json.loads(chunks)),
        headings=dict(zip(names, vectors, strict=True)),
        complete=bool(complete),
    )
    return Document(_record_from_json(doc_id, record), content)
