"""Latency of a warm `ask` on the seed corpus plus the BBC News corpus (2,225 articles), with the real model.

The index holds corpus/*.txt and ../shared/data/bbc-news/{business,...,tech}; building it embeds ~10 minutes on
2 cores, so `--workdir DIR` keeps it (a re-ingest of the unchanged corpus then takes under a second). Questions:
the seed dev set (`q` of tests/data/devset.jsonl, history ignored) plus "What happened with <headline>?" for
every 20th BBC article. After a warm-up (`engine.warm_up()` and a few questions) every question is asked for
several rounds, timed wall-clock around `engine.ask`; in the same run the floor is timed: one query embedding
plus one Chroma query (`store.search(vector, 5)`) per question. Figures only, no assertions.

Goals: ask p50 <= 50 ms, ask p95 <= 150 ms, ask p50 <= 2.5 x floor p50.

    python -m bench latency -- --workdir /tmp/latency-index
    python -m bench.latency [--workdir DIR] [--rounds 3] [--every 20] [--warm-up 5]
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
    DEVSET,
    SEED_CORPUS,
    SHARED_DATA,
    Timer,
    format_bytes,
    load_average,
    peak_rss_bytes,
    print_machine,
)

BBC = SHARED_DATA / "bbc-news"
CATEGORIES = ("business", "entertainment", "politics", "sport", "tech")
FLOOR_K = 5
P50_GOAL_MS = 50.0
P95_GOAL_MS = 150.0
FLOOR_RATIO_GOAL = 2.5


@dataclass(frozen=True)
class Question:
    text: str
    kind: str  # "seed" or "bbc"


# -- questions ---------------------------------------------------------------------------------------------


def seed_questions(devset: Path = DEVSET) -> list[Question]:
    """Every `q` of the seed dev set, in file order (follow-ups are asked without their history)."""
    questions = []
    for line in devset.read_text(encoding="utf-8").splitlines():
        if line.strip():
            questions.append(Question(" ".join(str(json.loads(line)["q"]).split()), "seed"))
    return questions


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
    return [path for category in CATEGORIES for path in sorted((data / category).glob("*.txt"))]


def bbc_questions(data: Path, every: int) -> list[Question]:
    """'What happened with <headline>?' for every `every`-th article (deterministic: sorted by category, name)."""
    questions = []
    for path in bbc_files(data)[::every]:
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


def run(workdir: Path, data: Path, rounds: int, every: int, warm_up: int) -> None:
    from bot.config import DEFAULT_EMBEDDING_MODEL, Settings
    from bot.engine import Engine
    from ingest.pipeline import IngestPipeline

    roots = [SEED_CORPUS, *(data / category for category in CATEGORIES)]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        print(f"missing corpus folders: {', '.join(missing)}")
        sys.exit(1)

    # Default settings except where the index lives; always the embedded Chroma, even if the environment
    # names a server.
    settings = Settings(data_dir=workdir, chroma_host="", _env_file=None)  # type: ignore[call-arg]
    if settings.embedding_model != DEFAULT_EMBEDDING_MODEL:
        print(f"note: CITEBOT_EMBEDDING_MODEL is {settings.embedding_model!r}, not the default model")
    engine = Engine(settings)

    seed_files = sum(1 for _ in SEED_CORPUS.glob("*.txt"))
    print(f"\nindex: {seed_files} seed files + {len(bbc_files(data))} BBC files -> {engine.store.location}")
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

    questions = seed_questions() + bbc_questions(data, every)
    seeds = sum(1 for question in questions if question.kind == "seed")
    print(f"\nquestions: {seeds} seed dev set + {len(questions) - seeds} BBC headlines (one in every {every} articles)")

    with Timer() as warm_clock:
        engine.warm_up()
    warm_asks: list[float] = []
    for question in questions[:warm_up]:
        started = time.perf_counter()
        engine.ask(question.text)
        warm_asks.append((time.perf_counter() - started) * 1000.0)
    print(
        f"warm-up: engine.warm_up() {warm_clock.seconds:.2f} s; then {len(warm_asks)} asks: "
        + ", ".join(f"{ms:.0f}" for ms in warm_asks)
        + " ms"
    )

    load_before = load_average()
    print(f"\n{load_before} before the timed rounds", flush=True)
    ask_ms: list[float] = []
    ask_by_kind: dict[str, list[float]] = {"seed": [], "bbc": []}
    retrieve_ms: list[float] = []
    answer_ms: list[float] = []
    total_ms: list[float] = []
    floor_ms: list[float] = []
    abstained = 0
    with Timer() as clock:
        for _ in range(rounds):
            for question in questions:
                started = time.perf_counter()
                answer = engine.ask(question.text)
                elapsed = (time.perf_counter() - started) * 1000.0
                ask_ms.append(elapsed)
                ask_by_kind[question.kind].append(elapsed)
                retrieve_ms.append(answer.timings_ms.get("retrieve", float("nan")))
                answer_ms.append(answer.timings_ms.get("answer", float("nan")))
                total_ms.append(answer.timings_ms.get("total", float("nan")))
                abstained += answer.abstained
            for question in questions:
                started = time.perf_counter()
                vector = engine.embedder.embed_query(question.text)
                engine.store.search(vector, FLOOR_K)
                floor_ms.append((time.perf_counter() - started) * 1000.0)
    load_after = load_average()

    ask_p50, ask_p95 = statistics.median(ask_ms), percentile(ask_ms, 95)
    floor_p50, floor_p95 = statistics.median(floor_ms), percentile(floor_ms, 95)
    ratio = ask_p50 / floor_p50 if floor_p50 > 0 else float("inf")
    print(f"{rounds} rounds x {len(questions)} questions in {clock.seconds:.1f} s wall, {clock.cpu_seconds:.1f} s CPU")
    print(f"   answers abstained: {abstained} of {len(ask_ms)}")
    print("\nengine.ask, wall clock")
    print(f"   all     {summary(ask_ms)}")
    for kind, values in ask_by_kind.items():
        print(f"   {kind:<7s} {summary(values)}")
    print("   answer.timings_ms")
    print(f"     retrieve {summary(retrieve_ms)}")
    print(f"     answer   {summary(answer_ms)}")
    print(f"     total    {summary(total_ms)}")
    print(f"\nfloor: embed_query + store.search(vector, {FLOOR_K}), wall clock")
    print(f"   all     {summary(floor_ms)}")

    print("\nagainst the goals")
    print(f"   ask p50 {ask_p50:7.1f} ms   (goal <= {P50_GOAL_MS:.0f} ms: {verdict(ask_p50 <= P50_GOAL_MS)})")
    print(f"   ask p95 {ask_p95:7.1f} ms   (goal <= {P95_GOAL_MS:.0f} ms: {verdict(ask_p95 <= P95_GOAL_MS)})")
    print(f"   floor p50 {floor_p50:.1f} ms, p95 {floor_p95:.1f} ms")
    print(
        f"   ask p50 / floor p50 = {ask_p50:.1f} / {floor_p50:.1f} = {ratio:.2f}"
        f"   (goal <= {FLOOR_RATIO_GOAL}: {verdict(ratio <= FLOOR_RATIO_GOAL)})"
    )
    print(f"\n{load_before} before the timed rounds, {load_after} after")
    print(f"peak RSS (this process): {format_bytes(peak_rss_bytes())}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="data dir that keeps the index (default: temp)")
    parser.add_argument("--data", type=Path, default=BBC, help="the bbc-news folder (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds over all questions (default: 3)")
    parser.add_argument("--every", type=int, default=20, help="one BBC question per this many articles (default: 20)")
    parser.add_argument("--warm-up", type=int, default=5, help="untimed questions after warm_up() (default: 5)")
    args = parser.parse_args()
    print(f"warm ask latency benchmark: seed corpus + {args.data}")
    print_machine()
    print(f"pid {os.getpid()}, {load_average()} at start")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args.workdir.resolve(), args.data.resolve(), args.rounds, args.every, args.warm_up)
        return
    with tempfile.TemporaryDirectory(prefix="citebot-bench-latency-") as scratch:
        run(Path(scratch), args.data.resolve(), args.rounds, args.every, args.warm_up)


if __name__ == "__main__":
    main()
