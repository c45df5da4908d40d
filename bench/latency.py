"""Latency of `ask` on the seed corpus plus 1,000 BBC News articles, with the real model.

The index holds corpus/*.txt and 1,000 of the BBC News articles in bbc-news/{business,...,tech} (evenly spread)
under CITEBOT_BENCH_DATA (default: a shared/data folder beside the checkout); building it takes minutes on 2 cores,
so `--workdir DIR` keeps it (a re-ingest of the unchanged corpus then takes under a second). Questions: every
question of the seed question sets (tests/data/*.jsonl, history ignored, each asked once) plus "What happened with
<headline>?" for every 20th article. After `engine.warm_up()` (models loaded, no question asked), the first round
asks every question once: what a community sends, questions the process has never seen. That is the headline.
Further rounds repeat the same questions (warm caches). The floor is one query embedding plus one Chroma query
(`store.search(vector, 5)`) per question. Figures only, no assertions.

Goals: first-time ask p50 <= 50 ms and p95 <= 100 ms; ask p50 <= 2.5 x floor p50.

    python -m bench latency -- --workdir /tmp/latency-index
    python -m bench.latency [--workdir DIR] [--articles 1000] [--rounds 3] [--every 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BBC_NEWS,
    QUESTION_SETS,
    SEED_CORPUS,
    Timer,
    bbc_files_by_category,
    bbc_folders,
    format_bytes,
    load_average,
    peak_rss_bytes,
    print_machine,
    require_data,
)

FLOOR_K = 5
P50_GOAL_MS = 50.0
P95_GOAL_MS = 100.0
FLOOR_RATIO_GOAL = 2.5


@dataclass(frozen=True)
class Question:
    text: str
    kind: str  # "seed" or "bbc"


# -- questions ---------------------------------------------------------------------------------------------


def seed_questions(folder: Path = QUESTION_SETS) -> list[Question]:
    """Every distinct `q` of the seed question sets, in file order (follow-ups are asked without their history)."""
    seen: dict[str, Question] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                text = " ".join(str(json.loads(line)["q"]).split())
                seen.setdefault(text.lower(), Question(text, "seed"))
    return list(seen.values())


def _first_line(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    for line in text.splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def bbc_files(data: Path) -> list[Path]:
    return [path for files in bbc_files_by_category(data) for path in files]


def spread(files: Sequence[Path], count: int) -> list[Path]:
    """`count` of the files, evenly spaced (all of them when there are fewer)."""
    if count >= len(files):
        return list(files)
    return [files[index * len(files) // count] for index in range(count)]


def bbc_questions(files: Sequence[Path], every: int) -> list[Question]:
    """'What happened with <headline>?' for every `every`-th article (deterministic: sorted by category, name)."""
    questions = []
    for path in files[::every]:
        headline = _first_line(path).rstrip(".?!")
        if headline:
            questions.append(Question(f"What happened with {headline}?", "bbc"))
    return questions


# -- figures -----------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {statistics.median(values):7.1f} ms   p95 {percentile(values, 95):7.1f} ms   "
        f"min {min(values):7.1f}   max {max(values):7.1f}   mean {statistics.fmean(values):7.1f}   (n={len(values)})"
    )


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


# -- the run -----------------------------------------------------------------------------------------------


def run(workdir: Path, data: Path, articles: int, rounds: int, every: int) -> None:
    from bot.config import DEFAULT_EMBEDDING_MODEL, Settings
    from bot.engine import Engine
    from ingest.pipeline import IngestPipeline

    require_data(*bbc_folders(data))
    files = spread(bbc_files(data), articles)
    roots = [SEED_CORPUS, *files]

    # Default settings except where the index lives; always the embedded Chroma, even if the environment
    # names a server.
    settings = Settings(data_dir=workdir, chroma_host="", _env_file=None)  # type: ignore[call-arg]
    if settings.embedding_model != DEFAULT_EMBEDDING_MODEL:
        print(f"note: CITEBOT_EMBEDDING_MODEL is {settings.embedding_model!r}, not the default model")
    engine = Engine(settings)

    seed_files = sum(1 for _ in SEED_CORPUS.glob("*.txt"))
    print(f"\nindex: {seed_files} seed files + {len(files)} BBC files -> {engine.store.location}")
    print(
        f"   model {settings.embedding_model} on {settings.embedding_device}, answerer {settings.llm.value}, "
        f"top_k {settings.top_k}"
    )
    print(f"   {load_average()} before ingestion", flush=True)
    report = IngestPipeline(engine.store, engine.embedder).run(roots)
    print(
        f"   ingest: {report.seconds:.2f} s; {report.added} added, {report.changed} changed, "
        f"{report.unchanged} unchanged, {report.removed} removed, {len(report.skipped)} skipped, "
        f"{len(report.failed)} failed; {report.chunks_written} chunks written"
    )
    for problem in (report.skipped + report.failed)[:5]:
        print(f"     {problem.source}: {problem.reason}")
    print(f"   the index holds {engine.store.count_chunks()} chunks in {len(engine.documents())} documents")

    questions = seed_questions() + bbc_questions(files, every)
    seeds = sum(1 for question in questions if question.kind == "seed")
    print(
        f"\nquestions: {seeds} seed questions + {len(questions) - seeds} BBC headlines (one in every {every} articles)"
    )

    with Timer() as warm_clock:
        engine.warm_up()
    print(f"warm-up: engine.warm_up() {warm_clock.seconds:.2f} s (no question asked)")

    load_before = load_average()
    print(f"\n{load_before} before the timed rounds", flush=True)
    first_ms: list[float] = []
    repeat_ms: list[float] = []
    by_kind: dict[str, list[float]] = {"seed": [], "bbc": []}
    stages: dict[str, list[float]] = {"retrieve": [], "answer": []}
    floor_ms: list[float] = []
    tiers: dict[str, int] = {}
    with Timer() as clock:
        for round_number in range(rounds):
            for question in questions:
                started = time.perf_counter()
                answer = engine.ask(question.text)
                elapsed = (time.perf_counter() - started) * 1000.0
                if round_number == 0:
                    first_ms.append(elapsed)
                    by_kind[question.kind].append(elapsed)
                    for stage, values in stages.items():
                        values.append(answer.timings_ms.get(stage, float("nan")))
                    tiers[answer.support] = tiers.get(answer.support, 0) + 1
                else:
                    repeat_ms.append(elapsed)
        for question in questions:
            started = time.perf_counter()
            vector = engine.embedder.embed_query(question.text)
            engine.store.search(vector, FLOOR_K)
            floor_ms.append((time.perf_counter() - started) * 1000.0)
    load_after = load_average()

    first_p50, first_p95 = statistics.median(first_ms), percentile(first_ms, 95)
    floor_p50, floor_p95 = statistics.median(floor_ms), percentile(floor_ms, 95)
    ratio = first_p50 / floor_p50 if floor_p50 > 0 else float("inf")
    print(f"{rounds} rounds x {len(questions)} questions in {clock.seconds:.1f} s wall, {clock.cpu_seconds:.1f} s CPU")
    print(f"   first-round support tiers: {tiers}")
    print("\nengine.ask, wall clock")
    print(f"   first time  {summary(first_ms)}")
    for kind, values in by_kind.items():
        print(f"     {kind:<9s} {summary(values)}")
    for stage, values in stages.items():
        print(f"     {stage:<9s} {summary(values)}  (answer.timings_ms)")
    print(f"   repeated    {summary(repeat_ms)}")
    print(f"\nfloor: embed_query + store.search(vector, {FLOOR_K}), wall clock")
    print(f"   all     {summary(floor_ms)}")

    print("\nagainst the goals (first-time questions)")
    print(f"   ask p50 {first_p50:7.1f} ms   (goal <= {P50_GOAL_MS:.0f} ms: {verdict(first_p50 <= P50_GOAL_MS)})")
    print(f"   ask p95 {first_p95:7.1f} ms   (goal <= {P95_GOAL_MS:.0f} ms: {verdict(first_p95 <= P95_GOAL_MS)})")
    print(f"   floor p50 {floor_p50:.1f} ms, p95 {floor_p95:.1f} ms")
    print(
        f"   ask p50 / floor p50 = {first_p50:.1f} / {floor_p50:.1f} = {ratio:.2f}"
        f"   (goal <= {FLOOR_RATIO_GOAL}: {verdict(ratio <= FLOOR_RATIO_GOAL)})"
    )
    print(f"\n{load_before} before the timed rounds, {load_after} after")
    print(f"peak RSS (this process): {format_bytes(peak_rss_bytes())}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="data dir that keeps the index (default: temp)")
    parser.add_argument("--data", type=Path, default=BBC_NEWS, help="the bbc-news folder (default: %(default)s)")
    parser.add_argument("--articles", type=int, default=1000, help="BBC articles to index (default: 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all questions; the first is first-time")
    parser.add_argument("--every", type=int, default=20, help="one BBC question per this many articles (default: 20)")
    args = parser.parse_args()
    print(f"ask latency benchmark (first-time questions, then repeats): seed corpus + {args.data}")
    print_machine()
    print(f"pid {os.getpid()}, {load_average()} at start")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args.workdir.resolve(), args.data.resolve(), args.articles, args.rounds, args.every)
        return
    with tempfile.TemporaryDirectory(prefix="citebot-bench-latency-") as scratch:
        run(Path(scratch), args.data.resolve(), args.articles, args.rounds, args.every)


if __name__ == "__main__":
    main()
