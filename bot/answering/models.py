"""Which answer model answers: the one shipped with citebot, or a version trained on this index's operators' labels
(`citebot train`, `bot.learning`), kept in the index itself (`ChunkStore.put_answer_model`), so every process that
answers from the index, on any machine, switches to it, and cached here under `CITEBOT_DATA_DIR/models/answerer/`.

A version that cannot be read (a file missing or corrupt, features of another citebot) is never used: the model in
use stays, and one warning says why.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from bot.answering.scorer import MODEL_DIR, SentenceScorer
from bot.errors import AnswerError
from bot.store import ChunkStore

log = logging.getLogger(__name__)

CACHE_FOLDER = Path("models") / "answerer"


class AnswerModels:
    """Finds the model in use and loads it; cheap to construct."""

    def __init__(self, store: ChunkStore, data_dir: Path) -> None:
        self._store = store
        self._cache = data_dir / CACHE_FOLDER

    def in_use(self) -> str | None:
        """The trained version the index names, or None for the shipped model."""
        return self._store.answer_model()

    def scorer(self, version: str | None) -> SentenceScorer:
        """A loaded scorer for `version` (None: shipped); raises AnswerError when it cannot be read."""
        scorer = SentenceScorer(MODEL_DIR) if version is None else SentenceScorer(self.folder(version))
        scorer.warm_up()
        return scorer

    def folder(self, version: str) -> Path:
        """The version's files on this machine, fetched from the index the first time."""
        folder = self._cache / version
        if folder.is_dir():
            return folder
        files = self._store.answer_model_files(version)
        if not files:
            raise AnswerError(f"the index names answer model {version}, but holds none of its files")
        partial = self._cache / f".{version}.{uuid.uuid4().hex}"
        partial.mkdir(parents=True)
        for name, data in files.items():
            (partial / Path(name).name).write_bytes(data)
        try:
            partial.rename(folder)
        except OSError:  # another process of this machine fetched it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
        return folder
