"""Abstention trade-off of the extractive answerer, on SQuAD v2.0's development split and on the project's dev set.

The answerer answers when its best sentence is close enough in meaning to the question (`answer_similarity`) or
covers enough of its terms. This sweeps that threshold and prints, for each value, the share of unanswerable
questions abstained on and of answerable ones answered, so the shipped value can be seen against every other.
Each question is retrieved once; only the answering step is repeated per threshold. Figures only, no assertions.

Goals it is read against: SQuAD v2 60 % abstained with 85 % answered; dev set 90 % abstained with at most 5 %
false abstention (95 % answered).

    python -m bench abstention [-- --limit 1500 --workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import DEVSET, SEED_CORPUS
from bench.squad import DATA, _sample, build_engine, index_folder
from bot.answering.extractive import ExtractiveAnswerer, ExtractiveSettings
from bot.engine import Engine, prepare_question
from bot.evaluation import load_cases
from bot.retrieval import Retrieval
from bot.types import Turn

THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70)


@dataclass(frozen=True)
class Retrieved:
    retrieval: Retrieval
    unanswerable: bool


def retrieve(engine: Engine, items: Iterable[tuple[str, tuple[Turn, ...], bool]]) -> list[Retrieved]:
    retrieved = []
    for text, history, unanswerable in items:
        retrieval = engine.retrieve(prepare_question(text, history), engine.settings.top_k)
        retrieved.append(Retrieved(retrieval, unanswerable))
    return retrieved


def sweep(engine: Engine, retrieved: list[Retrieved], title: str) -> None:
    shipped = ExtractiveSettings()
    answerer = ExtractiveAnswerer(shipped, engine.embedder)  # one answerer: sentence vectors are embedded once
    unanswerable = sum(item.unanswerable for item in retrieved)
    answerable = len(retrieved) - unanswerable
    print(f"{title}: {answerable} answerable, {unanswerable} unanswerable")
    print("  answer_similarity   unanswerable abstained   answerable answered")
    for threshold in THRESHOLDS:
        answerer.settings = replace(shipped, answer_similarity=threshold)
        abstained = answered = 0
        for item in retrieved:
            answer = answerer.answer(item.retrieval)
            if item.unanswerable:
                abstained += answer.abstained
            else:
                answered += not answer.abstained
        mark = "  (shipped)" if threshold == shipped.answer_similarity else ""
        print(
            f"  {threshold:17.2f}   {abstained / max(1, unanswerable):22.3f}   "
            f"{answered / max(1, answerable):19.3f}{mark}"
        )


def run(limit: int | None, workdir: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="citebot-abstention-") as scratch:
        base = workdir or Path(scratch)
        engine = index_folder(SEED_CORPUS, base / "seed")
        cases = load_cases(DEVSET)
        sweep(engine, retrieve(engine, ((c.question, c.history, c.unanswerable) for c in cases)), "dev set")
        engine, questions, _ = build_engine(DATA / "dev-v2.0-half.json", "dev", base / "v2")
        sample = _sample(questions, limit)
        sweep(engine, retrieve(engine, ((q.question, (), q.impossible) for q in sample)), "SQuAD v2.0 half, dev split")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.abstention")
    parser.add_argument("--limit", type=int, default=1500, help="ask an evenly spaced sample of this many questions")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the indexes here (default: a temp dir)")
    args = parser.parse_args()
    run(args.limit, args.workdir)


if __name__ == "__main__":
    main()
