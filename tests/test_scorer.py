"""The learned sentence model: the shipped files load and behave, a stale model is refused in one line, training is
reproducible, and retrieval's score fusion and the choice between readings of a follow-up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bot.answering.scorer import CONFIDENCE_FILE, MODEL_DIR, RANKER_FILE, SentenceScorer
from bot.answering.sentences import FEATURES
from bot.answering.training import Group, confidence_rows, fit_platt, import_lightgbm, train_ranker
from bot.answering.trees import Forest, ModelFormatError
from bot.errors import AnswerError
from bot.learning import load_shipped
from bot.retrieval import fuse
from bot.types import Chunk

COLUMN = {name: index for index, name in enumerate(FEATURES)}


def row(**values: float) -> np.ndarray:
    features = np.zeros(len(FEATURES), dtype=np.float32)
    for name, value in values.items():
        features[COLUMN[name]] = value
    return features


def test_numpy_reads_the_models_exactly_as_lightgbm_does() -> None:
    """Answering evaluates the model files with numpy; on every shipped training row (every kind of question asked,
    the categorical feature included) and on rows with missing and out-of-range values, the raw outputs are
    LightGBM's own, to the last bit."""
    lightgbm = import_lightgbm()
    groups = load_shipped()[::3]
    ranker_file, confidence_file = MODEL_DIR / RANKER_FILE, MODEL_DIR / CONFIDENCE_FILE
    ranker = lightgbm.Booster(model_file=str(ranker_file))
    rows = np.concatenate([group.features for group in groups]).astype(np.float64)
    odd = rows[:50].copy()
    odd[::2, ::3] = np.nan
    odd[1::2, COLUMN["asks"]] = [-1, 99, 3.7, 1e9, 0] * 5
    rows = np.concatenate([rows, odd])
    forest = Forest.from_text(ranker_file.read_text(encoding="utf-8"))
    assert np.array_equal(forest.predict(rows), ranker.predict(rows, raw_score=True, num_threads=1))
    scores = [ranker.predict(group.features, num_threads=1) for group in groups]
    confidence, _ = confidence_rows(groups, scores)
    booster = lightgbm.Booster(model_file=str(confidence_file))
    forest = Forest.from_text(confidence_file.read_text(encoding="utf-8"))
    assert np.array_equal(forest.predict(confidence), booster.predict(confidence, raw_score=True, num_threads=1))


def test_a_file_that_is_not_a_tree_model_is_refused() -> None:
    with pytest.raises(ModelFormatError):
        Forest.from_text("tree\nversion=v3\n")
    forest = Forest.from_text((MODEL_DIR / RANKER_FILE).read_text(encoding="utf-8"))
    with pytest.raises(ModelFormatError):
        forest.predict(np.zeros((2, 3)))


def test_the_shipped_ranker_prefers_the_sentence_that_matches_the_question() -> None:
    scorer = SentenceScorer()
    weak = row(cos=0.1, coverage=0.0, soft_coverage=0.2, passage_similarity=0.3, passage_rank=3, cos_gap=-0.6)
    strong = row(cos=0.7, coverage=0.9, coverage_context=0.9, soft_coverage=0.8, matched=3, passage_similarity=0.6)
    scores = scorer.rank(np.stack([weak, strong]))
    assert scores[1] > scores[0]


def test_confidence_is_a_probability_that_grows_with_the_evidence() -> None:
    scorer = SentenceScorer()
    # Rows as a real question of three terms gives them: one that nothing matches, one that states what is asked.
    poor = np.stack(
        [
            row(cos=0.1, passage_similarity=0.2, missing_weight=0.8, unmatched_weight=0.8, question_terms=3),
            row(cos=0.1, question_terms=3),
        ]
    )
    good = np.stack(
        [
            row(
                cos=0.8,
                cos_best=0.8,
                coverage=1.0,
                coverage_best=1.0,
                coverage_context=1.0,
                coverage_window=1.0,
                soft_coverage=0.9,
                soft_coverage_min=0.8,
                passage_similarity=0.7,
                passage_score=1.0,
                matched=3,
                exact_words=1.0,
                question_terms=3,
                doc_coverage=1.0,
                focus_terms=1,
                focus_coverage=1.0,
                offers=1,
                offers_count=1,
                offers_near_focus=1,
            ),
            row(question_terms=3),
        ]
    )
    low = scorer.confidence(poor, scorer.rank(poor))
    high = scorer.confidence(good, scorer.rank(good))
    assert 0.0 <= low < high <= 1.0
    thresholds = scorer.thresholds
    assert 0.0 < thresholds.answer < 1.0 and 0.0 < thresholds.relevant < 1.0


def test_a_model_trained_on_other_features_is_refused_in_one_line(tmp_path: Path) -> None:
    stale = tmp_path / "model"
    shutil.copytree(MODEL_DIR, stale)
    meta = json.loads((stale / "meta.json").read_text())
    meta["features"] = meta["features"][:-1]
    (stale / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AnswerError, match="retrain it with `python -m bench train`") as error:
        SentenceScorer(stale).warm_up()
    assert "\n" not in str(error.value)


def test_training_is_reproducible() -> None:
    generator = np.random.default_rng(3)
    groups = []
    for index in range(60):
        features = generator.random((8, len(FEATURES))).astype(np.float32)
        features[:, COLUMN["question_type"]] = index % 3
        labels = np.zeros(8, dtype=np.float32)
        labels[int(np.argmax(features[:, COLUMN["coverage"]]))] = 1.0
        groups.append(Group("squad1", f"q{index}", features, labels, answerable=True))
    first, second = train_ranker(groups), train_ranker(groups)
    assert first.model_to_string() == second.model_to_string()  # type: ignore[attr-defined]


def test_platt_scaling_fits_a_known_logistic_curve() -> None:
    raw = np.linspace(-4, 4, 400)
    probability = 1 / (1 + np.exp(-(1.5 * raw - 0.5)))
    labels = (np.random.default_rng(0).random(400) < probability).astype(float)
    slope, intercept = fit_platt(raw, labels, np.ones(400))
    assert 1.0 < slope < 2.2 and -1.2 < intercept < 0.2


def test_fusion_weighs_both_rankings_and_keeps_chunks_only_one_found() -> None:
    def chunk(name: str) -> Chunk:
        return Chunk(id=name, doc_id="d", text=name, title="t", start=0, end=len(name))

    a, b, c = chunk("a"), chunk("b"), chunk("c")
    fused = fuse(dense=[(a, 0.9), (b, 0.5)], keyword=[(b, 10.0), (c, 5.0)])
    assert set(fused) == {"a", "b", "c"}
    assert fused["b"] > fused["c"] and fused["b"] > fused["a"]  # first by keywords, and found by both
    assert all(0.0 <= value <= 1.0 for value in fused.values())
