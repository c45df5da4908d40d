"""SQuAD benchmarks: retrieval recall and answer coverage (v1.1), abstention (v2.0 half).

Each article becomes one document (its paragraphs separated by blank lines) in a fresh index built with the real
model. Only the development split (articles with an even index) is used for tuning; `--split held-out` reports
on the odd articles, which no threshold or weight was ever chosen on.

    python -m bench squad            # v1.1 retrieval + answers and v2.0 abstention, development split
    python -m bench.squad --split held-out --limit 2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import SHARED_DATA, require_data
from bot.config import Settings
from bot.corpus import Corpus
from bot.embeddings import create_embedder
from bot.engine import Engine
from bot.keyword import terms
from bot.types import Chunk
from ingest.pipeline import IngestPipeline

DATA = SHARED_DATA / "squad"
RECALL_AT = (1, 5, 20)


@dataclass(frozen=True)
class SquadQuestion:
    question: str
    source: str
    span: tuple[int, int]  # the gold paragraph's offsets in the article text
    answers: tuple[str, ...]
    impossible: bool


def write_articles(dataset: Path, split: str, folder: Path) -> list[SquadQuestion]:
    """Write the split's articles as .txt files; return its questions with their gold paragraph spans."""
    articles = json.loads(dataset.read_text(encoding="utf-8"))["data"]
    parity = 0 if split == "dev" else 1
    questions = []
    for index, article in enumerate(articles):
        if index % 2 != parity:
            continue
        name = f"{index:02d}-{article['title']}.txt"
        offset = 0
        pieces = []
        for paragraph in article["paragraphs"]:
            context = paragraph["context"].strip()
            span = (offset, offset + len(context))
            pieces.append(context)
            offset += len(context) + 2
            for qa in paragraph["qas"]:
                questions.append(
                    SquadQuestion(
                        question=qa["question"],
                        source=name,
                        span=span,
                        answers=tuple(answer["text"] for answer in qa["answers"]),
                        impossible=bool(qa.get("is_impossible", False)),
                    )
                )
        (folder / name).write_text("\n\n".join(pieces), encoding="utf-8")
    return questions


def build_engine(dataset: Path, split: str, workdir: Path) -> tuple[Engine, list[SquadQuestion], float]:
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    questions = write_articles(dataset, split, corpus)
    started = time.perf_counter()
    engine = index_folder(corpus, workdir / "data")
    return engine, questions, time.perf_counter() - started


def index_folder(folder: Path | Sequence[Path], data_dir: Path, warm: bool = True) -> Engine:
    """An engine with the real model over `folder` (or several), ingested into `data_dir` (unchanged files are not
    re-embedded); `warm=False` leaves the answerer's models unloaded (training builds them)."""
    engine = Engine(Settings(data_dir=data_dir, _env_file=None))  # type: ignore[call-arg]
    folders = [folder] if isinstance(folder, Path) else list(folder)
    report = IngestPipeline(engine.store, create_embedder()).run(folders)
    if report.chunks_written:
        print(f"  indexed {report.chunks_written} chunks from {len(folders)} folder(s) in {report.seconds:.0f} s")
    if warm:
        engine.warm_up()
    return engine


def _overlaps(start: int, end: int, span: tuple[int, int]) -> bool:
    return start < span[1] and span[0] < end


def evaluate_v1(engine: Engine, questions: list[SquadQuestion]) -> dict[str, float]:
    """Recall@k of the gold paragraph for fused, dense-only and BM25-only rankings; answer coverage and length."""
    searcher, corpus = engine.searcher, engine.corpus
    corpus.refresh(fresh=True)
    keyword = corpus.keyword_view()
    found = {name: {k: 0 for k in RECALL_AT} for name in ("hybrid", "dense", "bm25")}
    covered = first = answered = 0
    quoted: list[int] = []
    latencies: list[float] = []
    deepest = max(RECALL_AT)
    for item in questions:
        vector = engine.embedder.embed_query(item.question)
        dense = [chunk_id for chunk_id, _ in engine.store.search(vector, deepest)]
        lexical = [chunk_id for chunk_id, _ in keyword.search(terms(item.question), deepest)]
        known = corpus.chunks(dense + lexical)
        rankings = {
            "hybrid": [hit.chunk for hit in searcher.search(item.question, deepest, query_vector=vector)],
            "dense": [known[chunk_id] for chunk_id in dense if chunk_id in known],
            "bm25": [known[chunk_id] for chunk_id in lexical if chunk_id in known],
        }
        for name, chunks in rankings.items():
            ranks = [rank for rank, chunk in enumerate(chunks, start=1) if _matches(chunk, item, corpus)]
            for k in RECALL_AT:
                found[name][k] += bool(ranks and ranks[0] <= k)
        answer = engine.ask(item.question)
        latencies.append(answer.timings_ms["total"])
        shown = [citation.quote for citation in answer.citations] if answer.support != "none" else []
        quotes = " ".join(shown)
        covered += any(expected in quotes for expected in item.answers)
        first += bool(shown) and any(expected in shown[0] for expected in item.answers)
        answered += answer.support == "answered"
        quoted.append(len(quotes))
    total = len(questions)
    result = {f"{name} recall@{k}": hits / total for name, by_k in found.items() for k, hits in by_k.items()}
    result["top-1 sentence accuracy"] = first / total
    result["answer coverage"] = covered / total
    result["mean quoted chars"] = statistics.fmean(quoted)
    result["answered confidently"] = answered / total
    result["answer p50 ms"] = statistics.median(latencies)
    return result


def _matches(chunk: Chunk, item: SquadQuestion, corpus: Corpus) -> bool:
    document = corpus.documents([chunk.doc_id]).get(chunk.doc_id)
    sources = document.record.sources if document is not None else ()
    return any(Path(source).name == item.source for source in sources) and _overlaps(chunk.start, chunk.end, item.span)


def evaluate_v2(engine: Engine, questions: list[SquadQuestion]) -> dict[str, float]:
    """With the shipped thresholds: the share of unanswerable questions not answered confidently, and of
    answerable ones answered. Then the operating point: at the confidence level where 85 % of the answerable
    questions are answered, the share of unanswerable ones that are not."""
    confidences: dict[bool, list[float]] = {True: [], False: []}
    not_answered = answered = 0
    for item in questions:
        answer = engine.ask(item.question)
        # An answer held back by the grounding check ("The corpus doesn't mention ...") or with nothing relevant
        # stays unanswered at any confidence level.
        held_back = answer.support == "none" or answer.text.startswith("The corpus doesn't mention")
        confidences[item.impossible].append(0.0 if held_back else answer.confidence)
        if item.impossible:
            not_answered += answer.support != "answered"
        else:
            answered += answer.support == "answered"
    impossible, possible = confidences[True], sorted(confidences[False], reverse=True)
    level = possible[int(0.85 * len(possible)) - 1] if possible else 1.0
    return {
        "unanswerable not answered (shipped)": not_answered / max(1, len(impossible)),
        "answerable answered (shipped)": answered / max(1, len(possible)),
        "confidence for 85 % answered": level,
        "unanswerable not answered at 85 %": sum(c < level for c in impossible) / max(1, len(impossible)),
        "unanswerable questions": len(impossible),
        "answerable questions": len(possible),
    }


def _sample(questions: list[SquadQuestion], limit: int | None) -> list[SquadQuestion]:
    if not limit or limit >= len(questions):
        return questions
    step = len(questions) / limit
    return [questions[int(i * step)] for i in range(limit)]


def run(split: str = "dev", limit: int | None = None, workdir: Path | None = None) -> None:
    require_data(DATA / "dev-v1.1.json", DATA / "dev-v2.0-half.json")
    with tempfile.TemporaryDirectory(prefix="citebot-squad-") as scratch:
        base = workdir or Path(scratch)
        engine, questions, seconds = build_engine(DATA / "dev-v1.1.json", split, base / "v1")
        sample = _sample(questions, limit)
        print(f"SQuAD v1.1 {split} split: {len(questions)} questions ({len(sample)} asked), indexed in {seconds:.0f} s")
        for name, value in evaluate_v1(engine, sample).items():
            print(f"  {name:24s} {value:.3f}")
        engine, questions, seconds = build_engine(DATA / "dev-v2.0-half.json", split, base / "v2")
        sample = _sample(questions, limit)
        print(f"SQuAD v2.0 half, {split} split: {len(sample)} questions asked")
        for name, value in evaluate_v2(engine, sample).items():
            print(f"  {name:24s} {value:.3f}" if isinstance(value, float) else f"  {name:24s} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.squad")
    parser.add_argument("--split", choices=["dev", "held-out"], default="dev")
    parser.add_argument("--limit", type=int, default=None, help="ask an evenly spaced sample of this many questions")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the indexes here (default: a temp dir)")
    args = parser.parse_args()
    run(args.split, args.limit, args.workdir)


if __name__ == "__main__":
    main()
