"""Word vectors without running the model: the embedding model's own input vectors of its word pieces.

A word's vector is the mean of its word pieces' input embeddings, read once from the model folder
(`model.safetensors`, `tokenizer.json`). They are far weaker than the model's output for a whole sentence, but
they cost a table lookup, so every word of every candidate sentence can be compared with the question's words:
"school" is closer to "university" than to "beerhouse". Models without those files get no word vectors, and the
features built on them are zero.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.embeddings import resolve_model_path

_TABLE = "embeddings.word_embeddings.weight"


class StaticWordVectors:
    """Unit vectors of words, from the model's input embedding table; loaded on first use, cached per word."""

    def __init__(self, model: str, cache_size: int = 200_000) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._table: np.ndarray | None = None
        self._tokenizer: Any = None
        self._available = True
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size

    def warm_up(self) -> None:
        self._load()

    def _load(self) -> bool:
        with self._lock:
            if self._table is not None or not self._available:
                return self._available
            folder = Path(resolve_model_path(self._model))
            if not (folder / "model.safetensors").is_file() or not (folder / "tokenizer.json").is_file():
                self._available = False
                return False
            from safetensors import safe_open
            from tokenizers import Tokenizer

            with safe_open(str(folder / "model.safetensors"), framework="numpy") as weights:
                if _TABLE not in weights.keys():  # noqa: SIM118 (safe_open has no __contains__)
                    self._available = False
                    return False
                self._table = np.asarray(weights.get_tensor(_TABLE), dtype=np.float32)
            self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            return True

    def vectors(self, words: Sequence[str]) -> np.ndarray | None:
        """One unit vector per word (rows), or None when the model has no input table to read."""
        if not words or not self._load():
            return None
        return np.stack([self._vector(word) for word in words])

    def _vector(self, word: str) -> np.ndarray:
        found = self._cache.get(word)
        if found is not None:
            return found
        assert self._table is not None
        ids = self._tokenizer.encode(word, add_special_tokens=False).ids
        vector = self._table[ids].mean(axis=0) if ids else np.zeros(self._table.shape[1], dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        vector = vector / norm if norm else vector
        if len(self._cache) < self._cache_size:  # a plain dict: words recur, and a lost race costs one lookup
            self._cache[word] = vector
        return vector
