"""The learned part of the extractive answerer: a ranker over candidate sentences, and a calibrated confidence that
the best one answers the question.

Both are LightGBM models trained by `python -m bench train` on the development data only (SQuAD v1.1 and v2.0
development split, the project's seed question sets); the files live in `bot/answering/model/`. The ranker orders
the candidates of one question; the confidence model reads the best candidate's features, its ranker score and
its margin over the runner-up, and its output is mapped to a probability by Platt scaling fitted on held-aside
development questions, so `confidence` means "the chance that the first quote answers".
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.answering.sentences import FEATURES
from bot.answering.trees import Forest
from bot.errors import AnswerError

MODEL_DIR = Path(__file__).resolve().parent / "model"
RANKER_FILE = "ranker.txt"
CONFIDENCE_FILE = "confidence.txt"
META_FILE = "meta.json"

CONFIDENCE_FEATURES = (*FEATURES, "score", "score_margin", "candidates")


def confidence_row(features: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The confidence model's input for a question: the best candidate's features, its score and margin."""
    order = np.argsort(-scores)
    best = scores[order[0]]
    runner_up = scores[order[1]] if len(order) > 1 else best - 1.0
    extra = np.asarray([best, best - runner_up, float(len(scores))], dtype=np.float32)
    return np.concatenate([features[order[0]], extra])


@dataclass(frozen=True)
class Thresholds:
    """Confidence levels of the decision: `answered` at or above `answer`; `none` below `relevant` passage
    similarity (nothing on topic); `closest` in between. Chosen on development questions by `bench train`."""

    answer: float
    relevant: float


class SentenceScorer:
    """Loads the model files on first use, and evaluates them with numpy (`bot.answering.trees`)."""

    def __init__(self, directory: Path = MODEL_DIR) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._ranker: Forest | None = None
        self._confidence: Forest | None = None
        self._meta: dict[str, Any] = {}

    def warm_up(self) -> None:
        self._load()

    def _load(self) -> None:
        with self._lock:
            if self._ranker is not None:
                return
            try:
                meta = json.loads((self.directory / META_FILE).read_text(encoding="utf-8"))
                if tuple(meta["features"]) != FEATURES:
                    raise AnswerError(
                        f"the sentence model in {self.directory} was trained on other features; "
                        "retrain it with `python -m bench train`"
                    )
                ranker = Forest.from_text((self.directory / RANKER_FILE).read_text(encoding="utf-8"))
                confidence = Forest.from_text((self.directory / CONFIDENCE_FILE).read_text(encoding="utf-8"))
            except AnswerError:
                raise
            except OSError as exc:
                raise AnswerError(
                    f"cannot read the sentence model in {self.directory} ({exc.strerror or exc}); "
                    "reinstall citebot or run `python -m bench train`"
                ) from None
            except Exception as exc:  # a model or meta file that is not what training wrote
                raise AnswerError(
                    f"the sentence model in {self.directory} is unreadable ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:160]})"
                ) from None
            self._meta, self._ranker, self._confidence = meta, ranker, confidence

    def _models(self) -> tuple[Forest, Forest]:
        self._load()
        assert self._ranker is not None and self._confidence is not None
        return self._ranker, self._confidence

    @property
    def meta(self) -> dict[str, Any]:
        """What `meta.json` says of the model: its features, levels, what it was trained on and its figures."""
        self._load()
        return dict(self._meta)

    @property
    def thresholds(self) -> Thresholds:
        self._load()
        return Thresholds(**self._meta["thresholds"])

    def rank(self, features: np.ndarray) -> np.ndarray:
        """One score per candidate row; higher is better."""
        ranker, _ = self._models()
        return np.asarray(ranker.predict(features), dtype=np.float32)

    def confidence(self, features: np.ndarray, scores: np.ndarray) -> float:
        """The calibrated probability that the best-scored candidate answers the question."""
        _, model = self._models()
        row = confidence_row(features, scores)[None, :]
        raw = float(model.predict(row)[0])
        slope, intercept = self._meta["platt"]
        return 1.0 / (1.0 + math.exp(-(slope * raw + intercept)))
