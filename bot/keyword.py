"""Keyword search: BM25 over the chunks' terms, kept on disk by tantivy (the only module that imports it), and the
analyzer it shares with the extractive answerer (lower-case, stop words out, Snowball stems), so both agree on what
a "term" is.

Why tantivy: the index lives on disk and is memory-mapped, so a process holds none of it in its own memory; it is
updated in place (documents added and deleted, no rebuild); and a query reads only the posting lists of its terms,
with block-max WAND pruning. Measured on 400k chunks (`bench/scale.py`'s corpus): about 1 ms per question, where
SQLite FTS5 took 20-45 ms (it scores every chunk that holds any query term) and the in-memory bm25s index of
before had to be rebuilt, whole, in every process, whenever the corpus changed.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)

# Common English function words and question words: they say nothing about which passage answers.
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my myself
    no nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    s t don shouldn wasn weren won isn didn doesn hadn hasn haven couldn wouldn mightn mustn needn shan
    said says say tell told according name named whose per via yet ever""".split()
)


@lru_cache(maxsize=1)
def _stemmer() -> object:
    import Stemmer

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    return [word.lower().replace("’", "'") for word in _WORD.findall(text)]


def is_vocabulary_word(word: str) -> bool:
    """A content word worth a single-word vector: no stop word, no number, at least three letters."""
    return word not in STOP_WORDS and len(word) > 2 and not word.isdigit()


def vocabulary(text: str) -> set[str]:
    """The content words of a text as written (lower-case): what single-word vectors are kept for."""
    return {word for word in words(text) if is_vocabulary_word(word)}


def stem(word: str) -> str:
    """The analyzer's stem of one lower-case word ("talks" -> "talk")."""
    return str(_stemmer().stemWord(word))  # type: ignore[attr-defined]


def terms(text: str) -> list[str]:
    """The analyzed terms of a text: content words, stemmed ("talks" and "talk" are one term)."""
    content = [word for word in words(text) if word not in STOP_WORDS and (len(word) > 1 or word.isdigit())]
    return list(_stemmer().stemWords(content))  # type: ignore[attr-defined]


# A tantivy writer's indexing memory (tantivy wants at least 15 MB per thread); one thread, since the question
# path shares these two cores.
_WRITER_HEAP = 32_000_000
_TERMS, _CHUNK, _DOC = "terms", "chunk", "doc"


def _schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field(_TERMS, stored=False, tokenizer_name="citebot_terms", index_option="freq")
    builder.add_text_field(_CHUNK, stored=True, tokenizer_name="raw")
    builder.add_text_field(_DOC, stored=False, tokenizer_name="raw")
    return builder.build()


def idf(size: int, frequency: int) -> float:
    """BM25's inverse document frequency (as Lucene and tantivy compute it); a term no chunk uses gets the most."""
    return math.log(1.0 + (size - frequency + 0.5) / (frequency + 0.5))


class KeywordView:
    """The keyword index at one moment: statistics and hits of one question always come from the same segments."""

    def __init__(self, searcher: Any, schema: Any) -> None:
        self._searcher = searcher
        self._schema = schema
        self.size = int(searcher.num_docs) if searcher is not None else 0

    def frequency(self, term: str) -> int:
        """How many chunks use `term` (chunks deleted since the last merge may still count)."""
        return int(self._searcher.doc_freq(_TERMS, term)) if self._searcher is not None else 0

    def idf(self, term: str) -> float:
        return idf(self.size, self.frequency(term))

    def knows(self, term: str) -> bool:
        return self.frequency(term) > 0

    def together(self, term: str, others: Sequence[str]) -> int:
        """How many chunks use `term` together with at least one of `others`."""
        if self._searcher is None or not others:
            return 0
        import tantivy

        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, tantivy.Query.term_query(self._schema, _TERMS, term)),
                (
                    tantivy.Occur.Must,
                    tantivy.Query.boolean_query(
                        [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, _TERMS, o)) for o in others]
                    ),
                ),
            ]
        )
        return int(self._searcher.search(query, 1, count=True).count or 0)

    def search(self, query_terms: Sequence[str], k: int) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of the k best chunks for the query terms, best first."""
        if self._searcher is None or not query_terms or k <= 0 or not self.size:
            return []
        import tantivy

        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, _TERMS, term)) for term in query_terms]
        )
        found = self._searcher.search(query, k, count=False)
        return [
            (str(self._searcher.doc(address)[_CHUNK][0]), float(score)) for score, address in found.hits if score > 0
        ]


class KeywordIndex:
    """BM25 over chunks: in a folder (shared by the processes of one machine) or in memory (`from_texts`).

    Writes go through `update` (one writer at a time: the caller holds the machine-wide lock, see
    `bot.corpus`); readers take a `view` per question and see a write once `reload` has run.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._index: Any = None

    def _open(self) -> Any:
        with self._lock:
            if self._index is None:
                import tantivy

                schema = _schema()
                if self.folder is None:
                    index = tantivy.Index(schema)
                else:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    index = tantivy.Index(schema, path=str(self.folder), reuse=True)
                index.register_tokenizer(
                    "citebot_terms", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()
                )
                self._index = index
            return self._index

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> KeywordIndex:
        """An in-memory index of `texts` (chunk ids "0", "1", ...): for tests and small tools."""
        index = cls()
        index.update((), ((str(n), "", terms(text)) for n, text in enumerate(texts)))
        return index

    def view(self) -> KeywordView:
        index = self._open()
        return KeywordView(index.searcher(), index.schema)

    def reload(self) -> None:
        """See what another process (or writer) committed."""
        self._open().reload()

    def update(self, removed_documents: Iterable[str], added: Iterable[tuple[str, str, Sequence[str]]]) -> None:
        """Delete every chunk of `removed_documents`, add `added` (chunk id, document id, terms), in one commit."""
        import tantivy

        index = self._open()
        writer = index.writer(_WRITER_HEAP, 1)
        try:
            for doc_id in removed_documents:
                writer.delete_documents_by_term(_DOC, doc_id)
            for chunk_id, doc_id, chunk_terms in added:
                writer.add_document(tantivy.Document(**{_TERMS: " ".join(chunk_terms), _CHUNK: chunk_id, _DOC: doc_id}))
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            writer.wait_merging_threads()
        index.reload()

    def clear(self) -> None:
        """Remove every chunk (before a rebuild)."""
        index = self._open()
        writer = index.writer(_WRITER_HEAP, 1)
        try:
            writer.delete_all_documents()
            writer.commit()
        finally:
            writer.wait_merging_threads()
        index.reload()
