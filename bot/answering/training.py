"""Training the extractive answerer's two models from questions with known answers.

A `Group` is one question as the answerer sees it: the feature rows of its candidate sentences (`sentences.FEATURES`)
and which of them answer (none, for a question the corpus cannot answer). From groups:
1. the ranker (LightGBM lambdarank) learns to order a question's candidates;
2. every group is scored by rankers that did not train on it (folds kept by `Group.fold_key`, so the questions
   about one article fall in one fold), and those out-of-fold scores train the confidence model (LightGBM,
   binary: does the first candidate answer?), whose own out-of-fold output is mapped to a probability by Platt
   scaling;
3. the decision levels are chosen on those probabilities, per kind of question (`LEVEL_TARGETS`), so that the
   confident tier holds wherever citebot is used (a few seed articles, a news corpus of thousands, chat-style
   questions).
Everything is seeded and single-threaded: the same groups give the same files.

`python -m bench train` builds the groups from the development data and ships the result in `model/`;
`citebot train` adds an operator's labelled questions (`bot.learning`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.answering.scorer import CONFIDENCE_FEATURES, CONFIDENCE_FILE, META_FILE, RANKER_FILE, confidence_row
from bot.answering.sentences import CATEGORICAL, FEATURES
from bot.evaluation import expected_calibration_error

SEED = 7
FOLDS = 4
RANKER_ROUNDS = 300
CONFIDENCE_ROUNDS = 200
RANKER_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [1],
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "seed": SEED,
    "verbosity": -1,
}
CONFIDENCE_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 5.0,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "seed": SEED,
    "verbosity": -1,
}
# The largest share of unanswerable questions of each kind that may reach the `answered` level by confidence
# alone (the grounding check and the choice of reading hold back more of them); the level is the lowest that meets
# every kind present. SQuAD's questions are not among them: they are not what people ask.
LEVEL_TARGETS = {"seed": 0.10, "casual": 0.10, "news": 0.12, "labels": 0.10}
# Answerable questions whose best passage is less similar than this are kept out of `none` (at most this share).
RELEVANT_SHARE = 0.02

Progress = Callable[[str], None]


@dataclass
class Group:
    """One question as the answerer sees it: candidate feature rows and which candidates answer."""

    source: str  # where it comes from: seed, casual, news, squad1, squad2, labels
    question: str
    features: np.ndarray
    labels: np.ndarray
    answerable: bool
    weight: float = 1.0  # for the confidence model; the ranker caps it at `ranker_weight`
    ranker_weight: float = 1.0
    fold_key: str = ""  # questions sharing a key share a fold (default: the question)

    def fold(self) -> int:
        return int(_stable_fraction(self.source + (self.fold_key or self.question)) * FOLDS)


@dataclass
class Trained:
    """Both models, the Platt map, the decision levels, and out-of-fold figures per source."""

    ranker: Any
    confidence: Any
    platt: tuple[float, float]
    thresholds: dict[str, float]
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def save(self, directory: Path, extra: dict[str, Any] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ranker.save_model(str(directory / RANKER_FILE))
        self.confidence.save_model(str(directory / CONFIDENCE_FILE))
        meta = {
            "features": list(FEATURES),
            "platt": [round(self.platt[0], 6), round(self.platt[1], 6)],
            "thresholds": self.thresholds,
            "trained_on": self.counts,
            "out_of_fold": self.figures,
            **(extra or {}),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _stable_fraction(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def import_lightgbm() -> Any:
    """lightgbm without scikit-learn: lightgbm imports it, when installed, for an estimator API citebot never uses,
    and that import alone cost every answering process a second and 60 MB (bench startup)."""
    if "sklearn" in sys.modules:
        import lightgbm

        return lightgbm
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # `import sklearn` now raises ImportError
    try:
        import lightgbm
    finally:
        del sys.modules["sklearn"]
    return lightgbm


def train_ranker(groups: Sequence[Group]) -> Any:
    lightgbm = import_lightgbm()
    ranked = [g for g in groups if g.labels.any() and len(g.labels) > 1]
    data = lightgbm.Dataset(
        np.concatenate([g.features for g in ranked]),
        label=np.concatenate([g.labels for g in ranked]),
        group=[len(g.labels) for g in ranked],
        weight=np.concatenate([np.full(len(g.labels), g.ranker_weight) for g in ranked]),
        feature_name=list(FEATURES),
        categorical_feature=list(CATEGORICAL),
        free_raw_data=False,
    )
    return lightgbm.train(RANKER_PARAMS, data, num_boost_round=RANKER_ROUNDS)


def confidence_rows(groups: Sequence[Group], scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.stack([confidence_row(g.features, s) for g, s in zip(groups, scores, strict=True)])
    labels = np.asarray([g.labels[int(np.argmax(s))] for g, s in zip(groups, scores, strict=True)], dtype=np.float32)
    return rows, labels


def train_confidence(groups: Sequence[Group], scores: Sequence[np.ndarray]) -> Any:
    lightgbm = import_lightgbm()
    rows, labels = confidence_rows(groups, scores)
    data = lightgbm.Dataset(
        rows,
        label=labels,
        weight=np.asarray([g.weight for g in groups]),
        feature_name=list(CONFIDENCE_FEATURES),
        categorical_feature=list(CATEGORICAL),
        free_raw_data=False,
    )
    return lightgbm.train(CONFIDENCE_PARAMS, data, num_boost_round=CONFIDENCE_ROUNDS)


def cross_fitted_scores(groups: Sequence[Group], progress: Progress) -> list[np.ndarray]:
    """Ranker scores for every group from a ranker that did not train on it (k-fold)."""
    folds = [g.fold() for g in groups]
    scores: list[np.ndarray] = [np.zeros(0)] * len(groups)
    for fold in range(FOLDS):
        progress(f"ranker, fold {fold + 1} of {FOLDS}")
        model = train_ranker([g for g, f in zip(groups, folds, strict=True) if f != fold])
        for index, (group, f) in enumerate(zip(groups, folds, strict=True)):
            if f == fold:
                scores[index] = np.asarray(model.predict(group.features, num_threads=1))
    return scores


def out_of_fold_confidence(groups: Sequence[Group], scores: Sequence[np.ndarray], progress: Progress) -> np.ndarray:
    """Raw confidence scores for every group from a confidence model that did not train on it (k-fold)."""
    folds = [g.fold() for g in groups]
    raw = np.zeros(len(groups))
    for fold in range(FOLDS):
        progress(f"confidence, fold {fold + 1} of {FOLDS}")
        inside = [i for i, f in enumerate(folds) if f != fold]
        model = train_confidence([groups[i] for i in inside], [scores[i] for i in inside])
        outside = [i for i, f in enumerate(folds) if f == fold]
        if outside:
            rows, _ = confidence_rows([groups[i] for i in outside], [scores[i] for i in outside])
            raw[outside] = model.predict(rows, raw_score=True, num_threads=1)
    return raw


def fit_platt(raw: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the logistic map raw score -> probability, by weighted Newton steps."""
    slope, intercept = 1.0, 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(slope * raw + intercept)))
        gradient = np.asarray([np.sum(weights * (p - labels) * raw), np.sum(weights * (p - labels))])
        w = weights * p * (1 - p)
        hessian = np.asarray([[np.sum(w * raw * raw), np.sum(w * raw)], [np.sum(w * raw), np.sum(w)]])
        hessian += np.eye(2) * 1e-6
        step = np.linalg.solve(hessian, gradient)
        slope, intercept = slope - float(step[0]), intercept - float(step[1])
        if np.abs(step).max() < 1e-9:
            break
    return slope, intercept


def choose_thresholds(groups: Sequence[Group], probabilities: np.ndarray) -> dict[str, float]:
    """`answer`: the lowest level at which, for each kind of question in `LEVEL_TARGETS`, at most its share of
    the unanswerable ones reach it; `relevant`: the passage similarity below which nothing is on topic, keeping at
    most `RELEVANT_SHARE` of the answerable questions of those kinds out of `none`."""
    levels = []
    for source, allowed in LEVEL_TARGETS.items():
        unanswerable = sorted(probabilities[i] for i, g in enumerate(groups) if g.source == source and not g.answerable)
        if unanswerable:
            levels.append(unanswerable[min(len(unanswerable) - 1, int(np.floor((1 - allowed) * len(unanswerable))))])
    answer = float(min(0.9, max(0.3, max(levels, default=0.5) + 1e-6)))
    column = FEATURES.index("passage_similarity")
    similarities = sorted(
        float(g.features[:, column].max())
        for g in groups
        if g.source in LEVEL_TARGETS and g.answerable and g.labels.any()
    )
    relevant = similarities[int(RELEVANT_SHARE * len(similarities))] - 0.01 if similarities else 0.2
    return {"answer": round(answer, 4), "relevant": round(float(relevant), 4)}


def figures(
    groups: Sequence[Group], scores: Sequence[np.ndarray], probabilities: np.ndarray, level: float
) -> dict[str, float]:
    """Out-of-fold figures of one set of groups: the first candidate right, answered confidently (answerable),
    its precision, unanswerable ones reaching the level, and the calibration error."""
    answerable = [(g, s, p) for g, s, p in zip(groups, scores, probabilities, strict=True) if g.answerable]
    unanswerable = [p for g, p in zip(groups, probabilities, strict=True) if not g.answerable]
    right = [bool(g.labels[int(np.argmax(s))]) for g, s, _ in answerable]
    confident = [(hit, p >= level) for hit, (_, _, p) in zip(right, answerable, strict=True)]
    answered = [hit for hit, sure in confident if sure]
    scored = [
        (float(p), bool(g.labels[int(np.argmax(s))])) for g, s, p in zip(groups, scores, probabilities, strict=True)
    ]
    return {
        "questions": float(len(groups)),
        "first_right": sum(right) / max(1, len(right)),
        "answered": len(answered) / max(1, len(right)),
        "answered_precision": sum(answered) / max(1, len(answered)),
        "unanswerable_reaching_level": sum(p >= level for p in unanswerable) / max(1, len(unanswerable)),
        "calibration_error": expected_calibration_error(scored),
    }


def train(groups: Sequence[Group], progress: Progress = lambda line: None) -> Trained:
    """Both models from `groups`, with the out-of-fold figures that say how well they do on unseen questions."""
    crossed = cross_fitted_scores(groups, progress)
    raw = out_of_fold_confidence(groups, crossed, progress)
    _, labels = confidence_rows(groups, crossed)
    weights = np.asarray([g.weight for g in groups])
    slope, intercept = fit_platt(raw, labels, weights)
    probabilities = 1.0 / (1.0 + np.exp(-(slope * raw + intercept)))
    thresholds = choose_thresholds(groups, probabilities)
    sources = list(dict.fromkeys(g.source for g in groups))
    report = {}
    for source in sources:
        picked = [i for i, g in enumerate(groups) if g.source == source]
        report[source] = {
            name: round(value, 4)
            for name, value in figures(
                [groups[i] for i in picked], [crossed[i] for i in picked], probabilities[picked], thresholds["answer"]
            ).items()
        }
    progress("the ranker, on everything")
    ranker = train_ranker(groups)
    progress("the confidence model, on everything")
    confidence = train_confidence(groups, crossed)
    counts = {source: sum(1 for g in groups if g.source == source) for source in sources}
    return Trained(ranker, confidence, (slope, intercept), thresholds, report, counts)
