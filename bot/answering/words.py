"""Single-word vectors: the embedding model's vector of each word on its own ("scenery" is close to "backdrop").

A word's vector depends only on the model, so the index keeps none: each machine embeds the corpus's words once, in
the background of a long-running process, and keeps them beside its mirror of the corpus (`bot.corpus`). A word
that has no vector yet when a question needs it is embedded then (in one batch with the others) and kept too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from bot.embeddings import Embedder


class WordStore(Protocol):
    """Where word vectors are kept (`bot.corpus.Corpus`)."""

    def word_vectors(self, words: Iterable[str]) -> dict[str, np.ndarray]: ...

    def remember_word_vectors(self, words: Sequence[str], vectors: np.ndarray) -> None: ...


class WordVectors:
    """Vectors for words: kept ones first, else embedded now (in one batch) and kept."""

    def __init__(self, embedder: Embedder | None) -> None:
        self._embedder = embedder

    def vectors(self, words: Sequence[str], kept: WordStore | None) -> np.ndarray | None:
        """One unit vector per word (rows, float32), or None without an embedder for words nobody kept."""
        found = kept.word_vectors(words) if kept is not None else {}
        missing = [word for word in dict.fromkeys(words) if word not in found]
        if missing:
            if self._embedder is None:
                return None
            fresh = np.asarray(self._embedder.embed_documents(missing), dtype=np.float32)
            if kept is not None:
                kept.remember_word_vectors(missing, fresh)
            found.update(zip(missing, fresh, strict=True))
        return np.stack([np.asarray(found[word], dtype=np.float32) for word in words])
