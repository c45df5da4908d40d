"""The vector store: the only module that imports chromadb.

Three collections live in one Chroma database, embedded under `CITEBOT_DATA_DIR` or on a Chroma server:
- `<collection>`: one record per chunk: its embedding, the offsets of its quotable sentences and their vectors
  (each sentence embedded on its own at ingestion; 6 bits a value, `bot.vectors`), and its place in the document;
- `<collection>__documents`: one small record per document (keyed by content hash) with its title, sources, dates
  and a time stamp `updated` that every write sets; a state record whose generation changes on every write, so
  running engines notice new documents; a tombstone per removed document (so a process that mirrors the corpus,
  `bot.corpus`, learns of removals by asking for what changed since it last looked); and one record per fetched
  feed or sitemap with its validators for conditional requests;
- `<collection>__contents`: one record per document with its text (compressed), its chunks' offsets and headings,
  and the vector of each heading: what a mirror needs to index a document, read only when one does;
- `<collection>__models`: answer models trained on this index's operators' labels (`citebot train`), one record
  per file of each version, and a record naming the version in use: every process answering from the index,
  on any machine, switches to it.

What the index does not hold, and why: no text is given to Chroma as a record's `document`, since Chroma indexes
every document for full-text search (a trigram index three times the text) that citebot never queries; a chunk's
text is `document_text[start:end]`. No word vectors: a word's vector depends only on the model, so each machine
embeds the words it meets once and keeps them (`bot.corpus`). Metadata strings are indexed by Chroma too, so the
vectors kept in them take 6 bits a value (`bot.vectors`), and long values are kept in parts (`_spread`).

A document record is written as *pending* before its chunks and flipped to *ready* after them; readers only use
chunks of ready documents. That is what keeps an interrupted ingestion from ever exposing half a document, and
what lets the next run find and remove the leftovers.

No call carries more than `CALL_LIMIT` ids, filter values or records: reads are paged and writes batched, so no
query grows with the corpus (SQLite refuses a statement of more than 32,766 variables).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bot import vectors as vectors_module
from bot.config import Settings
from bot.embeddings import Embedder
from bot.errors import StoreError
from bot.types import Chunk, ChunkSentences, ChunkSpan, DocumentContent, DocumentRecord, FeedState, WebSource

log = logging.getLogger(__name__)

# Chroma phones home unless told not to; set before chromadb is imported anywhere.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

_STATE_ID = "__state__"
_TOMBSTONES_ID = "__tombstones__"
_FEED_PREFIX = "__feed__:"
_GONE_PREFIX = "__gone__:"
_CURRENT_MODEL_ID = "__current__"
# The most ids, filter values or records one Chroma call carries: SQLite refuses a statement with more than 32,766
# variables, and a call that grows with the corpus would also grow its memory and (with a server) its response.
CALL_LIMIT = 500
# Tombstones older than this are pruned by ingestion; a mirror last updated before then rebuilds.
TOMBSTONE_DAYS = 30
# Collections with no use for similarity search still need vectors of some size.
_PLACEHOLDER_VECTOR = [1.0]


def _chroma_embedding_function(embedder: Embedder) -> Any:
    """Wrap our embedder so Chroma never falls back to its default model (which it would download)."""
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import known_embedding_functions, register_embedding_function

    class CitebotEmbeddingFunction(EmbeddingFunction[Documents]):
        def __init__(self, wrapped: Embedder | None = None) -> None:
            self._embedder = wrapped

        def __call__(self, input: Documents) -> Embeddings:
            if self._embedder is None:
                raise StoreError("this collection belongs to citebot: open it through citebot")
            return list(self._embedder.embed_documents(list(input)))

        @staticmethod
        def name() -> str:
            return "citebot"

        def get_config(self) -> dict[str, Any]:
            return {}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> CitebotEmbeddingFunction:
            # Chroma rebuilds the function recorded on a collection when it opens it; ours is passed anyway.
            return CitebotEmbeddingFunction()

        def is_legacy(self) -> bool:
            return False

    if "citebot" not in known_embedding_functions:
        register_embedding_function(CitebotEmbeddingFunction)
    return CitebotEmbeddingFunction(embedder)


@dataclass(frozen=True)
class _Handles:
    """One client and its collections, swapped as a whole so a reader never mixes two clients."""

    client: Any
    chunks: Any
    documents: Any
    contents: Any
    models: Any


@dataclass(frozen=True)
class Change:
    """A document record or a removal since some time (`ChunkStore.changes_since`): the newest `updated` wins."""

    doc_id: str
    updated: float
    record: DocumentRecord | None  # None: removed


@dataclass(frozen=True)
class StoredChunk:
    """What question time reads of a retrieved chunk: its vector and its sentences' offsets and vectors (the
    heading's vector comes with the document's content)."""

    vector: np.ndarray
    spans: tuple[tuple[int, int, bool], ...] | None
    sentence_vectors: np.ndarray | None
    heading_vector: np.ndarray | None = None  # only in records written before headings moved to the contents


def _fresh_embedded_client(path: Path) -> Any:
    """An embedded client on a new Chroma `System`, not the one chromadb caches per path.

    Why: `chromadb.PersistentClient(path)` returns the cached system (with its stale in-memory vector index)
    for as long as any client of that path is open, so reopening would mean closing it under other readers.
    `Client.from_system` makes the new system the cached one; the old one lives on in the collections that
    still reference it until they are garbage-collected.
    """
    from chromadb.api import ServerAPI
    from chromadb.api.client import Client
    from chromadb.config import Settings as ChromaSettings
    from chromadb.config import System

    settings = ChromaSettings(
        anonymized_telemetry=False, allow_reset=False, is_persistent=True, persist_directory=str(path)
    )
    system = System(settings)
    system.instance(ServerAPI)  # type: ignore[type-abstract]  # as chromadb itself does
    system.start()
    return Client.from_system(system)


class ChunkStore:
    """Chunks and document records in Chroma. Opening is lazy: constructing a store touches nothing."""

    def __init__(self, settings: Settings, embedder: Embedder) -> None:
        self._settings = settings
        self._embedder = embedder
        self._handles: _Handles | None = None
        self._lock = threading.Lock()

    # -- opening -------------------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """Where the index lives, for messages (never includes the token)."""
        if self._settings.chroma_host:
            return f"Chroma server {self._settings.chroma_host}:{self._settings.chroma_port}"
        return f"embedded Chroma in {self._settings.chroma_dir}"

    @property
    def embedded(self) -> bool:
        return not self._settings.chroma_host

    def _open(self) -> _Handles:
        """The open client and collections; opened on first use, then shared by every thread."""
        handles = self._handles
        if handles is not None:
            return handles
        with self._lock:
            if self._handles is None:
                self._handles = self._connect()
            return self._handles

    def _connect(self) -> _Handles:
        """A new client and its collections. Does not touch `self`: the caller decides when to switch."""
        try:
            import chromadb
            from chromadb.config import Settings as ChromaSettings
        except ImportError:
            raise StoreError("chromadb is not installed; run `make setup`") from None
        try:
            if self._settings.chroma_host:
                headers = {}
                if self._settings.chroma_token is not None:
                    headers["Authorization"] = f"Bearer {self._settings.chroma_token.get_secret_value()}"
                client = chromadb.HttpClient(
                    host=self._settings.chroma_host,
                    port=self._settings.chroma_port,
                    headers=headers,
                    settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
                )
            else:
                self._settings.chroma_dir.mkdir(parents=True, exist_ok=True)
                client = _fresh_embedded_client(self._settings.chroma_dir)
            function = _chroma_embedding_function(self._embedder)
            name = self._settings.collection
            chunks = client.get_or_create_collection(
                name, embedding_function=function, metadata={"hnsw:space": "cosine"}
            )
            documents = client.get_or_create_collection(f"{name}__documents", embedding_function=function)
            contents = client.get_or_create_collection(f"{name}__contents", embedding_function=function)
            models = client.get_or_create_collection(f"{name}__models", embedding_function=function)
        except StoreError:
            raise
        except Exception as exc:
            raise self._unreachable_error(exc) or StoreError(
                f"cannot open the index ({self.location}): {_one_line(exc)}; check CITEBOT_CHROMA_HOST/"
                "CITEBOT_CHROMA_PORT and CITEBOT_CHROMA_TOKEN"
            ) from exc
        return _Handles(client, chunks, documents, contents, models)

    def refresh(self) -> None:
        """Reopen an embedded index so vectors written by another process become searchable.

        An embedded Chroma keeps its vector index in memory per process: records written elsewhere show up in
        `get`, not in `query`, until the client is reopened. The new client is built while other threads keep
        querying the old one, then swapped in with one assignment; the old one is never closed (closing stops
        the engine under a query in flight): it is freed when the last call holding it returns. A server needs
        no refresh.
        """
        if self._settings.chroma_host or self._handles is None:
            return
        fresh = self._connect()
        with self._lock:
            self._handles = fresh

    def close(self) -> None:
        """Release the index (an embedded one's files), e.g. before another process writes it. Only for a store
        no other thread is using; the next call reopens it."""
        with self._lock:
            handles, self._handles = self._handles, None
        if handles is not None:
            handles.client.close()

    def identity(self) -> str:
        """Names this index: where it lives, and the chunk collection's id (new when the collection is recreated).
        A mirror of the corpus built for another identity is rebuilt."""
        return f"{self.location} / {self._settings.collection} / {self._open().chunks.id}"

    def _call(self, what: str, action: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return action(*args, **kwargs)
        except Exception as exc:
            raise self._unreachable_error(exc) or StoreError(
                f"cannot {what} ({self.location}): {_one_line(exc)}"
            ) from exc

    def _unreachable_error(self, exc: BaseException) -> StoreError | None:
        """One sentence for a Chroma server that does not answer (the library's own says it twice over)."""
        if not self._settings.chroma_host or not _is_connection_failure(exc):
            return None
        host, port = self._settings.chroma_host, self._settings.chroma_port
        return StoreError(
            f"cannot reach the Chroma server at {host}:{port}: start it (`chroma run --path DB --port {port}`) "
            "or point CITEBOT_CHROMA_HOST/CITEBOT_CHROMA_PORT at a running one"
        )

    def _pages(
        self, what: str, collection: Any, include: Sequence[str] = ("metadatas",), **query: Any
    ) -> Iterator[tuple[Any, ...]]:
        """(id, *included fields) of every record a `get` finds, read `CALL_LIMIT` records at a time."""
        offset = 0
        while True:
            page = self._call(what, collection.get, include=list(include), limit=CALL_LIMIT, offset=offset, **query)
            columns = [page[field] if page[field] is not None else [] for field in include]
            yield from zip(page["ids"], *columns, strict=True)
            if len(page["ids"]) < CALL_LIMIT:
                return
            offset += CALL_LIMIT

    def _by_ids(
        self, what: str, collection: Any, ids: Sequence[str], include: Sequence[str]
    ) -> Iterator[tuple[Any, ...]]:
        """(id, *included fields) of the records among `ids` that exist, `CALL_LIMIT` ids per call."""
        for part in _batched(list(dict.fromkeys(ids))):
            page = self._call(what, collection.get, ids=list(part), include=list(include))
            columns = [page[field] if page[field] is not None else [] for field in include]
            yield from zip(page["ids"], *columns, strict=True)

    # -- documents -----------------------------------------------------------------------------------------

    def documents(self, include_pending: bool = False) -> dict[str, DocumentRecord]:
        """Every document record (pages of `CALL_LIMIT`); the ready ones unless `include_pending`."""
        where: dict[str, Any] = {"kind": "document"}
        if not include_pending:
            where = {"$and": [where, {"ready": True}]}
        found = self._pages("read documents", self._open().documents, where=where)
        return {doc_id: _record_from(doc_id, metadata) for doc_id, metadata in found}

    def iter_documents(self) -> Iterator[tuple[DocumentRecord, float]]:
        """Every ready document record with the time it was last written (0 for records of before version 0.2),
        read a page at a time, so memory does not grow with the corpus."""
        where = {"$and": [{"kind": "document"}, {"ready": True}]}
        for doc_id, metadata in self._pages("read documents", self._open().documents, where=where):
            yield _record_from(doc_id, metadata), float(metadata.get("updated", 0.0))

    def has_documents(self) -> bool:
        """Whether any document is ready (one record read, whatever the size of the corpus)."""
        page = self._call(
            "read documents",
            self._open().documents.get,
            where={"$and": [{"kind": "document"}, {"ready": True}]},
            include=[],
            limit=1,
        )
        return bool(page["ids"])

    def changes_since(self, moment: float) -> list[Change]:
        """Document records and removals written at or after `moment` (a `time.time()`), by any process."""
        where = {"$and": [{"kind": {"$in": ["document", "gone"]}}, {"updated": {"$gte": moment}}]}
        changes = []
        for record_id, metadata in self._pages("read changes", self._open().documents, where=where):
            if metadata.get("kind") == "gone":
                changes.append(Change(str(metadata["doc_id"]), float(metadata["updated"]), None))
            else:
                changes.append(Change(record_id, float(metadata["updated"]), _record_from(record_id, metadata)))
        return changes

    def put_documents(
        self, records: Sequence[DocumentRecord], contents: Mapping[str, DocumentContent] | None = None
    ) -> None:
        """Insert or update document records (with the time of this write), then bump the generation so readers
        reload. `contents` (doc_id -> its content) is given when a document is first written."""
        if not records:
            return
        if contents:
            self._put_contents(contents)
        now = time.time()
        for part in _batched(records):
            self._call(
                "write document records",
                self._open().documents.upsert,
                ids=[record.doc_id for record in part],
                embeddings=[_PLACEHOLDER_VECTOR] * len(part),
                metadatas=[_document_metadata(record, now) for record in part],
            )
        self._bump_generation()

    def _put_contents(self, contents: Mapping[str, DocumentContent]) -> None:
        items = list(contents.items())
        for part in _batched(items):
            self._call(
                "write document texts",
                self._open().contents.upsert,
                ids=[doc_id for doc_id, _ in part],
                embeddings=[_PLACEHOLDER_VECTOR] * len(part),
                metadatas=[_encode_content(content) for _, content in part],
            )

    def contents(self, doc_ids: Iterable[str]) -> dict[str, DocumentContent]:
        """The contents of the given documents; one written before contents were kept is rebuilt from its chunks
        (its text then has blanks where headings and the space between chunks were, so offsets still hold)."""
        ids = list(dict.fromkeys(doc_ids))
        found = {
            doc_id: _decode_content(metadata)
            for doc_id, metadata in self._by_ids("read document texts", self._open().contents, ids, ("metadatas",))
        }
        missing = [doc_id for doc_id in ids if doc_id not in found]
        if missing:
            found.update(self._rebuilt_contents(missing))
        return found

    def _rebuilt_contents(self, doc_ids: Sequence[str]) -> dict[str, DocumentContent]:
        """Contents of documents written before version 0.2: the whole text from the document record (kept there
        then), else pieced together from the chunks; chunk offsets and heading vectors from the chunks."""
        whole = {
            doc_id: str(text)
            for doc_id, text in self._by_ids("read documents", self._open().documents, doc_ids, ("documents",))
            if text
        }
        pieces: dict[str, list[tuple[int, str, Any, np.ndarray | None]]] = {}
        for part in _batched(list(doc_ids)):
            rows = self._pages(
                "read chunks",
                self._open().chunks,
                include=("documents", "metadatas"),
                where={"doc_id": {"$in": list(part)}},
            )
            for _, chunk_text, metadata in rows:
                stored = _stored_sentences(metadata)
                heading_vector = stored[2] if stored is not None else None
                pieces.setdefault(str(metadata["doc_id"]), []).append(
                    (int(metadata["start"]), chunk_text or "", metadata, heading_vector)
                )
        rebuilt = {}
        for doc_id, chunks in pieces.items():
            chunks.sort(key=lambda piece: int(piece[2].get("position", 0)))
            text: list[str] = []
            length = 0
            headings: dict[str, np.ndarray] = {}
            for start, chunk_text, metadata, heading_vector in sorted(chunks, key=lambda piece: piece[0]):
                end = start + len(chunk_text)
                if end > length:
                    text.append(" " * (start - length) + chunk_text[max(length - start, 0) :])
                    length = end
                title = str(metadata.get("title", ""))
                heading = str(metadata.get("heading", ""))
                if heading_vector is not None and len(heading_vector):
                    headings[heading.rsplit(" > ", 1)[-1] or title] = heading_vector
            spans = tuple(
                ChunkSpan(int(m["start"]), int(m["end"]), str(m.get("heading", "")), _optional_int(m.get("page")))
                for _, _, m, _ in chunks
            )
            if doc_id in whole:
                rebuilt[doc_id] = DocumentContent(whole[doc_id], spans, headings)
            else:
                rebuilt[doc_id] = DocumentContent("".join(text), spans, headings, complete=False)
        return rebuilt

    def document_text(self, doc_id: str) -> tuple[str, bool] | None:
        """The text of a ready document and whether it is complete (False: rebuilt from its chunks, see
        `contents`); None for an unknown or unfinished document."""
        result = self._call("read a document", self._open().documents.get, ids=[doc_id], include=["metadatas"])
        metadatas = result["metadatas"] or []
        if not metadatas or metadatas[0].get("kind") != "document" or not metadatas[0].get("ready"):
            return None
        content = self.contents([doc_id]).get(doc_id)
        return (content.text, content.complete) if content is not None else None

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Remove documents whole: hide them (not ready), drop their chunks and contents, then their records, and
        leave a tombstone for each so that mirrors learn of the removal."""
        if not doc_ids:
            return
        hidden = []
        for doc_id, metadata in self._by_ids("read documents", self._open().documents, doc_ids, ("metadatas",)):
            if metadata.get("kind") == "document":
                hidden.append(replace(_record_from(doc_id, metadata), ready=False))
        self.put_documents(hidden)
        # Chunks by id where the record says how many there are (a lookup, where a filter scans the metadata)...
        chunk_ids = [f"{record.doc_id}:{position}" for record in hidden for position in range(record.chunks)]
        for part in _batched(chunk_ids):
            self._call("delete chunks", self._open().chunks.delete, ids=list(part))
        # ...and by filter for what no record describes, or a run that died mid-write may have left.
        now = time.time()
        for part in _batched(list(doc_ids)):
            self._call("delete chunks", self._open().chunks.delete, where={"doc_id": {"$in": list(part)}})
            self._call("delete document texts", self._open().contents.delete, ids=list(part))
            self._call("delete document records", self._open().documents.delete, ids=list(part))
            self._call(
                "write removals",
                self._open().documents.upsert,
                ids=[_GONE_PREFIX + doc_id for doc_id in part],
                embeddings=[_PLACEHOLDER_VECTOR] * len(part),
                metadatas=[{"kind": "gone", "doc_id": doc_id, "updated": now} for doc_id in part],
            )
        self._bump_generation()

    def prune_tombstones(self, days: float = TOMBSTONE_DAYS) -> None:
        """Forget removals older than `days`; a mirror older than that rebuilds (`pruned_before`)."""
        horizon = time.time() - days * 86_400
        where = {"$and": [{"kind": "gone"}, {"updated": {"$lt": horizon}}]}
        old = [
            record_id for (record_id,) in self._pages("read removals", self._open().documents, include=(), where=where)
        ]
        if not old:
            return
        self._call(
            "write the index state",
            self._open().documents.upsert,
            ids=[_TOMBSTONES_ID],
            embeddings=[_PLACEHOLDER_VECTOR],
            metadatas=[{"kind": "tombstones", "pruned_before": horizon}],
        )
        for part in _batched(old):
            self._call("delete removals", self._open().documents.delete, ids=list(part))

    def pruned_before(self) -> float:
        """Removals before this moment may have been forgotten (see `prune_tombstones`); 0 when none were."""
        result = self._call(
            "read the index state", self._open().documents.get, ids=[_TOMBSTONES_ID], include=["metadatas"]
        )
        metadatas = result["metadatas"] or []
        return float(metadatas[0]["pruned_before"]) if metadatas else 0.0

    def feed_states(self) -> dict[str, FeedState]:
        """Feed or sitemap URL -> its validators as last fetched whole (see `FeedState`)."""
        found = self._pages("read feed states", self._open().documents, where={"kind": "feed"})
        states = [
            FeedState(
                url=str(metadata["url"]),
                fetched=str(metadata["fetched"]),
                etag=_optional(metadata.get("etag")),
                last_modified=_optional(metadata.get("last_modified")),
            )
            for _, metadata in found
        ]
        return {state.url: state for state in states}

    def put_feed_states(self, states: Sequence[FeedState]) -> None:
        for part in _batched(states):
            self._call(
                "write feed states",
                self._open().documents.upsert,
                ids=[_FEED_PREFIX + state.url for state in part],
                embeddings=[_PLACEHOLDER_VECTOR] * len(part),
                metadatas=[_feed_metadata(state) for state in part],
            )

    def generation(self) -> str:
        """Changes whenever documents are added, changed or removed (by any process)."""
        result = self._call("read the index state", self._open().documents.get, ids=[_STATE_ID], include=["metadatas"])
        metadatas = result["metadatas"] or []
        return str(metadatas[0]["generation"]) if metadatas else ""

    def _bump_generation(self) -> None:
        self._call(
            "write the index state",
            self._open().documents.upsert,
            ids=[_STATE_ID],
            embeddings=[_PLACEHOLDER_VECTOR],
            metadatas=[{"kind": "state", "generation": uuid.uuid4().hex}],
        )

    def drop_word_vectors(self) -> None:
        """Remove the word-vector collection that indexes written before version 0.2 kept (see the module
        docstring): each machine now keeps its own."""
        client = self._open().client
        with contextlib.suppress(Exception):  # absent: nothing to do
            client.delete_collection(f"{self._settings.collection}__words")

    # -- answer models --------------------------------------------------------------------------------------------

    def put_answer_model(self, version: str, files: Mapping[str, bytes]) -> None:
        """Keep the files of a trained answer model, then make it the one in use (and bump the generation, so
        running engines notice)."""
        for name, data in files.items():
            packed = base64.b64encode(zlib.compress(data, 9)).decode("ascii")
            self._call(
                "write the answer model",
                self._open().models.upsert,
                ids=[f"{version}:{name}"],
                embeddings=[_PLACEHOLDER_VECTOR],
                metadatas=[{"kind": "file", "version": version, "name": name, **_spread("data", packed)}],
            )
        self.use_answer_model(version)

    def use_answer_model(self, version: str | None) -> None:
        """Answer with this trained version (None: the model shipped with citebot)."""
        metadata = {"kind": "current", "version": version or "", "updated": time.time()}
        self._call(
            "write the answer model",
            self._open().models.upsert,
            ids=[_CURRENT_MODEL_ID],
            embeddings=[_PLACEHOLDER_VECTOR],
            metadatas=[metadata],
        )
        self._bump_generation()

    def answer_model(self) -> str | None:
        """The trained version in use, or None for the shipped model."""
        result = self._call(
            "read the answer model", self._open().models.get, ids=[_CURRENT_MODEL_ID], include=["metadatas"]
        )
        metadatas = result["metadatas"] or []
        return (str(metadatas[0].get("version") or "") or None) if metadatas else None

    def answer_model_files(self, version: str) -> dict[str, bytes]:
        """The files of a trained version ({} when none is kept under that name)."""
        found = self._pages("read the answer model", self._open().models, where={"version": version})
        return {
            str(metadata["name"]): zlib.decompress(base64.b64decode(_gather(metadata, "data")))
            for _, metadata in found
            if metadata.get("kind") == "file"
        }

    # -- chunks --------------------------------------------------------------------------------------------

    def add_chunks(
        self, chunks: Sequence[Chunk], vectors: np.ndarray, sentences: Sequence[ChunkSentences] | None = None
    ) -> None:
        """Write chunks with their vectors and, when given, their sentence vectors (kept in the chunk's record)."""
        begin = 0
        for part in _batched(chunks):
            kept = sentences[begin : begin + len(part)] if sentences is not None else [None] * len(part)
            self._call(
                "write chunks",
                self._open().chunks.upsert,
                ids=[chunk.id for chunk in part],
                embeddings=vectors[begin : begin + len(part)],
                metadatas=[_chunk_metadata(chunk, found) for chunk, found in zip(part, kept, strict=True)],
            )
            begin += len(part)

    def chunks_of(self, doc_ids: Iterable[str]) -> list[tuple[Chunk, ChunkSentences | None]]:
        """The documents' chunks, each with its sentence vectors when ingestion stored them (for tools and tests;
        questions read only the chunks they retrieve, `stored_chunks`)."""
        ids = list(dict.fromkeys(doc_ids))
        records = {
            doc_id: _record_from(doc_id, metadata)
            for doc_id, metadata in self._by_ids("read documents", self._open().documents, ids, ("metadatas",))
            if metadata.get("kind") == "document"
        }
        contents = self.contents(list(records))
        chunk_ids = [
            f"{doc_id}:{position}" for doc_id, content in contents.items() for position in range(len(content.chunks))
        ]
        stored = self.stored_chunks(chunk_ids)
        found = []
        for doc_id, content in contents.items():
            for position, span in enumerate(content.chunks):
                chunk = Chunk(
                    id=f"{doc_id}:{position}",
                    doc_id=doc_id,
                    text=content.text[span.start : span.end],
                    title=records[doc_id].title,
                    start=span.start,
                    end=span.end,
                    heading=span.heading,
                    position=position,
                    page=span.page,
                )
                record = stored.get(chunk.id)
                if record is None:
                    continue
                found.append((chunk, sentences_of(chunk, record, content.headings)))
        return found

    def count_chunks(self) -> int:
        return int(self._call("count chunks", self._open().chunks.count))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ids of the k nearest chunks and their cosine similarity (1 - cosine distance), nearest first.

        An embedded index loaded before another process deleted chunks may still return their ids: callers keep
        only chunks of documents they know to be ready."""
        if k <= 0:
            return []
        result = self._call(
            "search", self._open().chunks.query, query_embeddings=[vector], n_results=k, include=["distances"]
        )
        return [
            (str(chunk_id), 1.0 - float(distance))
            for chunk_id, distance in zip(result["ids"][0], result["distances"][0], strict=True)
        ]

    def stored_chunks(self, chunk_ids: Sequence[str]) -> dict[str, StoredChunk]:
        """The vectors and sentences of the given chunks; those deleted meanwhile are left out.

        Another process may delete some of them while they are read; embedded Chroma then fails the whole read
        ("Error finding id"), so the chunks are read one by one and the deleted ones left out (a read that fails
        for every chunk is a real failure)."""
        if not chunk_ids:
            return {}
        include = ("embeddings", "metadatas")
        try:
            rows = list(self._by_ids("read chunks", self._open().chunks, chunk_ids, include))
        except StoreError as failure:
            rows = []
            for chunk_id in chunk_ids:
                with contextlib.suppress(StoreError):
                    rows += list(self._by_ids("read chunks", self._open().chunks, [chunk_id], include))
            if not rows:
                raise failure from failure.__cause__
        found = {}
        for chunk_id, embedding, metadata in rows:
            stored = _stored_sentences(metadata)
            spans, vectors, heading = stored if stored is not None else (None, None, None)
            found[str(chunk_id)] = StoredChunk(np.asarray(embedding, dtype=np.float32), spans, vectors, heading)
        return found


def sentences_of(chunk: Chunk, stored: StoredChunk, headings: Mapping[str, np.ndarray]) -> ChunkSentences | None:
    """The chunk's `ChunkSentences`: its stored sentences, with the vector of the heading it sits under."""
    if stored.spans is None or stored.sentence_vectors is None:
        return None  # written before sentence vectors were stored: the answerer embeds them on first use
    heading = stored.heading_vector
    if heading is None:
        heading = headings.get(heading_key(chunk))
    if heading is None:
        return None
    return ChunkSentences(stored.spans, stored.sentence_vectors, heading)


def heading_key(chunk: Chunk) -> str:
    """The text whose vector stands for a chunk's heading: the last level of its heading, else the document title,
    else the chunk's opening (for an untitled document)."""
    return chunk.heading.rsplit(" > ", 1)[-1] or chunk.title or chunk.text[:200]


def _batched(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """`items` in slices of at most `CALL_LIMIT` (well below Chroma's own maximum batch size)."""
    for begin in range(0, len(items), CALL_LIMIT):
        yield items[begin : begin + CALL_LIMIT]


# -- records ----------------------------------------------------------------------------------------------------


def _document_metadata(record: DocumentRecord, updated: float) -> dict[str, str | int | float | bool]:
    metadata: dict[str, str | int | float | bool] = {
        "kind": "document",
        "sources": json.dumps(list(record.sources)),
        "title": record.title,
        "chunks": record.chunks,
        "ingested_at": record.ingested_at,
        "ready": record.ready,
        "origin": record.origin,
        "updated": updated,
    }
    # Chroma stores no nulls: an unknown date or a file's missing URL is simply left out.
    if record.url is not None:
        metadata["url"] = record.url
    if record.published is not None:
        metadata["published"] = record.published
    if record.author is not None:
        metadata["author"] = record.author
    if record.web:
        metadata["web"] = json.dumps(
            {
                source: {k: v for k, v in asdict(state).items() if v is not None}
                for source, state in sorted(record.web.items())
            }
        )
    return metadata


def _record_from(doc_id: str, metadata: Mapping[str, Any]) -> DocumentRecord:
    return DocumentRecord(
        doc_id=doc_id,
        sources=tuple(json.loads(str(metadata["sources"]))),
        title=str(metadata["title"]),
        chunks=int(metadata["chunks"]),
        ingested_at=str(metadata["ingested_at"]),
        ready=bool(metadata["ready"]),
        url=_optional(metadata.get("url")),
        published=_optional(metadata.get("published")),
        origin=str(metadata.get("origin", "file")),
        author=_optional(metadata.get("author")),
        web={source: WebSource(**state) for source, state in json.loads(str(metadata.get("web", "{}"))).items()},
    )


def _encode_content(content: DocumentContent) -> dict[str, str]:
    """A document's content as Chroma metadata: the text compressed, the chunks' offsets and headings, and the
    heading vectors."""
    names = list(content.headings)
    metadata = {
        **_spread("text", base64.b64encode(zlib.compress(content.text.encode("utf-8"), 9)).decode("ascii")),
        **_spread(
            "chunks",
            json.dumps(
                [[span.start, span.end, span.heading, span.page] for span in content.chunks], ensure_ascii=False
            ),
        ),
        **_spread("heading_names", json.dumps(names, ensure_ascii=False)),
    }
    if names:
        metadata.update(_spread("headings", _pack(np.stack([content.headings[name] for name in names]))))
    return metadata


def _decode_content(metadata: Mapping[str, Any]) -> DocumentContent:
    """The inverse of `_encode_content`."""
    text = zlib.decompress(base64.b64decode(_gather(metadata, "text"))).decode("utf-8")
    spans = tuple(
        ChunkSpan(int(start), int(end), str(heading), _optional_int(page))
        for start, end, heading, page in json.loads(_gather(metadata, "chunks"))
    )
    names = json.loads(_gather(metadata, "heading_names") or "[]")
    vectors = _unpack(_gather(metadata, "headings")) if names else np.zeros((0, 0), dtype=np.float32)
    return DocumentContent(text, spans, dict(zip(names, vectors, strict=True)))


# Chroma indexes every metadata string in SQLite (key, value); an index entry longer than about 1,000 bytes spills
# into an overflow page of its own, mostly empty, so long values are kept in parts of at most this many characters
# (measured on the BBC News corpus: the index of the sentence vectors shrank from 2.5 times their size to 1.1).
_PART_CHARS = 900


def _spread(key: str, value: str) -> dict[str, str]:
    """`value` under `key`, `key.1`, `key.2`, ... in parts of at most `_PART_CHARS`."""
    parts = [value[begin : begin + _PART_CHARS] for begin in range(0, len(value), _PART_CHARS)] or [""]
    return {(key if index == 0 else f"{key}.{index}"): part for index, part in enumerate(parts)}


def _gather(metadata: Mapping[str, Any], key: str) -> str:
    """The value `_spread` kept under `key` ("" when absent)."""
    if key not in metadata:
        return ""
    parts = [str(metadata[key])]
    index = 1
    while f"{key}.{index}" in metadata:
        parts.append(str(metadata[f"{key}.{index}"]))
        index += 1
    return "".join(parts)


def _feed_metadata(state: FeedState) -> dict[str, str]:
    metadata = {"kind": "feed", "url": state.url, "fetched": state.fetched}
    if state.etag is not None:
        metadata["etag"] = state.etag
    if state.last_modified is not None:
        metadata["last_modified"] = state.last_modified
    return metadata


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _chunk_metadata(chunk: Chunk, sentences: ChunkSentences | None = None) -> dict[str, str | int]:
    metadata: dict[str, str | int] = {
        "doc_id": chunk.doc_id,
        "start": chunk.start,
        "end": chunk.end,
        "position": chunk.position,
    }
    if sentences is not None:
        # The sentences ride in the chunk's own record: written and deleted with it, never out of step with it.
        metadata.update(_spread("sentences", _pack_sentences(sentences.spans, sentences.vectors)))
    return metadata


# -- vectors in metadata -----------------------------------------------------------------------------------------
# Chroma's metadata holds text only: vectors are packed by `bot.vectors` (6 bits a value) and kept as base64.

_SENTENCES_FORMAT = 1


def _pack(vectors: np.ndarray) -> str:
    return base64.b64encode(vectors_module.pack(vectors)).decode("ascii")


def _unpack(packed: str) -> np.ndarray:
    return vectors_module.unpack(base64.b64decode(packed))


def _pack_sentences(spans: Sequence[tuple[int, int, bool]], vectors: np.ndarray) -> str:
    """A chunk's sentences: a format byte, each sentence's (start, end, right under a heading), their vectors."""
    places = struct.pack(f"<BI{3 * len(spans)}I", _SENTENCES_FORMAT, len(spans), *(v for s in spans for v in s))
    packed = _pack(vectors) if len(spans) else ""
    return base64.b64encode(places).decode("ascii") + "|" + packed


def _stored_sentences(
    metadata: Mapping[str, Any],
) -> tuple[tuple[tuple[int, int, bool], ...], np.ndarray, np.ndarray | None] | None:
    """(spans, sentence vectors, heading vector or None) of a chunk record, in either format it was written in."""
    if "sentences" in metadata:
        places, _, packed = _gather(metadata, "sentences").partition("|")
        raw = base64.b64decode(places)
        _, count = struct.unpack_from("<BI", raw)
        values = struct.unpack_from(f"<{3 * count}I", raw, 5)
        spans = tuple((values[i], values[i + 1], bool(values[i + 2])) for i in range(0, 3 * count, 3))
        vectors = _unpack(packed) if count else np.zeros((0, 0), dtype=np.float32)
        return spans, vectors, None
    if "sentence_spans" in metadata:  # written before version 0.2: half precision, the heading with each chunk
        spans = tuple((int(a), int(b), bool(c)) for a, b, c in json.loads(str(metadata["sentence_spans"])))
        heading = np.frombuffer(base64.b64decode(str(metadata["heading_vector"])), dtype="<f2").astype(np.float32)
        vectors = np.frombuffer(base64.b64decode(str(metadata["sentence_vectors"])), dtype="<f2").astype(np.float32)
        return spans, vectors.reshape(len(spans), heading.shape[0]), heading
    return None


def _is_connection_failure(exc: BaseException) -> bool:
    """Whether `exc`, or what caused it, is a refused or timed-out connection. Matched by class name for
    httpx's errors, so this module need not import httpx."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionError | TimeoutError) or type(seen).__name__ in _CONNECTION_ERRORS:
            return True
        if "Could not connect to a Chroma server" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_CONNECTION_ERRORS = frozenset({"ConnectError", "ConnectTimeout", "RemoteProtocolError", "ReadError"})


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
