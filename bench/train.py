"""Train the extractive answerer's sentence ranker and confidence model: `python -m bench train`.

Data (development data only; SQuAD's held-out half, odd-numbered BBC articles and the held-aside question sets
are never read):
- the seed question sets `devset.jsonl` and `natural_dev.jsonl` and the chat-style `casual_dev.jsonl`, on the seed
  articles; follow-ups are read as the engine reads them (alone, and with the previous question folded in);
- `news_dev.jsonl`: questions about even-numbered BBC News stories, a third asking what the story does not say,
  on the seed articles + all 2,225 BBC articles (what a real news corpus looks like);
- SQuAD v1.1 and v2.0 (half) development split (even articles): a sentence is positive when it holds a gold
  answer; v2.0's unanswerable questions have none.
A sentence is positive when it contains an evidence string. Each question is retrieved with the engine and every
candidate gets the answerer's own features, so training sees exactly what answering sees; `bot.answering.training`
then trains both models (out-of-fold figures, Platt scaling, decision levels per kind of question) and this script
writes them to `bot/answering/model/`, with the common-words list grounding reads and the small training set
`citebot train` starts from (`model/training.npz`, `bot.learning`: the shipped models are trained on exactly that
file). Seeded and single-threaded: a rerun writes the same files.

    python -m bench train [-- --workdir DIR --limit N]
"""

from __future__ import annotations

import argparse
import pickle
import random
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import BBC_NEWS, DEVELOPMENT_SETS, QUESTION_SETS, SEED_CORPUS, bbc_folders, require_data
from bench.squad import DATA, index_folder, write_articles
from bot.answering.scorer import MODEL_DIR
from bot.answering.training import SEED, Group, train
from bot.engine import Engine
from bot.evaluation import load_cases
from bot.learning import SHIPPED_DATA, load_shipped, save_shipped
from bot.lexicon import COMMON_WORDS, COMMON_ZIPF, ENGLISH_WORDS, ENGLISH_ZIPF
from bot.types import Turn

# How much one question of each kind counts, for the confidence model (which must fit the questions people ask:
# SQuAD is many times larger) and for the ranker (which learns as much from SQuAD, and over-fits the few seed
# questions when they weigh more).
WEIGHTS = {"seed": 8.0, "casual": 8.0, "news": 4.0, "squad1": 1.0, "squad2": 1.0}
RANKER_WEIGHTS = {"seed": 8.0, "casual": 8.0, "news": 8.0, "squad1": 1.0, "squad2": 1.0}
SOURCES = ("seed", "casual", "news", "squad1", "squad2")
# SQuAD questions shipped (a sample; every question of the other sets is): the models learn as much from this many,
# measured out of fold, and the file `citebot train` starts from stays small (1.6 MB).
SHIPPED_SQUAD = {"squad1": 1500, "squad2": 800}


@dataclass(frozen=True)
class Item:
    question: str
    history: tuple[Turn, ...]
    gold: Sequence[str]
    answerable: bool
    fold_key: str = ""  # the questions about one article share a fold


def collect(engine: Engine, items: Iterable[Item], source: str) -> list[Group]:
    """Groups for the items, every reading of each (as the engine reads them)."""
    answerer = engine.extractive
    groups = []
    for item in items:
        for question in engine.readings(item.question, item.history):
            if question.more:
                continue
            retrieval = engine.retrieve(question, engine.settings.top_k)
            found, _ = answerer.candidates(retrieval)
            if not found:
                continue
            gold = item.gold if item.answerable else ()
            labels = np.asarray([any(g in c.quote for g in gold) for c in found], dtype=np.float32)
            groups.append(
                Group(
                    source,
                    question.search_text,
                    np.stack([c.features for c in found]),
                    labels,
                    item.answerable,
                    weight=WEIGHTS[source],
                    ranker_weight=RANKER_WEIGHTS[source],
                    fold_key=item.fold_key,
                )
            )
    return groups


def squad_items(dataset: Path, corpus: Path) -> list[Item]:
    return [
        Item(question.question, (), question.answers, not question.impossible)
        for question in write_articles(dataset, "dev", corpus)
    ]


def case_items(names: Sequence[str], by_document: bool = False) -> list[Item]:
    return [
        Item(case.question, case.history, case.evidence, not case.unanswerable, case.doc if by_document else "")
        for name in names
        for case in load_cases(QUESTION_SETS / name)
    ]


def build_groups(workdir: Path, limit: int | None) -> list[Group]:
    """Every source's groups, each cached in `workdir` (delete `<source>.pickle` to collect it again)."""
    groups: list[Group] = []
    for source in SOURCES:
        cache = workdir / f"{source}.pickle"
        if cache.exists():
            with cache.open("rb") as handle:
                groups += pickle.load(handle)
            continue
        started = time.perf_counter()
        if source in ("seed", "casual"):
            engine = index_folder(SEED_CORPUS, workdir / "seed", warm=False)
            names = DEVELOPMENT_SETS if source == "seed" else ("casual_dev.jsonl",)
            found = collect(engine, case_items(names), source)
        elif source == "news":
            require_data(*bbc_folders(BBC_NEWS))
            engine = index_folder([SEED_CORPUS, *bbc_folders(BBC_NEWS)], workdir / "news", warm=False)
            found = collect(engine, case_items(("news_dev.jsonl",), by_document=True), source)
        else:
            dataset = DATA / ("dev-v1.1.json" if source == "squad1" else "dev-v2.0-half.json")
            corpus = workdir / source / "corpus"
            corpus.mkdir(parents=True, exist_ok=True)
            items = squad_items(dataset, corpus)
            if limit:
                items = items[:: max(1, len(items) // limit)]
            engine = index_folder(corpus, workdir / source / "data", warm=False)
            print(f"  {source}: collecting {len(items)} questions")
            found = collect(engine, items, source)
        print(f"  {source}: {len(found)} question readings in {time.perf_counter() - started:.0f} s", flush=True)
        with cache.open("wb") as handle:
            pickle.dump(found, handle)
        groups += found
    return groups


def shipped_sample(groups: Sequence[Group]) -> list[Group]:
    """What ships with citebot: every question of the seed, casual and news sets, a fixed sample of SQuAD's."""
    chosen = [group for group in groups if group.source not in SHIPPED_SQUAD]
    for source, count in SHIPPED_SQUAD.items():
        pool = [group for group in groups if group.source == source]
        chosen += random.Random(SEED).sample(pool, min(count, len(pool)))
    return chosen


def run(workdir: Path, limit: int | None, out: Path) -> None:
    started = time.perf_counter()
    groups = build_groups(workdir, limit)
    print(f"{len(groups)} question readings collected in {time.perf_counter() - started:.0f} s", flush=True)
    # The models train on exactly what ships (features at 8 bits, `bot.learning`), so `citebot train` without
    # labels writes these very files again.
    out.mkdir(parents=True, exist_ok=True)
    save_shipped(shipped_sample(groups), out / SHIPPED_DATA.name)
    shipped = load_shipped(out / SHIPPED_DATA.name)
    print(f"shipping {len(shipped)} question readings ({(out / SHIPPED_DATA.name).stat().st_size:,} bytes)")
    trained = train(shipped, progress=lambda line: print(f"  training: {line}", flush=True))
    print("out of fold (each question judged by models that did not train on it):")
    for source, figures in trained.figures.items():
        print(f"  {source:8s} " + "  ".join(f"{name} {value:.3f}" for name, value in figures.items()))
    print(f"thresholds: {trained.thresholds}; Platt {trained.platt[0]:.3f}, {trained.platt[1]:.3f}")
    trained.save(out)
    write_word_lists()
    print(f"wrote {out} in {time.perf_counter() - started:.0f} s")


def write_word_lists() -> None:
    """The English word lists of `bot/lexicon/`, from wordfreq (a development dependency only)."""
    from importlib.metadata import version

    from wordfreq import top_n_list, zipf_frequency

    found = [w for w in top_n_list("en", 200_000) if w.isalpha() and w.isascii()]
    for path, level, what in (
        (COMMON_WORDS, COMMON_ZIPF, "the commonest English words: grounding never calls one of them a rare noun"),
        (ENGLISH_WORDS, ENGLISH_ZIPF, "English words: a question's word in this list is no misspelling to correct"),
    ):
        kept = sorted(w for w in found if zipf_frequency(w, "en") >= level)
        header = (
            f"# {what}.\n# Source: wordfreq {version('wordfreq')} (CC BY-SA 4.0), English words with a Zipf frequency"
            f" of at least {level}; written by `python -m bench train`.\n"
        )
        path.write_text(header + "\n".join(kept) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.train")
    parser.add_argument("--workdir", type=Path, default=None, help="keep indexes and features here (default: temp)")
    parser.add_argument("--limit", type=int, default=None, help="use about this many questions of each SQuAD file")
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="where to write the model files")
    args = parser.parse_args()
    require_data(DATA / "dev-v1.1.json", DATA / "dev-v2.0-half.json")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args.workdir, args.limit, args.out)
        return
    with tempfile.TemporaryDirectory(prefix="citebot-train-") as scratch:
        run(Path(scratch), args.limit, args.out)


if __name__ == "__main__":
    main()
