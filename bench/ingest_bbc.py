"""Ingestion throughput and memory on the BBC News corpus (2,225 articles), with the real embedding model.

Everything model-heavy runs in one child process on a fresh embedded index in a temporary CITEBOT_DATA_DIR:
 1. a full ingestion through `IngestPipeline.run` (seconds, chunks written, chunks/s, where the time goes);
 2. the bare-model floor: `embed_documents` on exactly the chunk texts, in exactly the batches, the pipeline
    embedded (recorded during run 1: the pipeline runs the model once over each chunk, keeping its token vectors
    for the sentences, and embeds each distinct heading), on the already loaded model; reported as chunks/s and
    pipeline/bare (goal <= 1.3);
 3. a re-ingestion of the unchanged corpus, with a new store and embedder as a second CLI run would have
    (goal <= 5 % of run 1);
 4. the child's peak RSS, read by the parent with `os.wait4` (goal < 2 GB).

    python -m bench ingest
    python -m bench.ingest_bbc [--data DIR] [--workdir DIR] [--profile 30]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ingest.pipeline as pipeline_module
from bench.common import (
    BBC_NEWS,
    PROJECT_ROOT,
    Breakdown,
    Timer,
    bbc_folders,
    format_bytes,
    load_average,
    peak_rss_bytes,
    print_machine,
    require_data,
    run_child,
)
from bot.config import DEFAULT_EMBEDDING_MODEL, load_settings
from bot.embeddings import Embedder, create_embedder
from bot.store import ChunkStore
from ingest.pipeline import EMBED_BATCH_CHUNKS, IngestPipeline, IngestReport
from ingest.splitter import Splitter

RATIO_GOAL = 1.3  # with sentence vectors (issue: answers people can trust)
REINGEST_GOAL = 0.05
RSS_GOAL = 2 * 1000**3  # "2 GB"

# (label, caption) rows of the time breakdown; indented captions are parts of the row above.
RUN_ROWS = [
    ("store: read records", "store: read document records (repair, plan)"),
    ("store: open", "  of which opening Chroma (import + client)"),
    ("load", "load files (read + decode)"),
    ("hash", "content hashes"),
    ("plan", "plan"),
    ("model load", "model load (import + weights)"),
    ("split", "split into chunks"),
    ("tokenize", "  of which tokenizer (count_tokens)"),
    ("chunk pass", "embed the chunks (one pass, token vectors kept)"),
    ("headings", "embed the headings (each distinct one once)"),
    ("store: add_chunks", "store: write chunks (add_chunks)"),
    ("store: put_documents", "store: write document records"),
    ("store: delete_documents", "store: delete documents"),
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_bbc", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=BBC_NEWS, help="the bbc-news folder (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, help="CITEBOT_DATA_DIR to use (must not hold an index)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile run 1 and print the top N rows")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.data, args.profile)
    else:
        parent(args.data, args.workdir, args.profile)


# -- parent: the machine, a fresh data dir, the child and its peak memory ------------------------------------


def parent(data: Path, workdir: Path | None, profile: int) -> None:
    require_data(*bbc_folders(data))
    print(f"BBC News ingestion benchmark: {data}")
    print_machine()
    with tempfile.TemporaryDirectory(prefix="citebot-bench-ingest-") as scratch:
        data_dir = workdir or Path(scratch)
        env = dict(os.environ)
        env["CITEBOT_DATA_DIR"] = str(data_dir)
        env["CITEBOT_CHROMA_HOST"] = ""  # always the embedded Chroma, even if the environment names a server
        command = [sys.executable, "-m", "bench.ingest_bbc", "--child", "--data", str(data.resolve())]
        if profile:
            command += ["--profile", str(profile)]
        result = run_child(command, env=env, cwd=PROJECT_ROOT)
    print()
    if result.returncode != 0:
        print(f"child process failed with exit status {result.returncode} after {result.seconds:.1f} s")
        return
    verdict = "meets" if result.peak_rss < RSS_GOAL else "MISSES"
    print(f"4. peak RSS of the ingestion process (os.wait4): {format_bytes(result.peak_rss)}")
    print(f"   {result.peak_rss / 1e9:.2f} GB, goal < {RSS_GOAL / 1e9:.0f} GB: {verdict}")
    print(f"   child: {result.seconds:.1f} s wall, {result.cpu_seconds:.1f} s CPU (all three runs, imports, teardown)")
    print(f"   {load_average()} at the end")


# -- child: the three runs ---------------------------------------------------------------------------------


class RecordingEmbedder:
    """Keeps the chunk texts of the `embed_tokens` calls (the model's one pass over each chunk), batch by batch, so
    the bare model can embed exactly those texts again; the headings' `embed_documents` calls are the pipeline's own
    extra work."""

    def __init__(self, embed_tokens: Callable[[list[str]], Any]) -> None:
        self._embed_tokens = embed_tokens
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str]) -> Any:
        self.batches.append(list(texts))
        return self._embed_tokens(texts)


def instrument(embedder: Embedder, store: ChunkStore, times: Breakdown) -> None:
    """Time the embedder's and the store's methods on these instances (the code under test is untouched)."""
    if hasattr(embedder, "_load"):
        times.wrap(embedder, "_load", "model load")
    times.wrap(embedder, "count_tokens", "tokenize")
    times.wrap(embedder, "embed_tokens", "chunk pass")
    times.wrap(embedder, "embed_documents", "headings")
    times.wrap(store, "_open", "store: open")
    times.wrap(store, "documents", "store: read records")
    for method in ("add_chunks", "put_documents", "delete_documents"):
        times.wrap(store, method, f"store: {method}")


def instrument_modules(times: Breakdown) -> None:
    """Time the pipeline's module-level helpers, as the pipeline module looks them up."""
    times.wrap(pipeline_module, "load", "load")
    times.wrap(pipeline_module, "content_hash", "hash")
    times.wrap(pipeline_module, "make_plan", "plan")
    times.wrap(Splitter, "split", "split")


def open_index(times: Breakdown) -> tuple[Embedder, ChunkStore, str]:
    settings = load_settings()
    embedder = create_embedder(settings.embedding_model, settings.embedding_device)
    store = ChunkStore(settings, embedder)
    instrument(embedder, store, times)
    return embedder, store, f"{settings.embedding_model} on {settings.embedding_device}, {store.location}"


def progress_printer(every_seconds: float = 30.0) -> Callable[[str, int, int], None]:
    started = time.perf_counter()
    last = [started]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage == "embed" and (now - last[0] >= every_seconds or done == total):
            last[0] = now
            print(f"   ... {done}/{total} documents embedded, {now - started:.0f} s", file=sys.stderr, flush=True)

    return progress


def print_report(report: IngestReport, times: Breakdown) -> None:
    print(
        f"   documents: {report.added} added, {report.changed} changed, {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.skipped)} skipped, {len(report.failed)} failed"
    )
    for problem in (report.skipped + report.failed)[:5]:
        print(f"     {problem.source}: {problem.reason}")
    parts = ("store: open", "tokenize")  # already inside another row
    measured = sum(seconds for label, seconds in times.seconds.items() if label not in parts)
    print("   where the time goes:")
    for line in times.lines(report.seconds, [row for row in RUN_ROWS if row[0] in times.seconds]):
        print(f"     {line}")
    rest = report.seconds - measured
    print(f"     {'other (pipeline bookkeeping, unmeasured)':<44s} {rest:9.2f} s {100 * rest / report.seconds:6.1f} %")


def child(data: Path, profile: int) -> None:
    roots = bbc_folders(data)
    files = sum(1 for root in roots for path in root.rglob("*.txt"))
    settings = load_settings()
    if settings.chroma_dir.exists() and any(settings.chroma_dir.iterdir()):
        print(f"{settings.chroma_dir} already holds an index; the benchmark needs a fresh one")
        sys.exit(1)
    if settings.embedding_model != DEFAULT_EMBEDDING_MODEL:
        print(f"note: CITEBOT_EMBEDDING_MODEL is {settings.embedding_model!r}, not the default model")

    times = Breakdown()
    instrument_modules(times)

    # 1. Full ingestion into the fresh index, recording what gets embedded.
    embedder, store, where = open_index(times)
    bare_embed = embedder.embed_documents
    recorder = RecordingEmbedder(embedder.embed_tokens)
    embedder.embed_tokens = recorder  # type: ignore[method-assign]
    print(f"\n1. full ingestion: {files} .txt files in {len(roots)} folders -> {where}")
    print(f"   (batches of >= {EMBED_BATCH_CHUNKS} chunks per model call)", flush=True)
    pipeline = IngestPipeline(store, embedder, progress_printer())
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    print(f"   {load_average()} before run 1", flush=True)
    with Timer() as first_clock:
        first = pipeline.run(roots)
    if profiler is not None:
        profiler.disable()
    rss_after_first = peak_rss_bytes()
    stored = store.count_chunks()
    print(f"   seconds        {first.seconds:9.2f}")
    print(f"   chunks written {first.chunks_written:9d}  (the index holds {stored})")
    print(f"   chunks/s       {first.chunks_per_second:9.1f}")
    print_report(first, times)
    model_load = times.seconds.get("model load", 0.0)
    pipeline_embed = times.seconds.get("chunk pass", 0.0) + times.seconds.get("headings", 0.0)
    print(f"   CPU time       {first_clock.cpu_seconds:9.2f}  ({load_average()} after run 1)")
    print(f"   peak RSS after run 1 (this process): {format_bytes(rss_after_first)}", flush=True)

    # 2. The bare-model floor: the same chunk texts, the same batches, the original (unwrapped) embed call.
    texts = sum(len(batch) for batch in recorder.batches)
    headings = times.seconds.get("headings", 0.0)
    chunk_pass = times.seconds.get("chunk pass", 0.0)
    batches = len(recorder.batches)
    print(f"\n2. bare model: embed_documents on the same {texts} chunk texts in the same {batches} batches")
    if texts != first.chunks_written:
        print(f"   note: {texts} texts were embedded but {first.chunks_written} chunks written")
    with Timer() as bare:
        for batch in recorder.batches:
            bare_embed(batch)
    cpu_ratio = first_clock.cpu_seconds / bare.cpu_seconds if bare.cpu_seconds > 0 else float("inf")
    times.reset()  # the bare run went through the timing wrapper (bare_embed is wrapped); it belongs to no run
    ratio = first.seconds / bare.seconds if bare.seconds > 0 else float("inf")
    verdict = "meets" if ratio <= RATIO_GOAL else "MISSES"
    print(f"   seconds        {bare.seconds:9.2f}")
    print(f"   chunks/s       {texts / bare.seconds if bare.seconds > 0 else 0.0:9.1f}")
    print(f"   pipeline / bare = {first.seconds:.2f} / {bare.seconds:.2f} = {ratio:.3f}", end="")
    print(f"  (goal <= {RATIO_GOAL}: {verdict})")
    print(f"   CPU time, pipeline / bare = {first_clock.cpu_seconds:.2f} / {bare.cpu_seconds:.2f} = {cpu_ratio:.3f}")
    print(f"   ({load_average()} after the bare run)")
    rest = first.seconds - model_load
    print(f"   without the one-off model load ({model_load:.2f} s): {rest / bare.seconds:.3f}")
    inside = pipeline_embed / bare.seconds
    print(f"   model calls inside the pipeline took {pipeline_embed:.2f} s ({inside:.3f} x bare)")
    print(
        f"   of which the headings {headings:.2f} s; the chunk pass with its token vectors "
        f"{chunk_pass / bare.seconds if bare.seconds else 0:.3f} x bare"
    )
    del recorder

    # 3. Re-ingest the unchanged corpus, as a second CLI run would: new store and embedder on the same index.
    embedder, store, _ = open_index(times)
    print("\n3. re-ingestion of the unchanged corpus (new store and embedder, same index)", flush=True)
    second = IngestPipeline(store, embedder).run(roots)
    share = second.seconds / first.seconds if first.seconds > 0 else float("inf")
    verdict = "meets" if share <= REINGEST_GOAL else "MISSES"
    print(f"   seconds        {second.seconds:9.2f}  ({100 * share:.2f} % of run 1, goal <= 5 %: {verdict})")
    print(f"   chunks written {second.chunks_written:9d}")
    print(f"   model loaded   {'yes' if times.calls.get('model load') else 'no'}")
    print_report(second, times)

    import torch

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads in the ingestion process")
    print(f"peak RSS (this process, all runs): {format_bytes(peak_rss_bytes())}")
    if profiler is not None:
        print(f"\ncProfile of run 1, top {profile} by cumulative time:")
        stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats("cumulative")
        stats.print_stats(profile)
        print(f"cProfile of run 1, top {profile} by own time:")
        stats.sort_stats("tottime").print_stats(profile)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
