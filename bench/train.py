"""Train the extractive answerer's sentence ranker and confidence model: `python -m bench train`.

Data (development data only; SQuAD's held-out half is never read):
- SQuAD v1.1 and v2.0 (half) development split: even articles. A sentence is positive when it contains a gold
  answer; v2.0's unanswerable questions have none.
- The seed question sets `tests/data/devset.jsonl` and `tests/data/natural_dev.jsonl`: a sentence is positive
  when it contains an evidence string; follow-ups are read both alone and with the previous question folded in,
  as the engine reads them.

Each question is retrieved with the engine (k = 5) and every candidate sentence gets the answerer's own features
(`bot.answering.sentences`), so training sees exactly what answering sees. Every question is judged once by models
that did not train on it (four folds): those out-of-fold scores train the confidence model, Platt scaling maps its
output to a probability, and the decision thresholds are chosen on the seed questions' probabilities; the shipped
models then train on everything. Everything is seeded and single-threaded, so a rerun writes the same
files (`bot/answering/model/`).

    python -m bench train [-- --workdir DIR --limit N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import DEVELOPMENT_SETS, QUESTION_SETS, SEED_CORPUS, require_data
from bench.squad import DATA, index_folder, write_articles
from bot.answering.grounding import COMMON_WORDS_FILE, RARE_ZIPF
from bot.answering.scorer import (
    CONFIDENCE_FEATURES,
    CONFIDENCE_FILE,
    META_FILE,
    MODEL_DIR,
    RANKER_FILE,
    confidence_row,
)
from bot.answering.sentences import CATEGORICAL, FEATURES
from bot.engine import Engine, readings
from bot.evaluation import expected_calibration_error, load_cases
from bot.types import Turn

SEED_SETS = tuple(QUESTION_SETS / name for name in DEVELOPMENT_SETS)
# The seed questions are what citebot is for; SQuAD is many times larger, so each seed question counts this much
# for the confidence (which must fit the questions people ask) and less for the ranker (which learns as much from
# SQuAD, and over-fits the few seed questions when they weigh more).
SEED_WEIGHT = 8.0
RANKER_SEED_WEIGHT = 2.0
SEED = 7

RANKER_PARAMS = {
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
RANKER_ROUNDS = 300
CONFIDENCE_PARAMS = {
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
CONFIDENCE_ROUNDS = 200
FOLDS = 4


Item = tuple[str, tuple[Turn, ...], Sequence[str], bool]  # question, history, gold strings, answerable


@dataclass
class Group:
    """One question as the answerer sees it: candidate feature rows and which candidates answer."""

    source: str
    question: str
    features: np.ndarray
    labels: np.ndarray
    answerable: bool
    weight: float = 1.0


def _stable_fraction(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def collect(engine: Engine, items: Iterable[Item], source: str) -> list[Group]:
    """Groups for (question, history, gold strings, answerable) items, every reading of each."""
    answerer = engine.extractive
    groups = []
    for text, history, gold, answerable in items:
        for question in readings(text, history, engine.settings.top_k):
            if question.more:
                continue
            retrieval = engine.retrieve(question, engine.settings.top_k)
            found, _ = answerer.candidates(retrieval)
            if not found:
                continue
            labels = np.asarray([answerable and any(g in c.quote for g in gold) for c in found], dtype=np.float32)
            groups.append(
                Group(
                    source,
                    question.search_text,
                    np.stack([c.features for c in found]),
                    labels,
                    answerable,
                )
            )
    return groups


def squad_items(dataset: Path, corpus: Path) -> list[Item]:
    questions = write_articles(dataset, "dev", corpus)
    items: list[Item] = []
    for question in questions:
        items.append((question.question, (), question.answers, not question.impossible))
    return items


def seed_items() -> list[Item]:
    items: list[Item] = []
    for path in SEED_SETS:
        for case in load_cases(path):
            items.append((case.question, case.history, case.evidence, not case.unanswerable))
    return items


def build_groups(workdir: Path, limit: int | None) -> list[Group]:
    """Every source's groups, each cached in `workdir` (delete `<source>.pickle` to collect it again)."""
    groups: list[Group] = []
    for source in ("seed", "squad1", "squad2"):
        cache = workdir / f"{source}.pickle"
        if cache.exists():
            with cache.open("rb") as handle:
                groups += pickle.load(handle)
            continue
        started = time.perf_counter()
        if source == "seed":
            engine = index_folder(SEED_CORPUS, workdir / "seed", warm=False)
            found = collect(engine, seed_items(), source)
            for group in found:
                group.weight = SEED_WEIGHT
        else:
            dataset = DATA / ("dev-v1.1.json" if source == "squad1" else "dev-v2.0-half.json")
            corpus = workdir / source / "corpus"
            corpus.mkdir(parents=True, exist_ok=True)
            items = squad_items(dataset, corpus)
            if limit:
                items = items[:: max(1, len(items) // limit)]
            engine = index_folder(corpus, workdir / source / "data", warm=False)
            print(f"  {source}: indexed in {time.perf_counter() - started:.0f} s; collecting {len(items)} questions")
            found = collect(engine, items, source)
        print(f"  {source}: {len(found)} question readings in {time.perf_counter() - started:.0f} s")
        with cache.open("wb") as handle:
            pickle.dump(found, handle)
        groups += found
    return groups


# -- training -----------------------------------------------------------------------------------------------------


def _lgb() -> object:
    import lightgbm

    return lightgbm


def train_ranker(groups: Sequence[Group]) -> object:
    lightgbm = _lgb()
    ranked = [g for g in groups if g.labels.any() and len(g.labels) > 1]
    data = lightgbm.Dataset(  # type: ignore[attr-defined]
        np.concatenate([g.features for g in ranked]),
        label=np.concatenate([g.labels for g in ranked]),
        group=[len(g.labels) for g in ranked],
        weight=np.concatenate([np.full(len(g.labels), min(g.weight, RANKER_SEED_WEIGHT)) for g in ranked]),
        feature_name=list(FEATURES),
        categorical_feature=list(CATEGORICAL),
        free_raw_data=False,
    )
    return lightgbm.train(RANKER_PARAMS, data, num_boost_round=RANKER_ROUNDS)  # type: ignore[attr-defined]


def _fold(group: Group) -> int:
    return int(_stable_fraction(group.source + group.question) * FOLDS)


def cross_fitted_scores(groups: Sequence[Group]) -> list[np.ndarray]:
    """Ranker scores for every group from a ranker that did not train on it (k-fold), for the confidence model."""
    folds = [_fold(g) for g in groups]
    scores: list[np.ndarray] = [np.zeros(0)] * len(groups)
    for fold in range(FOLDS):
        model = train_ranker([g for g, f in zip(groups, folds, strict=True) if f != fold])
        for index, (group, f) in enumerate(zip(groups, folds, strict=True)):
            if f == fold:
                scores[index] = np.asarray(model.predict(group.features, num_threads=1))  # type: ignore[attr-defined]
    return scores


def confidence_rows(groups: Sequence[Group], scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.stack([confidence_row(g.features, s) for g, s in zip(groups, scores, strict=True)])
    labels = np.asarray([g.labels[int(np.argmax(s))] for g, s in zip(groups, scores, strict=True)], dtype=np.float32)
    return rows, labels


def train_confidence(groups: Sequence[Group], scores: Sequence[np.ndarray]) -> object:
    lightgbm = _lgb()
    rows, labels = confidence_rows(groups, scores)
    data = lightgbm.Dataset(  # type: ignore[attr-defined]
        rows,
        label=labels,
        weight=np.asarray([g.weight for g in groups]),
        feature_name=list(CONFIDENCE_FEATURES),
        categorical_feature=list(CATEGORICAL),
        free_raw_data=False,
    )
    return lightgbm.train(CONFIDENCE_PARAMS, data, num_boost_round=CONFIDENCE_ROUNDS)  # type: ignore[attr-defined]


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


def top1(groups: Sequence[Group], scores: Sequence[np.ndarray]) -> float:
    answerable = [(g, s) for g, s in zip(groups, scores, strict=True) if g.labels.any()]
    return sum(g.labels[int(np.argmax(s))] for g, s in answerable) / max(1, len(answerable))


def choose_thresholds(groups: Sequence[Group], probabilities: np.ndarray) -> dict[str, float]:
    """On the seed questions: the lowest `answer` level at which at most 15 % of the unanswerable questions would
    be answered by confidence alone (the grounding check and the choice of reading hold back more of them);
    `relevant`, the passage similarity below which nothing is on topic, keeps answerable questions out of `none`
    (at most 2 % of them)."""
    seed = [i for i, g in enumerate(groups) if g.source == "seed"]
    unanswerable = sorted(probabilities[i] for i in seed if not groups[i].answerable)
    cut = unanswerable[int(np.floor(0.85 * len(unanswerable)))] if unanswerable else 0.5
    answer = float(min(0.9, max(0.3, cut + 1e-6)))
    column = FEATURES.index("passage_similarity")
    similarities = sorted(
        float(groups[i].features[:, column].max()) for i in seed if groups[i].answerable and groups[i].labels.any()
    )
    relevant = similarities[int(0.02 * len(similarities))] - 0.01 if similarities else 0.2
    return {"answer": round(answer, 4), "relevant": round(float(relevant), 4)}


def report(name: str, groups: Sequence[Group], scores: Sequence[np.ndarray], probabilities: np.ndarray) -> None:
    labels = np.asarray([g.labels[int(np.argmax(s))] for g, s in zip(groups, scores, strict=True)])
    scored = [(float(p), bool(hit)) for p, hit in zip(probabilities, labels, strict=True)]
    print(
        f"  {name:28s} {len(groups):5d} questions  top-1 {top1(groups, scores):.3f}  "
        f"ECE {expected_calibration_error(scored):.3f}"
    )


def out_of_fold_confidence(groups: Sequence[Group], scores: Sequence[np.ndarray]) -> np.ndarray:
    """Raw confidence scores for every group from a confidence model that did not train on it (k-fold)."""
    folds = [_fold(g) for g in groups]
    raw = np.zeros(len(groups))
    for fold in range(FOLDS):
        inside = [i for i, f in enumerate(folds) if f != fold]
        model = train_confidence([groups[i] for i in inside], [scores[i] for i in inside])
        outside = [i for i, f in enumerate(folds) if f == fold]
        rows, _ = confidence_rows([groups[i] for i in outside], [scores[i] for i in outside])
        raw[outside] = model.predict(rows, raw_score=True, num_threads=1)  # type: ignore[attr-defined]
    return raw


def train(workdir: Path, limit: int | None, out: Path) -> None:
    started = time.perf_counter()
    groups = build_groups(workdir, limit)
    print(f"{len(groups)} question readings collected in {time.perf_counter() - started:.0f} s")
    # Every figure below is out of fold: for each question, from models that never trained on it.
    crossed = cross_fitted_scores(groups)
    raw = out_of_fold_confidence(groups, crossed)
    _, labels = confidence_rows(groups, crossed)
    weights = np.asarray([g.weight for g in groups])
    slope, intercept = fit_platt(raw, labels, weights)
    probabilities = 1.0 / (1.0 + np.exp(-(slope * raw + intercept)))
    thresholds = choose_thresholds(groups, probabilities)
    print("out of fold (each question judged by models that did not train on it):")
    for source in ("seed", "squad1", "squad2"):
        picked = [i for i, g in enumerate(groups) if g.source == source]
        report(source, [groups[i] for i in picked], [crossed[i] for i in picked], probabilities[picked])
    print(f"thresholds: {thresholds}; Platt slope {slope:.3f}, intercept {intercept:.3f}")

    ranker = train_ranker(groups)
    confidence = train_confidence(groups, crossed)
    out.mkdir(parents=True, exist_ok=True)
    ranker.save_model(str(out / RANKER_FILE))  # type: ignore[attr-defined]
    confidence.save_model(str(out / CONFIDENCE_FILE))  # type: ignore[attr-defined]
    meta = {
        "features": list(FEATURES),
        "platt": [round(slope, 6), round(intercept, 6)],
        "thresholds": thresholds,
        "trained_on": {source: sum(1 for g in groups if g.source == source) for source in ("seed", "squad1", "squad2")},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    write_common_words(out / COMMON_WORDS_FILE.name)
    print(f"wrote {out} in {time.perf_counter() - started:.0f} s")


def write_common_words(path: Path) -> None:
    """The commonest English words by wordfreq (a development dependency only): what grounding never calls rare."""
    from wordfreq import top_n_list, zipf_frequency

    common = sorted(w for w in top_n_list("en", 30_000) if w.isalpha() and zipf_frequency(w, "en") >= RARE_ZIPF)
    path.write_text("\n".join(common) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.train")
    parser.add_argument("--workdir", type=Path, default=None, help="keep indexes and features here (default: temp)")
    parser.add_argument("--limit", type=int, default=None, help="use about this many questions of each SQuAD file")
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="where to write the model files")
    args = parser.parse_args()
    require_data(DATA / "dev-v1.1.json", DATA / "dev-v2.0-half.json")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        train(args.workdir, args.limit, args.out)
        return
    with tempfile.TemporaryDirectory(prefix="citebot-train-") as scratch:
        train(Path(scratch), args.limit, args.out)


if __name__ == "__main__":
    main()
