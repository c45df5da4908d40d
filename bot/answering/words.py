"""Single-word vectors: the embedding model's vector of each word on its own ("scenery" is close to "backdrop").

Ingestion stores one for every word of the corpus (`ChunkStore.add_word_vectors`), and the corpus snapshot holds
them, so comparing a question's words with every word of the candidate sentences costs no model call; only the
question's own words that the corpus never uses are embedded when asked, and remembered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from bot.embeddings import Embedder


class WordVectors:
    """Vectors for words: the corpus's stored ones first, else embedded now (in one batch) and remembered."""

    def __init__(self, embedder: Embedder | None, cache_size: int = 50_000) -> None:
        self._embedder = embedder
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def vectors(self, words: Sequence[str], stored: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """One unit vector per word (rows, float32), or None without an embedder for words nobody stored."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for word in words:
                vector = stored.get(word)
                if vector is None:
                    vector = self._cache.get(word)
                if vector is not None:
                    found[word] = vector
        missing = [word for word in dict.fromkeys(words) if word not in found]
        if missing:
            if self._embedder is None:
                return None
            fresh = self._embedder.embed_documents(missing)
            with self._lock:
                for word, vector in zip(missing, fresh, strict=True):
                    found[word] = self._cache[word] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return np.stack([np.asarray(found[word], dtype=np.float32) for word in words])
