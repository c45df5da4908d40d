"""The question log and the console's coverage gaps: what recording costs an answer, how many rows several
processes write, and how long grouping the misses by meaning takes. Figures only, no assertions.

- record: wall time of `QuestionLog.record_answer` (the one call every adapter makes after answering), per call,
  while its writer thread is busy writing; then how long the queued rows take to reach the disk.
- writers: N processes (spawned) each record M answers and a vote on every fifth; rows per second over the run,
  and the rows found afterwards against the rows written (lost rows would show here).
- gaps: `find_gaps` over N questions (BBC News headlines turned into questions, so topics repeat across
  rewordings) with the bundled all-MiniLM-L6-v2: embedding and clustering time, and the number of groups.

    python -m bench questionlog [-- --rows 20000 --processes 4 --per-process 2000 --questions 1000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import BBC_NEWS, load_average, print_machine
from bot.coverage import find_gaps
from bot.question_log import QuestionLog, StoredAnswer
from bot.types import Answer, Citation

_QUOTE = "Because Seoul works as neutral staging ground and a practical stop on the way to the Beijing summit."
_FORMS = ("What happened with {}?", "Tell me about {}", "any news on {}", "why {}?")


def _answer(question: str) -> Answer:
    citation = Citation(1, "corpus/a.txt", "A", 1473, 1473 + len(_QUOTE), _QUOTE, 0.7, doc_id="d" * 32)
    return Answer(question, f"{_QUOTE} [1]", (citation,), "answered", 0.8, {"total": 25.0})


def bench_record(rows: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = QuestionLog(Path(folder) / "log.sqlite3")
        answers = [_answer(f"question {index}") for index in range(rows)]
        timings: list[float] = []
        started = time.perf_counter()
        for index, answer in enumerate(answers):
            begin = time.perf_counter()
            store.record_answer(answer, "discord", guild_id=1, channel_id=2, user_id=index)
            timings.append(time.perf_counter() - begin)
        queued = time.perf_counter() - started
        store.flush(timeout=600)
        written = time.perf_counter() - started
        timings.sort()
        print(f"record   {rows} answers: per call p50 {statistics.median(timings) * 1e6:.0f} µs,")
        print(f"         p99 {timings[int(0.99 * (len(timings) - 1))] * 1e6:.0f} µs, max {timings[-1] * 1e3:.1f} ms")
        print(
            f"         all queued in {queued:.2f} s, all on disk after {written:.2f} s ({rows / written:,.0f} rows/s)"
        )
        store.close()


def _writer(path: str, worker: int, count: int) -> None:
    store = QuestionLog(Path(path))
    for index in range(count):
        answer_id = store.record_answer(_answer(f"worker {worker} question {index}"), "cli", user_id=worker)
        if index % 5 == 0 and answer_id is not None:
            store.record_vote(answer_id, worker, "up")
    store.close()


def bench_writers(processes: int, per_process: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.sqlite3"
        QuestionLog(path).count()  # create the file before the race
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_writer, args=(str(path), w, per_process)) for w in range(processes)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - started
        found = QuestionLog(path).count()
        expected = processes * per_process
        print(f"writers  {processes} processes x {per_process} answers (+ a vote on every fifth) in {seconds:.1f} s")
        print(f"         (process start-up included): {expected / seconds:,.0f} answers/s; {found} of {expected} found")


def headlines(limit: int) -> list[str]:
    folder = BBC_NEWS
    titles = [
        path.read_text(encoding="latin-1").splitlines()[0].strip()
        for path in sorted(folder.glob("*/*.txt"))[: limit // 2]
    ]
    if not titles:
        titles = [f"topic number {index}" for index in range(limit // 2)]
    return [_FORMS[index % len(_FORMS)].format(title) for index, title in enumerate(titles * 2)][:limit]


def bench_gaps(count: int) -> None:
    from bot.embeddings import create_embedder

    embedder = create_embedder()
    embedder.embed_documents(["warm up"])
    questions = [
        StoredAnswer(f"{index:032x}", text, "", [], True, f"2025-06-01T10:00:00.{index:06d}+00:00", support="none")
        for index, text in enumerate(headlines(count))
    ]
    embedded = 0.0

    def embed(texts: list[str]) -> object:
        nonlocal embedded
        begin = time.perf_counter()
        vectors = embedder.embed_documents(texts)
        embedded = time.perf_counter() - begin
        return vectors

    started = time.perf_counter()
    gaps = find_gaps(questions, embed)  # type: ignore[arg-type]
    total = time.perf_counter() - started
    sizes = sorted((gap.count for gap in gaps), reverse=True)
    clusters = total - embedded
    print(
        f"gaps     {len(questions)} questions: {total:.2f} s ({embedded:.2f} s embedding, {clusters:.2f} s clustering)"
    )
    print(f"         {len(gaps)} groups; largest {sizes[:5]}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench questionlog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="answers recorded in one process")
    parser.add_argument("--processes", type=int, default=4, help="processes writing at once")
    parser.add_argument("--per-process", type=int, default=2000, help="answers each of them records")
    parser.add_argument("--questions", type=int, default=1000, help="questions grouped into coverage gaps")
    args = parser.parse_args()
    print_machine(with_torch=False)
    print(f"load     {load_average()}")
    bench_record(args.rows)
    bench_writers(args.processes, args.per_process)
    bench_gaps(args.questions)
