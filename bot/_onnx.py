"""Torch-free embedding for the question path: the `tokenizers` library and ONNX Runtime.

Why: importing sentence-transformers (torch, transformers) takes seconds and hundreds of megabytes, while a
question needs one small forward pass. The model is exported to ONNX once, into `<data_dir>/models/`, by a child
process (so the process that answers never imports torch); `OnnxEmbedder` then serves it with onnxruntime and
pools like sentence-transformers: the mean of the token vectors under the attention mask (or the first token,
for CLS-pooled models), then L2 normalisation.

Reached through `bot.embeddings` (the public surface); this module never imports torch or sentence-transformers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.errors import EmbeddingError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Bump when the export's layout or contents change: older exports are then ignored and made again.
EXPORT_FORMAT = 1
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "citebot-export.json"
# Texts per forward pass; texts are sorted by length first, so each batch pads little.
BATCH_SIZE = 32

Announce = Callable[[str], None]
Export = Callable[[Path], None]  # writes MODEL_FILE, TOKENIZER_FILE and CONFIG_FILE into the given folder


def quiet(message: str) -> None:
    """The default `Announce`: say nothing."""


def folder_tokenizer(folder: Path) -> Tokenizer | None:
    """The fast tokenizer saved in a model folder, set to count (no padding, no truncation); None without one."""
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exceptions for any malformed file
        raise EmbeddingError(f"cannot read the tokenizer {path} ({exc}); reinstall the model or delete it") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def count_tokens(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    """Word pieces per text, special tokens included: what the model would see before truncating."""
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(texts)]


def export_key(model: str, path: str) -> str:
    """A folder name for the export of `model`: readable, and different whenever the model's files change."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}\0{model}\0{path}".encode())
    folder = Path(path)
    if folder.is_dir():
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                stat = file.stat()
                digest.update(f"\0{file.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model.rsplit("/", 1)[-1].rsplit(":", 1)[-1]).strip("-") or "model"
    return f"{slug}-{digest.hexdigest()[:12]}"


@contextmanager
def _exclusive(lock_path: Path, announce: Announce) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path`: two processes starting at once export the model only once (the
    second says that it waits, then finds the export done)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            announce("Waiting for another citebot process to prepare the embedding model…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


FIRST_USE_NOTICE = "Preparing the embedding model for questions (first use only, about 20 s)…"


def ensure_export(folder: Path, export: Export, announce: Announce = quiet, notice: str = FIRST_USE_NOTICE) -> Path:
    """`folder`, exported first if it is not there yet (`notice` is announced when an export starts).

    The export is written to a temporary folder beside it and renamed into place, under a lock, so a reader
    never sees half an export and a crash leaves only a temporary folder, removed by the next export.
    """
    if (folder / CONFIG_FILE).is_file():
        return folder
    with _exclusive(folder.with_name(folder.name + ".lock"), announce):
        if (folder / CONFIG_FILE).is_file():  # another process exported it while we waited for the lock
            return folder
        for stale in folder.parent.glob(f"{folder.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        announce(notice)
        partial = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        partial.mkdir(parents=True)
        try:
            export(partial)
            if not (partial / CONFIG_FILE).is_file():
                raise EmbeddingError(f"the model export into {partial} wrote no {CONFIG_FILE}")
            os.replace(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return folder


class OnnxEmbedder:
    """An exported sentence-transformers model on ONNX Runtime; exported and loaded on first use."""

    def __init__(
        self, model: str, locate: Callable[[], Path], export: Export, announce: Announce | None = None
    ) -> None:
        """`locate` gives the export's folder (called on first use, since it reads the model's files)."""
        self._model_name = model
        self._locate = locate
        self._export = export
        self._announce = announce or quiet
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    @property
    def name(self) -> str:
        return self._model_name

    @property
    def max_tokens(self) -> int:
        return self._model.max_tokens

    @property
    def _model(self) -> _Loaded:
        with self._lock:
            if self._loaded is None:
                folder = ensure_export(self._locate(), self._export, self._announce)
                self._announce("Loading the embedding model…")
                self._loaded = _Loaded(folder)
            return self._loaded

    def load(self) -> None:
        _ = self._model

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._model.embed(texts)

    def embed_tokens(self, texts: list[str]) -> list[Any]:
        """Each text's token vectors with their offsets (`bot.embeddings.TokenVectors`)."""
        from bot.embeddings import TokenVectors

        return [TokenVectors(*found) for found in self._model.embed_tokens(texts)]

    def embed_query(self, text: str) -> np.ndarray:
        return self._model.embed([text])[0]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return count_tokens(self._model.counter, texts)


class _Loaded:
    """The session, the two tokenizers (one set up to embed, one to count) and the pooling of one export."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        try:
            import onnxruntime
        except ImportError:
            raise EmbeddingError("onnxruntime is not installed; run `make setup`") from None
        try:
            config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
            self.max_tokens = int(config["max_seq_length"])
            self.dimension = int(config["dimension"])
            self.pooling = str(config["pooling"])
            self.lower_case = bool(config.get("do_lower_case", False))
            self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))  # pads and truncates as exported
            self.counter = Tokenizer.from_str(self.tokenizer.to_str())  # the same tokenizer, set to count
            self.counter.no_padding()
            self.counter.no_truncation()
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3  # errors only: its warnings about unused initializers mean nothing here
            # Idle worker threads sleep instead of spinning: on a shared machine spinning burned a third more CPU
            # per batch and was slower, not faster.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = onnxruntime.InferenceSession(
                str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
            )
        except (OSError, ValueError, KeyError) as exc:
            raise EmbeddingError(
                f"the exported model in {folder} is unreadable ({type(exc).__name__}); delete that folder and "
                "it is exported again on next use"
            ) from exc
        except Exception as exc:  # onnxruntime raises its own types for a corrupt model file
            raise EmbeddingError(
                f"ONNX Runtime cannot load {folder / MODEL_FILE} ({type(exc).__name__}); delete that folder and "
                "it is exported again on next use"
            ) from exc
        self.inputs = [item.name for item in self.session.get_inputs()]

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # sentence-transformers strips each text (and lower-cases it for models configured so) before tokenizing.
        cleaned = [text.strip().lower() if self.lower_case else text.strip() for text in texts]
        order = sorted(range(len(cleaned)), key=lambda i: len(cleaned[i]))
        vectors = np.zeros((len(cleaned), self.dimension), dtype=np.float32)
        for begin in range(0, len(order), BATCH_SIZE):
            batch = order[begin : begin + BATCH_SIZE]
            vectors[batch] = self._forward([cleaned[i] for i in batch])
        return vectors

    def embed_tokens(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(token vectors, their character offsets in each text, the pooled vector) per text."""
        found = []
        for begin in range(0, len(texts), BATCH_SIZE):
            batch = texts[begin : begin + BATCH_SIZE]
            leads = [len(text) - len(text.lstrip()) for text in batch]  # stripped below, as sentence-transformers does
            cleaned = [text.strip().lower() if self.lower_case else text.strip() for text in batch]
            encodings = self.tokenizer.encode_batch(cleaned)
            tokens, pooled = self._run(encodings)
            for index, (encoding, lead) in enumerate(zip(encodings, leads, strict=True)):
                keep = np.array(encoding.attention_mask, dtype=bool)
                offsets = np.array(encoding.offsets, dtype=np.int64)[keep] + lead
                found.append((tokens[index][keep], offsets, pooled[index]))
        return found

    def _forward(self, texts: list[str]) -> np.ndarray:
        return self._run(self.tokenizer.encode_batch(texts))[1]

    def _run(self, encodings: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """The token vectors of a batch, and each text's pooled, normalized vector."""
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        feeds: dict[str, Any] = {
            "input_ids": np.array([encoding.ids for encoding in encodings], dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": np.array([encoding.type_ids for encoding in encodings], dtype=np.int64),
        }
        tokens = self.session.run(None, {name: feeds[name] for name in self.inputs})[0]
        if self.pooling == "cls":
            pooled = tokens[:, 0, :]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (tokens * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return tokens, np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)
