"""The vector store: the only module that imports chromadb.

Three collections live in one Chroma database, embedded under `CITEBOT_DATA_DIR` or on a Chroma server:
- `<collection>`: one record per chunk, with its embedding and its offsets into the document text;
- `<collection>__documents`: one record per document (keyed by content hash) with its sources and its whole text,
  a state record whose generation changes on every write, so running engines notice new documents, and one record
  per fetched feed or sitemap with its validators for conditional requests;
- `<collection>__words`: one record per word of the corpus vocabulary (keyed by the word), with the vector of
  that word embedded on its own.

Why the whole text is kept (as the document record's Chroma `document`): the console shows a cited passage in its
document, and the chunks do not add up to the text (headings and the space between sentences fall outside them).
Keeping it in Chroma, not in a local file, lets a console on another machine read it from a shared Chroma server.
Documents indexed before the text was kept are rebuilt from their chunks, with blanks where the gaps were, so
every citation's offsets still land on its quote.

A document record is written as *pending* before its chunks and flipped to *ready* after them; readers only use
chunks of ready documents. That is what keeps an interrupted ingestion from ever exposing half a document, and
what lets the next run find and remove the leftovers.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bot.config import Settings
from bot.embeddings import Embedder
from bot.errors import StoreError
from bot.types import Chunk, ChunkSentences, DocumentRecord, FeedState, WebSource

log = logging.getLogger(__name__)

# Chroma phones home unless told not to; set before chromadb is imported anywhere.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

_STATE_ID = "__state__"
# The most ids, filter values or records one Chroma call carries: SQLite refuses a statement with more than 32,766
# variables, and a call that grows with the corpus would also grow its memory and (with a server) its response.
CALL_LIMIT = 500
_FEED_PREFIX = "__feed__:"
# The documents collection needs vectors of some size; nobody searches it by similarity.
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
    words: Any


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
        """A new client and its three collections. Does not touch `self`: the caller decides when to switch."""
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
            words = client.get_or_create_collection(f"{name}__words", embedding_function=function)
        except StoreError:
            raise
        except Exception as exc:
            raise self._unreachable_error(exc) or StoreError(
                f"cannot open the index ({self.location}): {_one_line(exc)}; check CITEBOT_CHROMA_HOST/"
                "CITEBOT_CHROMA_PORT and CITEBOT_CHROMA_TOKEN"
            ) from exc
        return _Handles(client, chunks, documents, words)

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

    @property
    def _chunk_collection(self) -> Any:
        return self._open().chunks

    @property
    def _document_collection(self) -> Any:
        return self._open().documents

    @property
    def _word_collection(self) -> Any:
        return self._open().words

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

    # -- documents -----------------------------------------------------------------------------------------

    def documents(self, include_pending: bool = False) -> dict[str, DocumentRecord]:
        records = {}
        for doc_id, metadata in self._pages("read documents", self._document_collection, where={"kind": "document"}):
            record = DocumentRecord(
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
                web={
                    source: WebSource(**state) for source, state in json.loads(str(metadata.get("web", "{}"))).items()
                },
            )
            if record.ready or include_pending:
                records[doc_id] = record
        return records

    def put_documents(self, records: Sequence[DocumentRecord], texts: Mapping[str, str] | None = None) -> None:
        """Insert or update document records, then bump the generation so readers reload.

        `texts` (doc_id -> the document's text) is given when a document is first written; an update without it
        keeps the stored text (Chroma's upsert leaves fields it is not given alone).
        """
        if not records:
            return
        for part in self._batched(records):
            extra = {"documents": [texts[record.doc_id] for record in part]} if texts else {}
            self._call(
                "write document records",
                self._document_collection.upsert,
                ids=[record.doc_id for record in part],
                embeddings=[_PLACEHOLDER_VECTOR] * len(part),
                metadatas=[_document_metadata(record) for record in part],
                **extra,
            )
        self._bump_generation()

    def document_text(self, doc_id: str) -> tuple[str, bool] | None:
        """The text of a ready document and whether it is complete (False: rebuilt from its chunks, see the module
        docstring); None for an unknown document."""
        result = self._call(
            "read a document", self._document_collection.get, ids=[doc_id], include=["documents", "metadatas"]
        )
        metadatas = result["metadatas"] or []
        if not metadatas or metadatas[0].get("kind") != "document" or not metadatas[0].get("ready"):
            return None
        text = (result["documents"] or [None])[0]
        if text:
            return str(text), True
        rebuilt: list[str] = []
        length = 0
        for chunk in sorted((chunk for chunk, _ in self.chunks_of([doc_id])), key=lambda chunk: chunk.start):
            if chunk.end > length:
                piece = " " * (chunk.start - length) + chunk.text[max(length - chunk.start, 0) :]
                rebuilt.append(piece)
                length = chunk.end
        return "".join(rebuilt), False

    def _batched(self, items: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """`items` in slices of at most `CALL_LIMIT` (well below Chroma's own maximum batch size)."""
        for begin in range(0, len(items), CALL_LIMIT):
            yield items[begin : begin + CALL_LIMIT]

    def _pages(
        self, what: str, collection: Any, include: Sequence[str] = ("metadatas",), **query: Any
    ) -> Iterator[tuple[Any, ...]]:
        """(id, *included fields) of every record a `get` finds, read `CALL_LIMIT` records at a time."""
        offset = 0
        while True:
            page = self._call(what, collection.get, include=list(include), limit=CALL_LIMIT, offset=offset, **query)
            columns = [page[field] or [] for field in include]
            yield from zip(page["ids"], *columns, strict=True)
            if len(page["ids"]) < CALL_LIMIT:
                return
            offset += CALL_LIMIT

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Remove documents whole: hide them (not ready), drop their chunks, then drop their records."""
        if not doc_ids:
            return
        existing = self.documents(include_pending=True)
        hidden = [replace(r, ready=False) for doc_id in doc_ids if (r := existing.get(doc_id)) is not None]
        self.put_documents(hidden)
        for part in self._batched(list(doc_ids)):
            self._call("delete chunks", self._chunk_collection.delete, where={"doc_id": {"$in": list(part)}})
            self._call("delete document records", self._document_collection.delete, ids=list(part))
        self._bump_generation()

    def feed_states(self) -> dict[str, FeedState]:
        """Feed or sitemap URL -> its validators as last fetched whole (see `FeedState`)."""
        found = self._pages("read feed states", self._document_collection, where={"kind": "feed"})
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
        for part in self._batched(states):
            self._call(
                "write feed states",
                self._document_collection.upsert,
                ids=[_FEED_PREFIX + state.url for state in part],
                embeddings=[_PLACEHOLDER_VECTOR] * len(part),
                metadatas=[_feed_metadata(state) for state in part],
            )

    def generation(self) -> str:
        """Changes whenever documents are added, changed or removed (by any process)."""
        result = self._call(
            "read the index state", self._document_collection.get, ids=[_STATE_ID], include=["metadatas"]
        )
        metadatas = result["metadatas"] or []
        return str(metadatas[0]["generation"]) if metadatas else ""

    def _bump_generation(self) -> None:
        self._call(
            "write the index state",
            self._document_collection.upsert,
            ids=[_STATE_ID],
            embeddings=[_PLACEHOLDER_VECTOR],
            metadatas=[{"kind": "state", "generation": uuid.uuid4().hex}],
        )

    # -- chunks --------------------------------------------------------------------------------------------

    def add_chunks(
        self, chunks: Sequence[Chunk], vectors: np.ndarray, sentences: Sequence[ChunkSentences] | None = None
    ) -> None:
        """Write chunks with their vectors and, when given, their sentence vectors (kept in the chunk's record)."""
        begin = 0
        for part in self._batched(chunks):
            kept = sentences[begin : begin + len(part)] if sentences is not None else [None] * len(part)
            self._call(
                "write chunks",
                self._chunk_collection.upsert,
                ids=[chunk.id for chunk in part],
                embeddings=vectors[begin : begin + len(part)],
                documents=[chunk.text for chunk in part],
                metadatas=[_chunk_metadata(chunk, found) for chunk, found in zip(part, kept, strict=True)],
            )
            begin += len(part)

    def chunks_of(self, doc_ids: Iterable[str]) -> list[tuple[Chunk, ChunkSentences | None]]:
        """The documents' chunks, each with its sentence vectors when ingestion stored them."""
        found = []
        for part in self._batched(list(doc_ids)):
            pages = self._pages(
                "read chunks",
                self._chunk_collection,
                include=("documents", "metadatas"),
                where={"doc_id": {"$in": list(part)}},
            )
            found += [(_chunk_from(chunk_id, text, meta), _sentences_from(meta)) for chunk_id, text, meta in pages]
        return found

    def count_chunks(self) -> int:
        return int(self._call("count chunks", self._chunk_collection.count))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[Chunk, float]]:
        """The k nearest chunks and their cosine similarity (1 - cosine distance)."""
        if k <= 0:
            return []
        result = self._call(
            "search",
            self._chunk_collection.query,
            query_embeddings=[vector],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        found = zip(
            result["ids"][0],
            result["documents"][0],
            result["metadatas"][0],
            result["distances"][0],
            strict=True,
        )
        # An embedded index loaded before another process deleted chunks still returns their ids, with no
        # metadata: they are gone, so they are left out.
        return [
            (_chunk_from(chunk_id, text, meta), 1.0 - float(dist))
            for chunk_id, text, meta, dist in found
            if meta is not None
        ]

    # -- words -------------------------------------------------------------------------------------------------

    def word_vectors(self, words: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those of `words` that ingestion embedded (each word on its own), half precision."""
        found: dict[str, np.ndarray] = {}
        for result in self._read_words(words, include=["embeddings"]):
            vectors = np.asarray(result["embeddings"], dtype=np.float16)
            found.update(zip(result["ids"], vectors, strict=True))
        return found

    def known_words(self, words: Iterable[str]) -> set[str]:
        """Those of `words` whose vectors are stored."""
        known: set[str] = set()
        for result in self._read_words(words, include=[]):
            known.update(result["ids"])
        return known

    def _read_words(self, words: Iterable[str], include: list[str]) -> Iterator[Any]:
        """The word records of the distinct `words`, read in batches (one Chroma result per batch)."""
        for part in self._batched(sorted(set(words))):
            yield self._call("read word vectors", self._word_collection.get, ids=list(part), include=include)

    def add_word_vectors(self, words: Sequence[str], vectors: np.ndarray) -> None:
        """Keep single-word vectors (the corpus vocabulary): a word's vector never changes, so none is deleted."""
        begin = 0
        for part in self._batched(words):
            self._call(
                "write word vectors",
                self._word_collection.upsert,
                ids=list(part),
                embeddings=vectors[begin : begin + len(part)],
            )
            begin += len(part)

    def similarities(self, vector: np.ndarray, chunk_ids: Sequence[str]) -> dict[str, float]:
        """Cosine similarity of `vector` to the given chunks (for passages found by keyword search only).

        Another process may delete some of them meanwhile; embedded Chroma then fails the whole read ("Error
        finding id"), so the chunks are read one by one and the deleted ones left out (a read that fails for every
        chunk is a real failure)."""
        read = functools.partial(self._call, "read embeddings", self._chunk_collection.get, include=["embeddings"])
        try:
            results = [read(ids=list(part)) for part in self._batched(chunk_ids)]
        except StoreError as failure:
            results = []
            for chunk_id in chunk_ids:
                with contextlib.suppress(StoreError):
                    results.append(read(ids=[chunk_id]))
            if not results:
                raise failure from failure.__cause__
        query = np.asarray(vector, dtype=np.float32)
        return {
            chunk_id: float(np.asarray(embedding, dtype=np.float32) @ query)
            for result in results
            for chunk_id, embedding in zip(result["ids"], result["embeddings"], strict=True)
        }


def _document_metadata(record: DocumentRecord) -> dict[str, str | int | bool]:
    metadata: dict[str, str | int | bool] = {
        "kind": "document",
        "sources": json.dumps(sorted(record.sources)),
        "title": record.title,
        "chunks": record.chunks,
        "ingested_at": record.ingested_at,
        "ready": record.ready,
        "origin": record.origin,
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


def _feed_metadata(state: FeedState) -> dict[str, str]:
    metadata = {"kind": "feed", "url": state.url, "fetched": state.fetched}
    if state.etag is not None:
        metadata["etag"] = state.etag
    if state.last_modified is not None:
        metadata["last_modified"] = state.last_modified
    return metadata


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


def _chunk_metadata(chunk: Chunk, sentences: ChunkSentences | None = None) -> dict[str, str | int]:
    metadata: dict[str, str | int] = {
        "doc_id": chunk.doc_id,
        "title": chunk.title,
        "start": chunk.start,
        "end": chunk.end,
        "heading": chunk.heading,
        "position": chunk.position,
    }
    if chunk.page is not None:
        metadata["page"] = chunk.page
    if sentences is not None:
        # Sentence vectors ride in the chunk's own record (half precision, base64): written and deleted with it,
        # so they can never disagree with it, and kept out of the vector index nobody searches them by.
        metadata["sentence_spans"] = json.dumps([[start, end, int(after)] for start, end, after in sentences.spans])
        metadata["sentence_vectors"] = _pack(sentences.vectors)
        metadata["heading_vector"] = _pack(sentences.heading)
    return metadata


def _pack(vectors: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vectors, dtype="<f2").tobytes()).decode("ascii")


def _unpack(packed: str) -> np.ndarray:
    """Half precision, as stored: a corpus snapshot keeps every sentence's vector in memory."""
    return np.frombuffer(base64.b64decode(packed), dtype="<f2")


def _sentences_from(metadata: Any) -> ChunkSentences | None:
    if "sentence_spans" not in metadata:
        return None  # written before sentence vectors were stored: the answerer embeds them on first use
    spans = tuple((int(start), int(end), bool(after)) for start, end, after in json.loads(metadata["sentence_spans"]))
    heading = _unpack(str(metadata["heading_vector"]))
    vectors = _unpack(str(metadata["sentence_vectors"])).reshape(len(spans), heading.shape[0])
    return ChunkSentences(spans, vectors, heading)


def _chunk_from(chunk_id: str, text: str | None, metadata: Any) -> Chunk:
    page = metadata.get("page")
    return Chunk(
        id=chunk_id,
        doc_id=str(metadata["doc_id"]),
        text=text or "",
        title=str(metadata["title"]),
        start=int(metadata["start"]),
        end=int(metadata["end"]),
        heading=str(metadata.get("heading", "")),
        position=int(metadata.get("position", 0)),
        page=int(page) if page is not None else None,
    )


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
