"""Answer quality: the figures `citebot eval` reports, for every question set, on the corpus each is about.

- On the seed articles alone: the seed sets (`devset`, `natural_dev`; `natural_holdout`, never tuned on) and the
  casual sets (`casual_dev`; `casual_aside`, never trained on): chat-style questions about the seed articles.
- On the seed articles + all 2,225 BBC News articles: the news sets (`news_dev`; `news_aside`, never trained on):
  questions about specific even-numbered BBC stories, a third of them asking a detail the article does not give.

Each corpus is indexed with the real model in a fresh data dir (or `--workdir`, kept between runs); each set is then
evaluated with the shipped settings and sentence model: evidence in the first quote and anywhere (shown by an
`answered` or `closest` answer), the share answered confidently and how many of those are right, the three support
tiers, confident answers to unanswerable questions, and the calibration error of `confidence`. Figures only.

    python -m bench answers [-- --sets news_dev,casual_dev --misses --workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import BBC_NEWS, DEVELOPMENT_SETS, QUESTION_SETS, SEED_CORPUS, bbc_folders, require_data
from bench.squad import index_folder
from bot.engine import Engine
from bot.evaluation import load_cases, run_evaluation

# title -> (question files, corpus)
SETS: dict[str, tuple[tuple[str, ...], str]] = {
    "seed development (devset + natural_dev)": (DEVELOPMENT_SETS, "seed"),
    "seed held aside (natural_holdout)": (("natural_holdout.jsonl",), "seed"),
    "casual development (casual_dev)": (("casual_dev.jsonl",), "seed"),
    "casual held aside (casual_aside)": (("casual_aside.jsonl",), "seed"),
    "news development (news_dev)": (("news_dev.jsonl",), "news"),
    "news held aside (news_aside)": (("news_aside.jsonl",), "news"),
}
SHOWN = (
    "evidence_first_quote",
    "evidence_anywhere",
    "answered_rate",
    "answered_precision",
    "closest_rate",
    "declined_answerable",
    "unanswerable_not_answered",
    "answer_hit_rate",
    "confidence_ece",
    "recall@5",
    "document_first",
    "latency_p50_ms",
)


def corpus_engine(corpus: str, workdir: Path) -> Engine:
    """The engine over the seed articles, or over the seed articles and the BBC News corpus."""
    if corpus == "seed":
        return index_folder(SEED_CORPUS, workdir / "seed")
    require_data(*bbc_folders(BBC_NEWS))
    return index_folder([SEED_CORPUS, *bbc_folders(BBC_NEWS)], workdir / "news")


def run(workdir: Path, selected: list[str] | None, show_misses: bool) -> None:
    engines: dict[str, Engine] = {}
    for title, (files, corpus) in SETS.items():
        if selected and not any(Path(name).stem in selected for name in files):
            continue
        if corpus not in engines:
            engines[corpus] = corpus_engine(corpus, workdir)
        cases = [case for name in files for case in load_cases(QUESTION_SETS / name)]
        report = run_evaluation(engines[corpus], cases)
        metrics = report.metrics()
        print(f"{title}: {report.answerable} answerable, {report.unanswerable} unanswerable")
        for name in SHOWN:
            if name != "document_first" or report.with_document:
                print(f"  {name:28s} {metrics[name]:.3f}")
        if show_misses:
            for miss in report.misses:
                print(f"    - [{miss.kind}] {miss.question}\n        {miss.got[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.answers")
    parser.add_argument("--sets", default="", help="only these sets, by file name (comma-separated: news_dev,...)")
    parser.add_argument("--misses", action="store_true", help="list the questions each set got wrong")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the indexes here (default: a temp dir)")
    args = parser.parse_args()
    selected = [name.strip() for name in args.sets.split(",") if name.strip()] or None
    if args.workdir is not None:
        run(args.workdir, selected, args.misses)
        return
    with tempfile.TemporaryDirectory(prefix="citebot-answers-") as scratch:
        run(Path(scratch), selected, args.misses)


if __name__ == "__main__":
    main()
