"""Answer quality on the seed corpus: the figures `citebot eval` reports, for each seed question set.

The seed articles are indexed with the real model in a fresh data dir; each set is then evaluated with the shipped
settings and sentence model: evidence in the first quote and anywhere (shown by an `answered` or `closest` answer),
answer hits, the three support tiers, confident answers to unanswerable questions, and the expected calibration
error of `confidence`. `natural_holdout.jsonl` was never used to tune anything; it shows how the figures carry
over to questions written apart from the development ones. Figures only, no assertions.

    python -m bench answers
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import DEVELOPMENT_SETS, QUESTION_SETS, SEED_CORPUS
from bench.squad import index_folder
from bot.evaluation import load_cases, run_evaluation

SETS = {
    "development (devset + natural_dev)": DEVELOPMENT_SETS,
    "held aside (natural_holdout)": ("natural_holdout.jsonl",),
}
SHOWN = (
    "evidence_first_quote",
    "evidence_anywhere",
    "answer_hit_rate",
    "answered_rate",
    "closest_rate",
    "declined_answerable",
    "unanswerable_not_answered",
    "confidence_ece",
    "recall@5",
    "latency_p50_ms",
)


def run(workdir: Path, show_misses: bool) -> None:
    engine = index_folder(SEED_CORPUS, workdir)
    for title, files in SETS.items():
        cases = [case for name in files for case in load_cases(QUESTION_SETS / name)]
        report = run_evaluation(engine, cases)
        metrics = report.metrics()
        print(f"{title}: {report.answerable} answerable, {report.unanswerable} unanswerable")
        for name in SHOWN:
            print(f"  {name:28s} {metrics[name]:.3f}")
        if show_misses:
            for miss in report.misses:
                print(f"    - [{miss.kind}] {miss.question}\n        {miss.got[:160]}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.answers")
    parser.add_argument("--misses", action="store_true", help="list the questions each set got wrong")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="citebot-answers-") as scratch:
        run(Path(scratch), args.misses)


if __name__ == "__main__":
    main()
